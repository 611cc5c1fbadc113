#!/usr/bin/env bash
# Builds the JavaScript package edge-js/pkg: the resolver compiled to wasm32
# (profile `wasm-js`), bound by wasm-bindgen (ES module, --target web, so that Node,
# workerd and bundlers load it alike), and the package's own index.js,
# follow.js, types and package.json. Prints the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
wbg=.tools/cargo/bin/wasm-bindgen
[ -x "$wbg" ] || { echo "build-js: no $wbg; run scripts/setup.sh --tests" >&2; exit 2; }

cargo build --quiet --locked -p edgeroute-edge-js --target wasm32-unknown-unknown --profile wasm-js
rm -rf edge-js/pkg
"$wbg" --target web --weak-refs --remove-name-section --remove-producers-section --out-dir edge-js/pkg \
  target/wasm32-unknown-unknown/wasm-js/edgeroute_edge_js.wasm
cp edge-js/js/index.js edge-js/js/follow.js edge-js/js/index.d.ts edge-js/js/package.json edge-js/pkg/
rm -f edge-js/pkg/.gitignore
size() { wc -c < "$1" | tr -d ' '; }
gz() { gzip -9c "$1" | wc -c | tr -d ' '; }
wasm=edge-js/pkg/edgeroute_edge_js_bg.wasm glue=edge-js/pkg/edgeroute_edge_js.js
echo "edge-js/pkg: module $(size $wasm) bytes ($(gz $wasm) gzipped), wasm-bindgen glue $(size $glue) bytes," \
  "index.js + follow.js $(( $(size edge-js/pkg/index.js) + $(size edge-js/pkg/follow.js) )) bytes" >&2
