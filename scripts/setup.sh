#!/usr/bin/env bash
# Installs what the build and the tests need beyond the Rust toolchain.
# Idempotent; scripts/demo.sh and scripts/test.sh run it first.
set -euo pipefail

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: installing the wasm32-unknown-unknown target (the edge module is built for it)" >&2
  rustup target add wasm32-unknown-unknown
fi
