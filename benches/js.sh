#!/usr/bin/env bash
# The JavaScript package's resolve cost in Node, for tables of each size given
# (default 10000 100000), with the native resolvers' numbers from
# `edgeroute-host bench` on the same snapshot and queries for comparison.
# Run by hand: benches/js.sh [ROUTES...]
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
scripts/build-js.sh
cargo build --release --locked -q -p edgeroute-control -p edgeroute-host -p edgeroute-benches
work=target/bench-js
mkdir -p "$work"
for n in "${sizes[@]}"; do
  echo "== $n routes"
  target/release/generate "$n" 100000 7 "$work/table.jsonl" "$work/queries.txt" >/dev/null
  target/release/edgeroute compile --from "$work/table.jsonl" --out "$work/routes.snap" >/dev/null
  node benches/js/resolve.mjs "$work/routes.snap" "$work/queries.txt"
  target/release/edgeroute-host bench --snapshot "$work/routes.snap" --queries "$work/queries.txt" | sed 's/^/  native: /'
done
