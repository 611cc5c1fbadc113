#!/usr/bin/env bash
# Every test: the workspace's, then the JavaScript package's and examples'.
# Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests

cargo test --workspace --locked "$@"
scripts/test-js.sh
