//! Writes a realistic routing table and a query mix for `edgeroute-host bench`.
//!
//!     cargo run --release -p edgeroute-benches --bin generate -- ROUTES QUERIES SEED TABLE.jsonl QUERIES.txt
//!
//! Names as in real preview platforms (`api-t9yhp25-portal.example.com`);
//! queries are ~90 % hits drawn uniformly from the table, ~5 % hosts under
//! wildcards, ~5 % misses, with paths that exercise the static-site rules,
//! in shuffled order (no sorted or repeated runs that flatter caches).

use std::io::Write;

use edgeroute_tests::{generate_table, Rng};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [routes, queries, seed, table_path, queries_path] = args.as_slice() else {
        eprintln!("usage: generate ROUTES QUERIES SEED TABLE.jsonl QUERIES.txt");
        std::process::exit(2);
    };
    let (routes, queries, seed): (usize, usize, u64) = match (routes.parse(), queries.parse(), seed.parse()) {
        (Ok(r), Ok(q), Ok(s)) => (r, q, s),
        _ => {
            eprintln!("ROUTES, QUERIES and SEED are numbers");
            std::process::exit(2);
        }
    };
    let table = generate_table(routes, seed);
    std::fs::write(table_path, &table.jsonl)?;
    let mut rng = Rng::new(seed ^ 0x9E37_79B9);
    let wildcards = (routes / 10_000).max(1);
    let paths = [
        "/",
        "/index.html",
        "/app.js",
        "/docs/",
        "/settings/profile",
        "/404.html",
        "/assets/logo.png",
        "/api/v1/users?page=2",
    ];
    let mut lines: Vec<String> = (0..queries)
        .map(|_| {
            let host = match rng.below(100) {
                0..=89 => rng.pick(&table.hosts).clone(),
                90..=94 => format!("feature-{}.pr-{}.previews.example.com", rng.below(1000), rng.below(wildcards)),
                _ => format!("gone-{:07}-portal.example.com", rng.below(10_000_000)),
            };
            format!("{host} {}", rng.pick(&paths))
        })
        .collect();
    rng.shuffle(&mut lines);
    let mut out = std::io::BufWriter::new(std::fs::File::create(queries_path)?);
    for line in &lines {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    eprintln!("wrote {routes} routes to {table_path} and {queries} queries to {queries_path}");
    Ok(())
}
