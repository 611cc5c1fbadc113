#!/usr/bin/env bash
# The JavaScript tests: the package in Node (conformance, native parity, no
# allocation per resolve, damaged snapshots, the store follower), the
# Lambda@Edge handlers, and the Cloudflare Worker in workerd. Needs what
# `scripts/setup.sh --tests` installs; scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-js.sh
# The native CLI the tests compile, publish and resolve with (target/debug/edgeroute), built
# as `cargo test --workspace` builds it: after scripts/test.sh's cargo test this is a no-op,
# where building the one package would recompile the AWS SDK with other features.
cargo test --workspace --locked --quiet --no-run
node --test --test-reporter=tap edge-js/test/*.test.mjs examples/lambda-edge/test/*.test.mjs examples/cloudflare-worker/test/*.test.mjs
