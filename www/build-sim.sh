#!/usr/bin/env bash
# Builds the dashboard's simulator (crate shoal-sim-wasm in www/sim) into www/sim/pkg: a speed-
# optimised release build for wasm32, wasm-bindgen's `web` target, then wasm-opt -O3 when binaryen is
# installed (wasm/node_modules, from the npm package's devDependencies). Its own target directory
# keeps these profile settings from invalidating the workspace's native builds.
#
#   bash www/build-sim.sh        (npm run build:sim does the same)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target_dir="$root/target/sim-wasm"
out="$here/sim/pkg"

command -v wasm-bindgen >/dev/null || { echo "build-sim.sh: wasm-bindgen missing: bash tests/setup" >&2; exit 1; }
echo "==> cargo build -p shoal-sim-wasm --release --target wasm32-unknown-unknown"
(cd "$root" && CARGO_TARGET_DIR="$target_dir" CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_LTO=true \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort \
  cargo build -p shoal-sim-wasm --release --target wasm32-unknown-unknown)
rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" "$target_dir/wasm32-unknown-unknown/release/shoal_sim_wasm.wasm"
wasm_opt="$root/wasm/node_modules/.bin/wasm-opt"
if [[ -x "$wasm_opt" ]]; then
  "$wasm_opt" -O3 --enable-bulk-memory --enable-bulk-memory-opt --enable-reference-types --enable-multivalue \
    --enable-mutable-globals --enable-nontrapping-float-to-int --enable-sign-ext --strip-debug \
    "$out/shoal_sim_wasm_bg.wasm" -o "$out/shoal_sim_wasm_bg.wasm"
fi
wasm="$out/shoal_sim_wasm_bg.wasm"
echo "==> shoal_sim_wasm_bg.wasm: $(wc -c <"$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) bytes gzipped"
