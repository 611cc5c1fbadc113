//! `edgeroute compile`: read a table, validate every item, resolve ELB
//! names, write the snapshot.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use edgeroute_compiler::elb::{apply_origins, arns_without_origin};
use edgeroute_compiler::export::Export;
use edgeroute_compiler::source::{LineChunks, SourceItem, TableFile};
use edgeroute_compiler::{
    compile, source, CompileError, Compiled, Compiler, ItemError, Location, Options, Progress, Value,
};
use edgeroute_control::scan::{scan_table, ScanProgress};
use edgeroute_control::{elb, export_s3, Source};
use indicatif::{ProgressBar, ProgressStyle};

use super::Aws;
use crate::flags::{AwsArgs, CheckArgs, CompileArgs, ScanArgs};

/// The Origin an ARN Target without one gets while the table is checked
/// before anything asks AWS: a name that can never be real (RFC 2606).
const ORIGIN_PENDING: &str = "elb-name-pending.invalid";

/// Reads the table `args.from` names, reports every bad item (all of them,
/// before any request to the ELBv2 API), resolves ARN Targets without an
/// Origin, and writes the snapshot to `args.out` whole or not at all.
pub fn run(args: &CompileArgs) -> Result<()> {
    refuse_special_output(&args.out)?;
    let job = Job {
        from: &args.from,
        skip_invalid: args.skip_invalid,
        json: args.json,
        chunk_bytes: args.chunk_bytes.max(1),
        scan: &args.scan,
        aws: &args.aws,
    };
    compile_table(&job, Some(&args.out))
}

/// `edgeroute check TABLE`: everything `compile` does but write.
pub fn check(args: &CheckArgs) -> Result<()> {
    let job = Job {
        from: &args.from,
        skip_invalid: false,
        json: args.json,
        chunk_bytes: CHUNK_BYTES,
        scan: &args.scan,
        aws: &args.aws,
    };
    compile_table(&job, None)
}

/// What `compile` and `check` share.
struct Job<'a> {
    from: &'a Source,
    skip_invalid: bool,
    json: bool,
    /// How much of a JSON Lines file is compiled at a time.
    chunk_bytes: usize,
    scan: &'a ScanArgs,
    aws: &'a AwsArgs,
}

/// `compile --out` writes a snapshot file by renaming a temporary file over
/// the path: over a device (`--out /dev/null`), a FIFO, a folder or a
/// symbolic link that would replace it with a regular file. So an existing
/// path must be a regular file, looked at without following links.
fn refuse_special_output(out: &Path) -> Result<()> {
    let kind = match std::fs::symlink_metadata(out) {
        Ok(meta) if meta.file_type().is_file() => return Ok(()),
        Ok(meta) => file_kind(&meta.file_type()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("cannot look at --out {}: {e}", out.display()),
    };
    bail!(
        "--out {} exists and is not a regular file ({kind}): compile writes a snapshot file there and would replace \
         it; to check a table without writing anything, run `edgeroute check TABLE`",
        out.display()
    )
}

/// What a file system entry is, for people.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    match kind {
        k if k.is_dir() => "a folder",
        k if k.is_symlink() => "a symbolic link",
        k if k.is_char_device() => "a character device",
        k if k.is_block_device() => "a block device",
        k if k.is_fifo() => "a FIFO",
        k if k.is_socket() => "a socket",
        _ => "not a file",
    }
}

/// How much of a JSON Lines table file is read, validated and packed at a
/// time: memory holds one chunk's text and items, not the table's.
const CHUNK_BYTES: usize = 64 << 20;

/// ELB ARNs resolved, ARNs asked about, items given an Origin.
type ElbReport = (usize, usize, usize);

/// Compiles the table; writes the snapshot to `out` if given (`compile`),
/// and reports what it made (or, `check`, would make).
fn compile_table(args: &Job<'_>, out: Option<&Path>) -> Result<()> {
    let mut aws = Aws::new(args.aws.options());
    let scan = args.scan.options();
    let (file, export);
    let mut source_line = None;
    let items = match args.from {
        Source::File(path) => {
            // A regular file is read in chunks, and again if a second pass
            // needs it; anything else (a pipe, `/dev/stdin`) can be read
            // once only: whole, as an array is.
            let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
            if regular {
                if let TableFile::Lines(chunks) = LineChunks::open(path, args.chunk_bytes)? {
                    let (compiled, elb_report) = compile_lines(args, path, chunks, &mut aws)?;
                    return report(args, out, compiled, None, elb_report);
                }
            }
            file = source::read_file(path)?;
            source::parse_json_file(path, &file)?
        }
        Source::Export(_) | Source::ExportS3 { .. } => {
            let start = Instant::now();
            export = match args.from {
                Source::ExportS3 { bucket, folder } => {
                    let client = edgeroute_store::s3_client(&aws.config()?);
                    aws.block_on(export_s3::open(&client, bucket, folder))??
                }
                Source::Export(path) => Export::open(path)?,
                _ => unreachable!("matched above"),
            };
            let (compiled, elb_report) = compile_export(args, &export, &mut aws)?;
            source_line = Some(format!(
                "{}: {} items, read and compiled in {:.2} s{}",
                args.from,
                export.item_count,
                start.elapsed().as_secs_f64(),
                export.table_arn.as_deref().map(|t| format!(" (exported from {t})")).unwrap_or_default()
            ));
            return report(args, out, compiled, source_line, elb_report);
        }
        Source::Table(table) => {
            let config = aws.config()?;
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} scanning {prefix}{pos} items, {per_sec} ({msg})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            let progress = ScanBar { bar: bar.clone(), shown_retries: AtomicU32::new(0) };
            let scanned = aws.block_on(scan_table(&config, table, &scan, &progress))?;
            bar.finish_and_clear();
            let scanned = scanned?;
            let secs = scanned.elapsed.as_secs_f64();
            source_line = Some(format!(
                "{}: {} items in {secs:.2} s ({:.0} items/s; {} segments, {} pages, {} retries{})",
                args.from,
                scanned.items.len(),
                scanned.items.len() as f64 / secs.max(1e-9),
                scanned.segments,
                scanned.pages,
                scanned.retries,
                if scan.consistent { ", strongly consistent" } else { "" },
            ));
            scanned.items
        }
    };
    let (compiled, elb_report) = compile_items(args, items, &mut aws)?;
    report(args, out, compiled, source_line, elb_report)
}

/// Compiles a table held in memory as items.
fn compile_items(
    args: &Job<'_>,
    mut items: Vec<SourceItem<'_>>,
    aws: &mut Aws,
) -> Result<(Compiled, Option<ElbReport>)> {
    warn_ignored_attributes(&items);
    let arns = arns_without_origin(&items);
    let mut elb_report = None;
    if !arns.is_empty() {
        // Every bad item first: nothing else about the table needs AWS. The
        // ARN Targets without Origin get a placeholder while they are checked.
        let pending = set_pending_origins(&mut items, &arns);
        let errors = edgeroute_compiler::check(&items);
        for &i in &pending {
            if let Ok(raw) = &mut items[i].1 {
                raw.origin = None;
            }
        }
        if !errors.is_empty() && !args.skip_invalid {
            return Err(invalid(args.from, errors));
        }
        let needing = items_needing(&items, &pending);
        let origins = resolve_origins(args, aws, &arns, &needing, pending.len())?;
        let filled = apply_origins(&mut items, &origins);
        let resolved = origins.values().filter(|o| o.is_ok()).count();
        elb_report = Some((resolved, arns.len(), filled));
    }
    // Only long compiles get a bar; indicatif hides it when stderr is not a terminal.
    let bar = if items.len() >= 50_000 { ProgressBar::new(items.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} validating {pos}/{len} items [{bar:30}] {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let compiled = compile(items, Options { skip_invalid: args.skip_invalid }, &Bar(bar.clone()));
    bar.finish_and_clear();
    Ok((finished(args, compiled)?, elb_report))
}

/// One pass over a table read in parts: gives each part's items, in
/// order, to the function it is called with, with how much of the table
/// the part was (for the progress bar).
type Each<'e> = dyn FnMut(&mut Vec<SourceItem<'_>>, u64) -> Result<()> + 'e;

/// Compiles a JSON Lines table file a chunk at a time (`--chunk-bytes`).
fn compile_lines(
    args: &Job<'_>,
    path: &Path,
    chunks: LineChunks<std::fs::File>,
    aws: &mut Aws,
) -> Result<(Compiled, Option<ElbReport>)> {
    // Any write changes the status-change time, even one that puts the
    // size and the modification time back (`cp -p`, `rsync`).
    let stamp = |path: &Path| {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
    };
    let first_stamp = stamp(path);
    // A second pass reads the file again: it must be the file checked.
    let changed = || anyhow::anyhow!("{} changed while it was compiled; nothing written", path.display());
    let mut opened = Some(chunks);
    let pass = |each: &mut Each<'_>| -> Result<()> {
        let mut chunks = match opened.take() {
            Some(chunks) => chunks,
            None => match LineChunks::open(path, args.chunk_bytes)? {
                TableFile::Lines(chunks) if stamp(path) == first_stamp => chunks,
                _ => return Err(changed()),
            },
        };
        while let Some(chunk) = chunks.next_chunk()? {
            each(&mut chunk.items(), chunk.bytes.len() as u64)?;
        }
        if stamp(path) != first_stamp {
            return Err(changed());
        }
        Ok(())
    };
    let size = first_stamp.map_or(0, |s| s.0);
    // Only long compiles get a bar; indicatif hides it when stderr is not a terminal.
    let bar = if size >= 8 << 20 { ProgressBar::new(size) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} validating {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    compile_in_parts(args, aws, &bar, pass)
}

/// Compiles a table export one data file at a time.
fn compile_export(args: &Job<'_>, export: &Export, aws: &mut Aws) -> Result<(Compiled, Option<ElbReport>)> {
    let count = export.item_count;
    let bar = if count >= 50_000 { ProgressBar::new(count) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} validating {pos}/{len} items [{bar:30}] {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let pass = |each: &mut Each<'_>| -> Result<()> {
        export.for_each_file(|mut items| {
            let n = items.len() as u64;
            each(&mut items, n)
        })
    };
    compile_in_parts(args, aws, &bar, pass)
}

/// Compiles a table read in parts by `pass`, each part validated, packed
/// and dropped before the next: memory holds the packed routes and the
/// snapshot, never the table's text or items whole. Items with an ARN
/// Target and no Origin are checked with a placeholder in a first pass;
/// when there are any, their load balancers are looked up and a second
/// pass compiles with their names.
fn compile_in_parts(
    args: &Job<'_>,
    aws: &mut Aws,
    bar: &ProgressBar,
    mut pass: impl FnMut(&mut Each<'_>) -> Result<()>,
) -> Result<(Compiled, Option<ElbReport>)> {
    let options = Options { skip_invalid: args.skip_invalid };
    let mut compiler = Compiler::new(options);
    let mut arns = BTreeSet::new();
    let (mut needing, mut pending) = (Vec::new(), 0);
    pass(&mut |items, size| {
        warn_ignored_attributes(items);
        let found = arns_without_origin(items);
        if !found.is_empty() {
            let at = set_pending_origins(items, &found);
            pending += at.len();
            if needing.len() < SHOWN_NEEDING {
                needing.extend(items_needing(items, &at).into_iter().take(SHOWN_NEEDING - needing.len()));
            }
            arns.extend(found);
        }
        compiler.add(items, &());
        bar.inc(size);
        Ok(())
    })?;
    if arns.is_empty() {
        bar.set_message("writing snapshot");
        let compiled = compiler.finish(&());
        bar.finish_and_clear();
        return Ok((finished(args, compiled)?, None));
    }
    bar.finish_and_clear();
    let added = compiler.added();
    let errors = compiler.check();
    if !errors.is_empty() && !args.skip_invalid {
        return Err(invalid(args.from, errors));
    }
    let origins = resolve_origins(args, aws, &arns, &needing, pending)?;
    let mut compiler = Compiler::new(options);
    let mut filled = 0;
    pass(&mut |items, _| {
        filled += apply_origins(items, &origins);
        compiler.add(items, &());
        Ok(())
    })?;
    if compiler.added() != added {
        bail!("{} changed while it was compiled; nothing written", args.from);
    }
    let resolved = origins.values().filter(|o| o.is_ok()).count();
    Ok((finished(args, compiler.finish(&()))?, Some((resolved, arns.len(), filled))))
}

/// How many of the items that need the ELBv2 API an error names.
const SHOWN_NEEDING: usize = 5;

/// Looks up the load balancers of `arns` (ARN Targets without Origin).
fn resolve_origins(
    args: &Job<'_>,
    aws: &mut Aws,
    arns: &BTreeSet<String>,
    needing: &[String],
    pending: usize,
) -> Result<edgeroute_compiler::elb::Origins> {
    let config = aws.config().with_context(|| needs_elb(needing, pending, arns.len()))?;
    let origins = aws
        .block_on(elb::describe_load_balancers(&config, arns, &args.scan.options().retry))?
        .with_context(|| needs_elb(needing, pending, arns.len()))?;
    Ok(origins)
}

/// A compile's outcome, its bad items printed.
fn finished(args: &Job<'_>, compiled: Result<Compiled, CompileError>) -> Result<Compiled> {
    match compiled {
        Ok(compiled) => Ok(compiled),
        Err(CompileError::Invalid(errors)) => Err(invalid(args.from, errors)),
        Err(e) => Err(e.into()),
    }
}

/// Prints what was compiled, and writes it to `out`.
fn report(
    args: &Job<'_>,
    out: Option<&Path>,
    compiled: Compiled,
    source_line: Option<String>,
    elb_report: Option<ElbReport>,
) -> Result<()> {
    for e in &compiled.skipped {
        eprintln!("skipped: {e}");
    }
    name_data_files(args.from, &compiled.skipped);
    if let Some(out) = out {
        edgeroute_store::write_file_atomically(out, &compiled.bytes)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }

    let s = compiled.stats;
    let per_route = compiled.bytes.len() as f64 / s.routes.max(1) as f64;
    if args.json {
        let skipped: Vec<_> = compiled
            .skipped
            .iter()
            .map(|e| {
                serde_json::json!({
                    "location": e.location.to_string(),
                    "domain": e.domain,
                    "error": e.kind.to_string(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "out": out.map(|o| o.display().to_string()),
            "valid": true,
            "id": compiled.id.to_string(),
            "size": compiled.bytes.len(),
            "bytes_per_route": (per_route * 10.0).round() / 10.0,
            "routes": {
                "total": s.routes,
                "static": s.static_sites,
                "balancer": s.balancers,
                "wildcard": s.wildcards,
            },
            "skipped": skipped,
            "source": source_line,
            "elb": elb_report.map(|(resolved, arns, items)| serde_json::json!({
                "arns": arns, "resolved": resolved, "items": items,
            })),
        });
        println!("{v}");
        return Ok(());
    }
    let kinds = format!("{} static sites, {} balancers; {} wildcards", s.static_sites, s.balancers, s.wildcards);
    match out {
        Some(out) => println!("compiled {} routes ({kinds}) into {}", s.routes, out.display()),
        None => println!("valid: {} routes ({kinds}); nothing written", s.routes),
    }
    println!("  size    {} bytes ({per_route:.1} bytes/route)", compiled.bytes.len());
    println!("  id      {}", compiled.id);
    if !compiled.skipped.is_empty() {
        println!("  skipped {} invalid items", compiled.skipped.len());
    }
    if let Some(line) = source_line {
        println!("  source  {line}");
    }
    if let Some((resolved, arns, filled)) = elb_report {
        println!("  elb     {resolved} of {arns} ELB ARNs resolved through DescribeLoadBalancers ({filled} items)");
    }
    Ok(())
}

/// Prints every bad item and returns the error that ends the compile.
fn invalid(from: &Source, errors: Vec<ItemError>) -> anyhow::Error {
    for e in &errors {
        eprintln!("invalid: {e}");
    }
    name_data_files(from, &errors);
    CompileError::Invalid(errors).into()
}

/// Warns about attributes that are ignored because of their case
/// (`origin` for `Origin`): the item compiles without them, which is
/// rarely what was meant.
fn warn_ignored_attributes(items: &[SourceItem<'_>]) {
    for (location, item) in items {
        let Ok(raw) = item else { continue };
        for (written, meant) in raw.ignored_attributes() {
            let domain = match &raw.domain {
                Some(Value::Str(d)) => format!(" (Domain {:?})", d.as_ref()),
                _ => String::new(),
            };
            eprintln!(
                "warning: {location}{domain}: attribute {written:?} is ignored: attribute names are case-sensitive; rename it {meant}"
            );
        }
    }
}

/// Gives every item whose ARN Target (one of `arns`) has no Origin a
/// placeholder one, so that checking the table finds every other fault;
/// returns where those items are.
pub(crate) fn set_pending_origins(items: &mut [SourceItem<'_>], arns: &BTreeSet<String>) -> Vec<usize> {
    let mut pending = Vec::new();
    for (i, (_, item)) in items.iter_mut().enumerate() {
        let Ok(raw) = item else { continue };
        if raw.origin.is_none() && matches!(&raw.target, Some(Value::Str(t)) if arns.contains(t.as_ref())) {
            raw.origin = Some(Value::Str(Cow::Borrowed(ORIGIN_PENDING)));
            pending.push(i);
        }
    }
    pending
}

/// The items at `pending` (ARN Targets without Origin), named for a
/// person: where each is and its Domain.
pub(crate) fn items_needing(items: &[SourceItem<'_>], pending: &[usize]) -> Vec<String> {
    pending
        .iter()
        .map(|&i| {
            let (location, item) = &items[i];
            match item.as_ref().ok().and_then(|raw| raw.domain.as_ref()) {
                Some(Value::Str(domain)) => format!("{location} ({domain})"),
                _ => location.to_string(),
            }
        })
        .collect()
}

/// Why the ELBv2 API was asked, for an error that says which items need it
/// and what else would do.
/// `needing` names the first of the `count` items.
pub(crate) fn needs_elb(needing: &[String], count: usize, arns: usize) -> String {
    let shown = needing.len().min(SHOWN_NEEDING);
    let mut list = needing[..shown].join(", ");
    if count > shown {
        list.push_str(&format!(" and {} more", count - shown));
    }
    format!(
        "{count} item(s) have an ELB ARN Target without Origin ({list}), so their {arns} load balancer(s) must be \
         looked up through the ELBv2 API; give each such item an Origin (its load balancer's DNS name) to compile \
         without AWS"
    )
}

/// Says which files "data file N" in export errors are.
fn name_data_files(from: &Source, errors: &[ItemError]) {
    // For S3 exports the manifest is not kept; the numbers follow manifest-files.json.
    let Source::Export(dir) = from else { return };
    let mut numbers: Vec<u32> = errors
        .iter()
        .filter_map(|e| match e.location {
            Location::Export { file, .. } => Some(file),
            _ => None,
        })
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let Ok(listing) = std::fs::read_to_string(Path::new(dir).join("manifest-files.json")) else { return };
    let keys: Vec<&str> = listing.lines().filter(|l| !l.trim().is_empty()).collect();
    for n in numbers {
        let key = keys
            .get(n as usize - 1)
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v["dataFileS3Key"].as_str().map(str::to_owned));
        if let Some(key) = key {
            eprintln!("note: data file {n} is {key}");
        }
    }
}

/// Draws the validation bar.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn validated(&self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
    }
    fn writing(&self) {
        self.0.set_message("writing snapshot");
    }
}

/// Draws a live scan: a spinner with items and items per second.
struct ScanBar {
    bar: ProgressBar,
    shown_retries: AtomicU32,
}

/// Retry messages beyond this many are counted, not shown.
const SHOWN_RETRIES: u32 = 10;

impl ScanProgress for ScanBar {
    fn started(&self, segments: u32, estimated_items: u64) {
        self.bar.set_message(format!("{segments} segments, about {estimated_items} items by DynamoDB's count"));
    }
    fn scanned(&self, items: u64, _pages: u64, retries: u64) {
        self.bar.set_position(items);
        if retries > 0 {
            self.bar.set_prefix(format!("{retries} retries "));
        }
    }
    fn retrying(&self, segment: u32, why: &str) {
        let shown = self.shown_retries.fetch_add(1, Ordering::Relaxed) + 1;
        if shown <= SHOWN_RETRIES {
            self.bar.suspend(|| eprintln!("retrying: scan segment {segment}: {why}"));
        }
        if shown == SHOWN_RETRIES {
            self.bar.suspend(|| eprintln!("retrying: (further retries are counted, not shown)"));
        }
    }
}
