#!/usr/bin/env bash
# Every test of the workspace. Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests

cargo test --workspace --locked "$@"
