//! Shared set-up for the benchmarks: the generated 1M-route table.

use edgeroute_tests::{generate_table, GeneratedTable};

/// Routes in the benchmark table (override with `EDGEROUTE_BENCH_ROUTES`).
pub fn route_count() -> usize {
    std::env::var("EDGEROUTE_BENCH_ROUTES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// The benchmark table: always the same for the same size.
pub fn table() -> GeneratedTable {
    generate_table(route_count(), 0x5EED)
}
