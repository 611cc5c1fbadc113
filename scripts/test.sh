#!/usr/bin/env bash
# Every test: the workspace's, then the JavaScript package's and examples'.
# Installs what the tests need first. Says how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
took() { echo "test.sh: $1 took $(( $(date +%s) - $2 ))s" >&2; }

t=$(date +%s); scripts/setup.sh --tests; took setup "$t"
t=$(date +%s); cargo test --workspace --locked --no-run "$@"; took "building the tests" "$t"
t=$(date +%s); cargo test --workspace --locked "$@"; took "the Rust tests" "$t"
t=$(date +%s); scripts/test-js.sh; took "the JavaScript tests" "$t"
