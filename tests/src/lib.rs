//! Helpers shared by the cross-crate tests and the benchmarks: compiling a
//! table from text, and generating large realistic tables deterministically.

pub mod changes;
pub mod export;

use edgeroute_compiler::{compile, source, CompileError, Compiled, Options};
use edgeroute_edge::Snapshot;

/// The workspace root (for `snapshots/`).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compiles a table given as JSON text (JSON Lines or an array).
pub fn compile_text(text: &str, options: Options) -> Result<Compiled, CompileError> {
    let items = source::parse_json(text.as_bytes()).expect("test tables are valid JSON");
    compile(items, options, &())
}

/// Compiles a table that must be valid and opens the snapshot.
pub fn snapshot(text: &str) -> Snapshot<Vec<u8>> {
    let compiled = compile_text(text, Options::default()).unwrap_or_else(|e| match e {
        CompileError::Invalid(errors) => panic!("invalid test table: {errors:#?}"),
        e => panic!("{e}"),
    });
    Snapshot::from_bytes(compiled.bytes).expect("the compiler writes valid snapshots")
}

/// Resolves and renders the JSON answer.
pub fn resolve_json<D: AsRef<[u8]>>(snap: &Snapshot<D>, host: &str, path: &str) -> String {
    snap.resolve(host.as_bytes(), path.as_bytes()).json().to_string()
}

/// Recomputes the trailing CRC-32C, so that structural corruption reaches
/// the structural checks instead of being caught by the checksum.
pub fn fix_checksum(bytes: &mut [u8]) {
    let body = bytes.len() - 4;
    let crc = edgeroute_edge::crc32c(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
}

/// A small, fast, deterministic PRNG (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

const SERVICES: &[&str] = &["api", "web", "admin", "docs", "auth", "worker", "app", "graphql", "static", "ws"];
const APPS: &[&str] = &["portal", "shop", "billing", "search", "mobile", "crm", "blog", "analytics"];
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A generated table: JSON Lines text and the hostnames in it.
#[derive(Debug)]
pub struct GeneratedTable {
    pub jsonl: String,
    /// Exact hostnames (not wildcards), in generation order.
    pub hosts: Vec<String>,
}

/// Generates `n` routes named like real preview environments
/// (`api-t9yhp25-portal.example.com`): about half static sites with 3–7
/// assets (some content-hashed, usually a Fallback or a 404.html), the rest
/// load balancers and direct origins, plus a few wildcards.
pub fn generate_table(n: usize, seed: u64) -> GeneratedTable {
    let mut rng = Rng::new(seed);
    let mut jsonl = String::with_capacity(n * 200);
    let mut hosts = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let balancers: Vec<(String, String)> = (0..16)
        .map(|i| {
            (
                format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/preview-{i}/50dc6c495c0c{i:04x}"),
                format!("preview-{i}-1234567890.us-east-1.elb.amazonaws.com"),
            )
        })
        .collect();
    let random = |rng: &mut Rng, len: usize| -> String { (0..len).map(|_| *rng.pick(ALPHABET) as char).collect() };
    let wildcards = (n / 10_000).max(1);
    for i in 0..wildcards {
        jsonl.push_str(&format!(
            "{{\"Domain\":\"*.pr-{i}.previews.example.com\",\"Target\":\"https://previews-ingress-{}.example.net\"}}\n",
            i % 4
        ));
    }
    while hosts.len() + wildcards < n {
        let env = random(&mut rng, 7);
        let host = format!("{}-{env}-{}.example.com", rng.pick(SERVICES), rng.pick(APPS));
        if !seen.insert(host.clone()) {
            continue;
        }
        let line = match rng.below(10) {
            0..=4 => {
                let hash = random(&mut rng, 8);
                let mut assets = vec!["index.html".to_owned(), format!("app.{hash}.js")];
                let extra = ["404.html", "favicon.ico", "robots.txt", "docs/index.html", "styles.css"];
                let count = 3 + rng.below(5);
                while assets.len() < count {
                    let pick = match rng.below(3) {
                        0 => format!("assets/{}.{}.png", random(&mut rng, 4), &hash[..6]),
                        _ => rng.pick(&extra).to_string(),
                    };
                    if !assets.contains(&pick) {
                        assets.push(pick);
                    }
                }
                let assets: Vec<String> = assets.iter().map(|a| format!("\"{a}\"")).collect();
                let fallback = if rng.below(2) == 0 { ",\"Fallback\":\"index.html\"" } else { "" };
                format!(
                    "{{\"Domain\":\"{host}\",\"Target\":\"s3://acme-static-sites/{env}\",\"Assets\":[{}]{fallback}}}",
                    assets.join(",")
                )
            }
            5..=8 => {
                let (arn, origin) = rng.pick(&balancers);
                format!("{{\"Domain\":\"{host}\",\"Target\":\"{arn}\",\"Origin\":\"{origin}\"}}")
            }
            _ => format!(
                "{{\"Domain\":\"{host}\",\"Target\":\"http://10.0.{}.{}:8080\"}}",
                rng.below(256),
                rng.below(256)
            ),
        };
        jsonl.push_str(&line);
        jsonl.push('\n');
        hosts.push(host);
    }
    GeneratedTable { jsonl, hosts }
}

/// One request of the conformance corpus and the answer it must get.
#[derive(Clone, Debug)]
pub struct Case {
    pub host: String,
    pub path: String,
    /// The `--json` answer, compact, or `None` before expectations are written.
    pub expect: Option<String>,
}

/// The conformance corpus (`tests/conformance/`): its table and cases.
pub fn conformance() -> (String, Vec<Case>) {
    let dir = workspace_root().join("tests/conformance");
    let table = std::fs::read_to_string(dir.join("table.jsonl")).expect("conformance table");
    let cases = std::fs::read_to_string(dir.join("cases.jsonl")).expect("conformance cases");
    let cases = cases
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a case is JSON");
            Case {
                host: v["host"].as_str().expect("host").to_owned(),
                path: v["path"].as_str().expect("path").to_owned(),
                expect: v.get("expect").map(|e| e.to_string()),
            }
        })
        .collect();
    (table, cases)
}

/// Rewrites the corpus's cases with the given answers (for `UPDATE_CONFORMANCE`).
pub fn write_conformance(cases: &[Case], answers: &[String]) {
    let mut out = String::new();
    for (case, answer) in cases.iter().zip(answers) {
        let expect: serde_json::Value = serde_json::from_str(answer).expect("answers are JSON");
        let line = serde_json::json!({ "host": case.host, "path": case.path, "expect": expect });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(workspace_root().join("tests/conformance/cases.jsonl"), out).expect("write cases");
}
