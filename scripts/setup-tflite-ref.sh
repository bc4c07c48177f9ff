#!/usr/bin/env bash
# Installs TFLite's own interpreter (@tensorflow/tfjs-tflite, WebAssembly) into .tflite-ref/, a
# side folder used only by the TFLite tests and bench/tflite as the reference for converted
# models. It is not a dependency of the package: its peer is tfjs-core 4.9 while the package uses
# 4.22, hence the separate folder and --legacy-peer-deps. Tests that need it skip with a printed
# reason when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.tflite-ref
if [ -f "$dir/node_modules/@tensorflow/tfjs-tflite/package.json" ]; then
  echo "setup-tflite-ref: already installed in $dir"
  exit 0
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"tflite-ref","private":true}' >"$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --legacy-peer-deps \
  @tensorflow/tfjs-tflite@0.0.1-alpha.10 @tensorflow/tfjs-core@4.9.0 @tensorflow/tfjs-backend-cpu@4.9.0
echo "setup-tflite-ref: installed in $dir"
