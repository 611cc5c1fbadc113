//! `edgeroute-host bench`: one run, the same queries in file order, timed
//! per lookup through four resolvers: the Wasm module in wasmtime (writing
//! the input into guest memory and reading the answer included), the native
//! `edge` resolver, `fst::Map::get` on the snapshot's own index, and
//! `HashMap<String, u32>::get`. Timings are per lookup with `Instant`, minus
//! the timer's own median cost (reported). Numbers, never assertions.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use edgeroute_edge::{HostName, Snapshot};

use anyhow::{Context as _, Result};
use edgeroute_host::{EdgeEngine, EngineError, Router};

use crate::flags::BenchArgs;

/// One query: a `Host` value and a request target.
#[derive(Clone, Debug)]
pub struct Query {
    pub host: String,
    pub path: String,
}

/// Parses a query file: one `HOST PATH` per line (PATH defaults to `/`).
pub fn parse_queries(text: &str) -> Vec<Query> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(2, ' ');
            let host = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or("/").to_owned();
            Query { host, path }
        })
        .collect()
}

/// Percentiles and mean of one resolver's per-lookup times.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
}

fn stats(mut ns: Vec<f64>) -> Stats {
    if ns.is_empty() {
        return Stats::default();
    }
    ns.sort_by(f64::total_cmp);
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize];
    Stats { p50: at(0.50), p99: at(0.99), mean: ns.iter().sum::<f64>() / ns.len() as f64 }
}

/// The median cost of reading the clock twice, subtracted from every sample.
fn timer_overhead() -> f64 {
    let mut v: Vec<f64> = (0..10_001)
        .map(|_| {
            let t = Instant::now();
            black_box(());
            t.elapsed().as_nanos() as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_each<T>(queries: &[T], overhead: f64, mut f: impl FnMut(&T)) -> Vec<f64> {
    queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            f(q);
            (t.elapsed().as_nanos() as f64 - overhead).max(0.0)
        })
        .collect()
}

/// Everything one bench run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub routes: u32,
    pub queries: usize,
    pub threads: usize,
    pub cores: String,
    pub snapshot_bytes: usize,
    pub timer_overhead_ns: f64,
    pub wasm: Stats,
    pub native: Stats,
    pub fst: Stats,
    pub hashmap: Stats,
    /// Native `Snapshot::from_bytes` (checksum and full validation).
    pub load_ms: f64,
    /// Wasm: native CRC and validation, the copy into a memfd, a first instance.
    pub wasm_load_ms: f64,
    /// A hot swap to the same snapshot again (the module's functions already
    /// compiled): the median of five, what a host pays per publish.
    pub swap_ms: f64,
    /// Resident set after every worker thread has its instance.
    pub rss_bytes: u64,
    /// Proportional set size then (shared pages counted once).
    pub pss_bytes: u64,
    /// Private anonymous memory then.
    pub anon_bytes: u64,
    pub peak_rss_bytes: u64,
}

/// The calling process's resident set (current, peak), from /proc.
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Memory by kind, from `/proc/self/smaps_rollup`: (proportional set size,
/// private anonymous pages). Shared snapshot pages count once in PSS and not
/// at all as anonymous; copies made per instance would show in both.
pub fn memory_breakdown() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("Pss:"), field("Anonymous:"))
}

/// The cores this process may run on (`Cpus_allowed_list`).
pub fn cores() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .map(|l| l.trim_start_matches("Cpus_allowed_list:").trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The FST key of a host: lowercase, labels reversed (docs/snapshot-format.md).
fn fst_key(host: &str) -> Vec<u8> {
    let h = HostName::parse(host.as_bytes()).map(|h| h.to_string()).unwrap_or_default();
    h.rsplit('.').collect::<Vec<_>>().join(".").into_bytes()
}

/// Runs the bench: `threads` worker threads each resolve every query
/// through Wasm (thread 0's times are reported); the native resolvers run
/// on the calling thread afterwards.
fn measure(snapshot: &[u8], queries: &[Query], threads: usize) -> Result<Report, EngineError> {
    let threads = threads.max(1);
    let overhead = timer_overhead();

    let t = Instant::now();
    let snap = Snapshot::from_bytes(snapshot).map_err(|e| EngineError::Trap(e.to_string()))?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;

    let router = Router::new(EdgeEngine::new()?, snapshot)?;
    let wasm_load_ms = router.live().map_or(0.0, |live| live.base.load_time.as_secs_f64()) * 1e3;
    let mut swaps: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            router.swap(snapshot).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    swaps.sort_by(f64::total_cmp);
    let swap_ms = swaps[2];
    let ready = std::sync::Barrier::new(threads + 1);
    let (wasm, (rss_bytes, (pss_bytes, anon_bytes))) = std::thread::scope(|s| -> Result<_, EngineError> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<Vec<f64>, EngineError> {
                    let mut worker = router.worker();
                    // Instantiate before the clock starts, then wait for all.
                    let warm = worker.resolve(b"warm.example.com", b"/").map(|_| ());
                    ready.wait();
                    warm?;
                    let mut failed = None;
                    let times = time_each(queries, overhead, |q| {
                        if let Err(e) = worker.resolve(q.host.as_bytes(), q.path.as_bytes()) {
                            failed.get_or_insert(e);
                        }
                    });
                    failed.map_or(Ok(times), Err)
                })
            })
            .collect();
        ready.wait();
        let rss_all_ready = (rss().0, memory_breakdown());
        let mut results = handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        let first = results.next().unwrap_or(Ok(Vec::new()))?;
        for r in results {
            r?;
        }
        Ok((first, rss_all_ready))
    })?;

    let native = time_each(queries, overhead, |q| {
        black_box(snap.resolve(q.host.as_bytes(), q.path.as_bytes()));
    });

    let section = snap.sections()[0];
    let map = fst::Map::new(&snapshot[section.offset..section.offset + section.len])
        .map_err(|e| EngineError::Trap(e.to_string()))?;
    let keys: Vec<Vec<u8>> = queries.iter().map(|q| fst_key(&q.host)).collect();
    let fst_times = time_each(&keys, overhead, |k| {
        black_box(map.get(k));
    });

    let mut hashmap: HashMap<String, u32> = HashMap::with_capacity(snap.route_count() as usize);
    let mut id = 0u32;
    snap.for_each_route(|domain, _| {
        hashmap.insert(domain.to_owned(), id);
        id += 1;
    });
    let hashmap_times = time_each(queries, overhead, |q| {
        black_box(hashmap.get(q.host.as_str()));
    });

    Ok(Report {
        routes: snap.route_count(),
        queries: queries.len(),
        threads,
        cores: cores(),
        snapshot_bytes: snapshot.len(),
        timer_overhead_ns: overhead,
        wasm: stats(wasm),
        native: stats(native),
        fst: stats(fst_times),
        hashmap: stats(hashmap_times),
        load_ms,
        wasm_load_ms,
        swap_ms,
        rss_bytes,
        pss_bytes,
        anon_bytes,
        peak_rss_bytes: rss().1,
    })
}

impl Report {
    pub fn json(&self) -> serde_json::Value {
        let r = |a: f64, b: f64| if b > 0.0 { (a / b * 100.0).round() / 100.0 } else { 0.0 };
        serde_json::json!({
            "routes": self.routes,
            "queries": self.queries,
            "threads": self.threads,
            "cores": self.cores,
            "snapshot_bytes": self.snapshot_bytes,
            "timer_overhead_ns": self.timer_overhead_ns,
            "wasm_p50_ns": self.wasm.p50, "wasm_p99_ns": self.wasm.p99, "wasm_mean_ns": self.wasm.mean,
            "native_p50_ns": self.native.p50, "native_p99_ns": self.native.p99, "native_mean_ns": self.native.mean,
            "fst_p50_ns": self.fst.p50, "fst_p99_ns": self.fst.p99, "fst_mean_ns": self.fst.mean,
            "hashmap_p50_ns": self.hashmap.p50, "hashmap_p99_ns": self.hashmap.p99, "hashmap_mean_ns": self.hashmap.mean,
            "wasm_over_native_p50": r(self.wasm.p50, self.native.p50),
            "wasm_over_hashmap_p50": r(self.wasm.p50, self.hashmap.p50),
            "load_ms": self.load_ms,
            "wasm_load_ms": self.wasm_load_ms,
            "swap_ms": self.swap_ms,
            "rss_bytes": self.rss_bytes,
            "pss_bytes": self.pss_bytes,
            "anon_bytes": self.anon_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
        })
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "bench: {} routes ({} bytes), {} queries in file order, {} wasm thread(s) on cores {}; \
             timer overhead {:.0} ns subtracted\n",
            self.routes, self.snapshot_bytes, self.queries, self.threads, self.cores, self.timer_overhead_ns
        );
        s.push_str("                         p50 ns    p99 ns   mean ns\n");
        for (name, st) in [
            ("wasm (wasmtime)", self.wasm),
            ("native edge resolver", self.native),
            ("fst::Map::get", self.fst),
            ("HashMap<String,u32>", self.hashmap),
        ] {
            s.push_str(&format!("  {name:<21} {:>8.0}  {:>8.0}  {:>8.0}\n", st.p50, st.p99, st.mean));
        }
        s.push_str(&format!(
            "  wasm / native {:.2}x (p50), {:.2}x (mean); wasm / HashMap {:.2}x (p50)\n",
            self.wasm.p50 / self.native.p50.max(1e-9),
            self.wasm.mean / self.native.mean.max(1e-9),
            self.wasm.p50 / self.hashmap.p50.max(1e-9)
        ));
        s.push_str(&format!(
            "  load: native {:.1} ms (checksum + validation); wasm {:.1} ms (crc, validation, memfd, first instance); \
             a hot swap {:.1} ms\n",
            self.load_ms, self.wasm_load_ms, self.swap_ms
        ));
        s.push_str(&format!(
            "  memory with {} worker(s) ready: RSS {:.1} MiB, PSS {:.1} MiB, private anonymous {:.1} MiB; peak RSS {:.1} MiB\n",
            self.threads,
            self.rss_bytes as f64 / 1048576.0,
            self.pss_bytes as f64 / 1048576.0,
            self.anon_bytes as f64 / 1048576.0,
            self.peak_rss_bytes as f64 / 1048576.0
        ));
        s
    }
}

/// `edgeroute-host bench`: times every query through the module, the
/// native resolver, `fst` and a HashMap, and prints the report.
pub fn run(args: &BenchArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.snapshot).with_context(|| format!("cannot read snapshot {}", args.snapshot.display()))?;
    let text =
        std::fs::read_to_string(&args.queries).with_context(|| format!("cannot read {}", args.queries.display()))?;
    let queries = parse_queries(&text);
    let report = measure(&bytes, &queries, args.threads)
        .with_context(|| format!("cannot bench snapshot {}", args.snapshot.display()))?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}
