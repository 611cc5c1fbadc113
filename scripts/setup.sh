#!/usr/bin/env bash
# Installs what the build (and, with --tests, the tests) need beyond the
# Rust toolchain. Idempotent; scripts/demo.sh and scripts/test.sh run it first.
set -euo pipefail

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: installing the wasm32-unknown-unknown target (the edge module is built for it)" >&2
  rustup target add wasm32-unknown-unknown
fi

[ "${1:-}" = "--tests" ] || exit 0

# moto's server (DynamoDB, S3, ELBv2 on one port) for the AWS tests, in a
# virtualenv of our own; reinstalled when scripts/requirements-test.txt changes.
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tools/venv"
stamp="$venv/.requirements"
if ! cmp -s "$root/scripts/requirements-test.txt" "$stamp" 2>/dev/null; then
  echo "setup: installing moto into .tools/venv (for the DynamoDB tests)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements-test.txt"
  cp "$root/scripts/requirements-test.txt" "$stamp"
fi
