#!/usr/bin/env bash
# What tables of each size (default 100000 250000 500000 1000000) cost in
# memory in Node (Lambda@Edge) and in workerd (Cloudflare Workers): resident
# memory serving a snapshot, and at the peak of a base swap. Run by hand:
# benches/js-memory.sh [ROUTES...]
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 250000 500000 1000000)
scripts/build-js.sh
cargo build --release --locked -q -p edgeroute-control -p edgeroute-benches
work=target/bench-js-memory
mkdir -p "$work"
for n in "${sizes[@]}"; do
  target/release/generate "$n" 1 7 "$work/table.jsonl" "$work/queries.txt" >/dev/null
  target/release/edgeroute compile --from "$work/table.jsonl" --out "$work/routes-$n.snap" >/dev/null
  echo "node:    $(node --expose-gc benches/js/memory.mjs "$work/routes-$n.snap")"
  echo "workerd: $(node benches/js/workerd-memory.mjs "$work/routes-$n.snap")"
done
