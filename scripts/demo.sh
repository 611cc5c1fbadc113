#!/usr/bin/env bash
# The main job on the bundled demo: compile the demo table into a snapshot
# and route HTTP with it on 127.0.0.1:8080 (static sites from
# snapshots/demo-sites/, a load balancer answered by a built-in upstream on
# 127.0.0.1:9042). Prints curl lines to try. Needs nothing but the Rust
# toolchain; no AWS account, no network.
#
#   scripts/demo.sh            serve until Ctrl-C
#   scripts/demo.sh --smoke    make the demo's requests, check the answers, exit
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The dev profile, built exactly as `cargo test --workspace` builds it
# (scripts/test.sh): building only the two binaries would resolve the
# dependencies' features differently and compile much of them again.
echo "== building edgeroute and edgeroute-host (the first build takes a few minutes)"
cargo test --workspace --locked --quiet --no-run
bin=target/debug
out=target/demo
mkdir -p "$out"

echo "== edgeroute compile --from snapshots/demo.jsonl"
"$bin/edgeroute" compile --from snapshots/demo.jsonl --out "$out/demo.snap"
echo
"$bin/edgeroute" inspect --snapshot "$out/demo.snap"
echo
echo "== edgeroute-host demo $*"
exec "$bin/edgeroute-host" demo --snapshot "$out/demo.snap" --static-root snapshots/demo-sites "$@"
