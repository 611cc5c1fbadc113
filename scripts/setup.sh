#!/usr/bin/env bash
# Installs what the build (and, with --tests, the tests) need beyond the
# Rust toolchain. Idempotent; scripts/demo.sh and scripts/test.sh run it first.
set -euo pipefail

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "setup: installing the wasm32-unknown-unknown target (the edge module is built for it)" >&2
  rustup target add wasm32-unknown-unknown
fi

[ "${1:-}" = "--tests" ] || exit 0
root="$(cd "$(dirname "$0")/.." && pwd)"

# wasm-bindgen-cli for the JavaScript package (edge-js): it must be exactly the
# version of the wasm-bindgen crate in Cargo.lock.
wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print }' "$root/Cargo.lock")
wbg="$root/.tools/cargo/bin/wasm-bindgen"
if [ "$("$wbg" --version 2>/dev/null | awk '{print $2}')" != "$wbg_version" ]; then
  echo "setup: installing wasm-bindgen-cli $wbg_version into .tools/cargo (for the JavaScript package)" >&2
  # --debug: it compiles in half the time, and binds a module this small in well under a second.
  cargo install --quiet --debug wasm-bindgen-cli --version "$wbg_version" --root "$root/.tools/cargo"
fi

# Node packages of the examples and of the dynalite tests, exactly as their lockfiles say.
for example in "$root"/examples/*/ "$root"/tests/dynalite/; do
  [ -f "$example/package-lock.json" ] || continue
  if ! cmp -s "$example/package-lock.json" "$example/node_modules/.edgeroute-lock" 2>/dev/null; then
    echo "setup: npm ci in ${example#"$root"/}" >&2
    (cd "$example" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$example/package-lock.json" "$example/node_modules/.edgeroute-lock"
  fi
done

# moto's server (DynamoDB, S3, ELBv2 on one port) for the AWS tests, in a
# virtualenv of our own; reinstalled when scripts/requirements-test.txt changes.
venv="$root/.tools/venv"
stamp="$venv/.requirements"
if ! cmp -s "$root/scripts/requirements-test.txt" "$stamp" 2>/dev/null; then
  echo "setup: installing moto into .tools/venv (for the DynamoDB tests)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements-test.txt"
  cp "$root/scripts/requirements-test.txt" "$stamp"
fi

# curl with HTTP/2 and openssl: the TLS tests' clients (curl --http2,
# openssl s_client). Installed from Debian's packages where this runs as
# root with apt; else the setup stops and says how.
has_clients() { curl -V 2>/dev/null | grep -qw HTTP2 && openssl version >/dev/null 2>&1; }
if ! has_clients; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing curl and openssl (the TLS tests' clients)" >&2
    (apt-get install -y -qq curl openssl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq curl openssl; }) >&2
  fi
  if ! has_clients; then
    echo "setup: the TLS tests need curl built with HTTP/2 (curl -V lists HTTP2) and openssl;" >&2
    echo "       install them: apt-get install curl openssl (Debian, Ubuntu), dnf install curl openssl (Fedora)," >&2
    echo "       brew install curl openssl (macOS)" >&2
    exit 1
  fi
fi
