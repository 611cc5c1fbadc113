//! Random changes to a table, for the differential tests of layers: upserts
//! and deletes of exact names and wildcards in a few zones (an IDN one
//! among them), written in random case, with the table they leave (keyed
//! by normalized Domain) and the requests that tell states apart.

use std::collections::BTreeMap;

use edgeroute_compiler::normalize_domain;

use crate::Rng;

/// A table and the random changes made to it.
#[derive(Debug)]
pub struct RandomChanges {
    rng: Rng,
    pool: Vec<String>,
    /// Normalized Domain → its line.
    table: BTreeMap<String, String>,
    pub upserts: usize,
    pub deletes: usize,
}

impl RandomChanges {
    /// A table of a third of the pool's names.
    pub fn new(seed: u64) -> RandomChanges {
        let mut rng = Rng::new(seed);
        let zones = ["example.com", "pr-7.example.com", "previews.example.org", "bücher.example"];
        let mut pool = Vec::new();
        for zone in zones {
            pool.push(format!("*.{zone}"));
            for i in 0..12 {
                pool.push(format!("env-{i}.{zone}"));
            }
        }
        pool.push("*.a.pr-7.example.com".into());
        pool.push("deep.a.pr-7.example.com".into());
        // Underscores and a single label: bytes and shapes the layers'
        // filters hash like any other.
        pool.push("svc_1.example.com".into());
        pool.push("*.svc_2.example.com".into());
        pool.push("localhost".into());
        let mut table = BTreeMap::new();
        for d in pool.iter().step_by(3) {
            table.insert(normalize(d), random_item(&mut rng, d));
        }
        RandomChanges { rng, pool, table, upserts: 0, deletes: 0 }
    }

    /// The table as JSON Lines.
    pub fn table(&self) -> String {
        self.table.values().map(|l| format!("{l}\n")).collect()
    }

    /// One to three changes to distinct Domains, as `apply`'s JSON Lines,
    /// made to the table too.
    pub fn step(&mut self) -> String {
        let mut lines = Vec::new();
        let mut touched = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let d = self.rng.pick(&self.pool).clone();
            let key = normalize(&d);
            if touched.contains(&key) {
                continue;
            }
            touched.push(key.clone());
            if self.rng.below(3) == 0 {
                let written = random_case(&mut self.rng, &d, 2);
                lines.push(format!(r#"{{"Domain":{},"Deleted":true}}"#, serde_json::to_string(&written).unwrap()));
                self.table.remove(&key);
                self.deletes += 1;
            } else {
                let line = random_item(&mut self.rng, &d);
                lines.push(line.clone());
                self.table.insert(key, line);
                self.upserts += 1;
            }
        }
        lines.join("\n")
    }

    /// Hosts and paths that exercise every candidate of the pool.
    pub fn probes(&self) -> Vec<(String, &'static str)> {
        let mut hosts = Vec::new();
        for d in &self.pool {
            let ascii = normalize(d);
            match ascii.strip_prefix("*.") {
                Some(zone) => {
                    hosts.push(format!("x.{zone}"));
                    hosts.push(format!("y.x.{zone}"));
                    hosts.push(zone.to_owned());
                }
                None => hosts.push(ascii.to_uppercase()),
            }
        }
        hosts.push("unknown.dev".into());
        // A port, a trailing dot and a deep host reach the same candidates.
        hosts.push("ENV-1.example.com:8443".into());
        hosts.push("x.Svc_2.example.com.".into());
        hosts.push("a.b.c.d.e.f.g.deep.a.pr-7.example.com".into());
        hosts.sort();
        hosts.dedup();
        let mut out = Vec::new();
        for (i, h) in hosts.into_iter().enumerate() {
            out.push((h.clone(), "/"));
            out.push((h, ["/a.js", "/missing", "/dir", "/x/"][i % 4]));
        }
        out
    }
}

fn normalize(domain: &str) -> String {
    normalize_domain(domain).expect("the pool's names are valid").into_owned()
}

/// `domain` with one letter in `one_in` uppercased.
fn random_case(rng: &mut Rng, domain: &str, one_in: usize) -> String {
    domain.chars().map(|c| if rng.below(one_in) == 0 { c.to_uppercase().next().unwrap_or(c) } else { c }).collect()
}

/// One random item for `domain`, written with random case.
fn random_item(rng: &mut Rng, domain: &str) -> String {
    let written = random_case(rng, domain, 4);
    let target = match rng.below(4) {
        0 => format!(r#""Target":"https://origin-{}.example.net:{}""#, rng.below(5), 8000 + rng.below(3)),
        1 => format!(
            r#""Target":"s3://bucket-{}/site-{}","Assets":["index.html","404.html","a.js","dir/index.html"]"#,
            rng.below(3),
            rng.below(50)
        ),
        2 => format!(r#""Target":"s3://bucket-{}/spa-{}","Fallback":"index.html""#, rng.below(3), rng.below(50)),
        _ => format!(r#""Target":"s3://bucket-{}""#, rng.below(3)),
    };
    format!(r#"{{"Domain":{},{target}}}"#, serde_json::to_string(&written).unwrap())
}
