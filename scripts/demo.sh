#!/usr/bin/env bash
# The main job on the bundled demo table: compile it into a snapshot, then
# resolve a few requests against it. Needs nothing but the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo build --release --locked -q -p edgeroute-compiler
bin=target/release/edgeroute
out=target/demo
mkdir -p "$out"

echo "== compile snapshots/demo.jsonl"
"$bin" compile --from snapshots/demo.jsonl --out "$out/demo.snap"
echo
echo "== inspect"
"$bin" inspect "$out/demo.snap"
echo
resolve() {
  printf '%-58s ' "$1 $2"
  "$bin" resolve --snapshot "$out/demo.snap" --json -- "$1" "$2"
}
echo "== resolve (Host, path)"
resolve env-123.example.com /                          # static site, index.html
resolve env-123.example.com /about                     # folder: redirect to /about/
resolve env-123.example.com /missing                   # not an asset: the site's 404.html
resolve env-456.example.com /deep/link                 # single-page app: Fallback
resolve ENV-789.Example.com:443 /api/v1                # load balancer (ARN + Origin)
resolve feature-x.previews.example.com /               # wildcard
resolve web.pr-42.previews.example.com /               # longest wildcard suffix wins
resolve pinned.pr-42.previews.example.com /            # exact beats wildcard
resolve xn--bcher-kva.example.com /%C3%BCber-uns.html  # IDN entry, percent-encoded path
resolve unknown.example.com /                          # no entry
resolve 'evil.example.com/..' /                        # hostile Host
resolve env-123.example.com /a/../../etc/passwd        # hostile path
echo
echo "== explain"
"$bin" resolve --snapshot "$out/demo.snap" --explain web.pr-42.previews.example.com /
