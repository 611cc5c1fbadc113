#!/usr/bin/env bash
# Packages the Lambda@Edge function into DIST (default examples/lambda-edge/dist):
# index.mjs, the edgeroute package (edge-js/pkg, built by scripts/build-js.sh),
# config.json and the bundled snapshot. Zip DIST's contents and deploy them.
#
#   examples/lambda-edge/package.sh SNAPSHOT [CONFIG.json] [DIST]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
snapshot=${1:?usage: package.sh SNAPSHOT [CONFIG.json] [DIST]}
config=${2:-$here/config.json}
dist=${3:-$here/dist}
[ -f "$root/edge-js/pkg/index.js" ] || { echo "package.sh: build the package first (scripts/build-js.sh)" >&2; exit 2; }
rm -rf "$dist"
mkdir -p "$dist/edgeroute"
cp "$root"/edge-js/pkg/*.js "$root"/edge-js/pkg/*.wasm "$root"/edge-js/pkg/package.json "$dist/edgeroute/"
# The one import of the package, pointed at the copy beside the handler.
sed "s|'../../edge-js/pkg/index.js'|'./edgeroute/index.js'|" "$here/index.mjs" > "$dist/index.mjs"
grep -q "'./edgeroute/index.js'" "$dist/index.mjs" || { echo "package.sh: index.mjs no longer imports the package as expected" >&2; exit 1; }
cp "$config" "$dist/config.json"
cp "$snapshot" "$dist/routes.snap"
echo "packaged into $dist ($(du -sk "$dist" | cut -f1) KiB): cd $dist && zip -r ../function.zip ." >&2
