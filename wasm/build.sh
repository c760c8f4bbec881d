#!/usr/bin/env bash
# Builds the `shoal` npm package's WebAssembly: wasm-bindgen's `web` glue, wasm/pkg/web/shoal_wasm.js,
# and the two builds it loads (js/*.js pick one): shoal_wasm_bg.wasm, and shoal_wasm_queries_bg.wasm
# with queries (below).
#
#   wasm/build.sh                 build
#   wasm/build.sh --check-size    also fail if a gzipped .wasm exceeds its limit (below)
#
# Idempotent, installs nothing: it checks for the tools and says how to get what is missing
#   rustup target add wasm32-unknown-unknown
#   cargo install wasm-bindgen-cli --version 0.2.130      (matches the crate's `=0.2.130` pin)
#   (cd wasm && npm install)                              (binaryen's wasm-opt, ws, typescript)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
wasm_bindgen_version="0.2.130"
# 75,500 until keyed values with a time to live (presence that expires) cost 1.1 KB, 76,700 until
# members checked suspects themselves (358 B: no false failure from a missed refutation, faster
# detection; BENCHMARKS.md), 76,800 until the timer sweep kept deferred accusations (29 B), 76,900
# until member tables were shared copy-on-write (1.2 KB: the simulator's 10,000 nodes in a
# twelfth of the memory), 78,100 until panics stopped formatting their messages (`lean-panic`) and
# wasm-opt ran to convergence (1.7 KB less), 76,400 until members moved between the relays of a
# fleet (0.9 KB: `Protocol.moveTo` and the move rule), 77,300 until `query` and `respond` were
# exported, refusing, from the build without queries (514 B: the price of one glue for both),
# 77,800 until members that moved caught up by push-pull and members left on a dead relay were
# probed first (484 B: the last pairs of a relay's failover 9 s -> 7.8 s, and no pair stale for
# minutes; BENCHMARKS.md, "Relay fleet"), 78,300 until gossip between relayed members could fill
# larger packets (`Config::relayed_packet_size`) and stale-claim answers were rate limited by a
# packed key (158 B), 78,400 until a member that moved stopped asking members it still addressed
# through the relay it left for push-pulls and gossip queues boxed their updates (260 B: the
# catch-ups a failover's last pairs wait on, and the queue that held megabytes per member;
# BENCHMARKS.md, "The failover's last pairs within 5 s").
size_limit=78700
# The build with queries (Serf's `query`): 7.6 KB more than the one without. 85,000 until the
# changes above (464 B here), 85,400 until the last one (162 B here).
queries_size_limit=85600
check_size=0
for arg in "$@"; do
  case "$arg" in
    --check-size) check_size=1 ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

missing=()
command -v cargo >/dev/null || missing+=("cargo: install Rust (https://rustup.rs)")
if command -v rustup >/dev/null; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
    || missing+=("the wasm32 target: rustup target add wasm32-unknown-unknown")
fi
if ! command -v wasm-bindgen >/dev/null; then
  missing+=("wasm-bindgen: cargo install wasm-bindgen-cli --version $wasm_bindgen_version")
elif [[ "$(wasm-bindgen --version)" != "wasm-bindgen $wasm_bindgen_version" ]]; then
  missing+=("wasm-bindgen $wasm_bindgen_version (found '$(wasm-bindgen --version)'): cargo install wasm-bindgen-cli --version $wasm_bindgen_version --force")
fi
wasm_opt="$here/node_modules/.bin/wasm-opt"
[[ -x "$wasm_opt" ]] || missing+=("wasm-opt from the binaryen devDependency: (cd wasm && npm install)")
if ((${#missing[@]})); then
  echo "build.sh: missing tools:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

# Release build tuned for size ([profile.release-wasm] in the workspace Cargo.toml). Source paths in
# panic messages are made relative: smaller, and the artifact does not depend on where it was built.
remap="--remap-path-prefix=$root/="
for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  [[ -d "$dir" ]] && remap="$remap --remap-path-prefix=$dir="
done
# The protocol crate's sources as `shoal-core/...`: its directory's name appears in every panic
# location, and the shorter name keeps the wasm as small as before the crates moved under core/.
remap="$remap --remap-path-prefix=core/proto/src/=shoal-core/ --remap-path-prefix=$root/core/proto/src/=shoal-core/"
# The `aes` crate's compact AES (`--cfg aes_compact`): the same cipher in less code (about 1.4 KB
# less wasm), a little slower, which a member sealing a few hundred packets a second never notices.
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
input="$target_dir/wasm32-unknown-unknown/release-wasm/shoal_wasm.wasm"

# The features rustc enables by default for wasm32-unknown-unknown; wasm-opt must accept them.
features=(--enable-bulk-memory --enable-bulk-memory-opt --enable-reference-types --enable-multivalue
  --enable-mutable-globals --enable-nontrapping-float-to-int --enable-sign-ext)

# Builds shoal-wasm with `lean-panic` and the features given, and writes wasm-bindgen's `web` glue
# and the optimised .wasm to the directory given.
build_variant() {
  local cargo_features="$1" dir="$2"
  echo "==> cargo build -p shoal-wasm --profile release-wasm --features $cargo_features --target wasm32-unknown-unknown"
  (cd "$root" && RUSTFLAGS="${RUSTFLAGS:-} $remap --cfg aes_compact" cargo build -p shoal-wasm --profile release-wasm \
    --features "$cargo_features" --target wasm32-unknown-unknown)
  echo "==> wasm-bindgen --target web -> $dir"
  wasm-bindgen --weak-refs --target web --out-dir "$dir" "$input"
  echo "==> wasm-opt --flatten --rereloop -Oz -Oz --converge $dir/shoal_wasm_bg.wasm"
  # --flatten --rereloop before -Oz twice: about 550 bytes less gzipped than -Oz alone; --converge
  # repeats the passes while they still shrink the module: about 430 bytes less.
  "$wasm_opt" --flatten --rereloop -Oz -Oz --converge "${features[@]}" --strip-debug --strip-producers \
    "$dir/shoal_wasm_bg.wasm" -o "$dir/shoal_wasm_bg.wasm"
}

# Two builds, one glue. Every platform loads the .wasm next to the glue (`new URL` with
# `import.meta.url` in browsers and bundlers, the file's bytes or URL in Node and Deno, a compiled
# module in workerd): shoal_wasm_bg.wasm without queries, the default in browsers, and
# shoal_wasm_queries_bg.wasm with them (Serf's `query`, 7.6 KB more gzipped), which Node, Deno and
# workerd load, and browsers when a member joins with `queries: true`. The two export the same
# functions with the same signatures (the build without queries refuses `query` and `respond`), so
# wasm-bindgen writes the same glue for both, which is checked here.
out="$here/pkg/web"
rm -rf "$here/pkg"
build_variant lean-panic "$out"
with_queries="$here/pkg/with-queries"
build_variant lean-panic,queries "$with_queries"
if ! cmp -s "$out/shoal_wasm.js" "$with_queries/shoal_wasm.js"; then
  echo "build.sh: the builds with and without queries need different JS glue; they must export the same functions" >&2
  diff "$out/shoal_wasm.js" "$with_queries/shoal_wasm.js" | head -20 >&2
  exit 1
fi
mv "$with_queries/shoal_wasm_bg.wasm" "$out/shoal_wasm_queries_bg.wasm"
rm -rf "$with_queries"
queries_gz=$(gzip -9 -c "$out/shoal_wasm_queries_bg.wasm" | wc -c)
echo "==> shoal_wasm_queries_bg.wasm: $(wc -c <"$out/shoal_wasm_queries_bg.wasm") bytes, $queries_gz bytes gzipped (target <= $queries_size_limit)"
if ((check_size && queries_gz > queries_size_limit)); then
  echo "build.sh: the gzipped wasm with queries ($queries_gz bytes) exceeds $queries_size_limit bytes" >&2
  exit 1
fi

wasm="$out/shoal_wasm_bg.wasm"
raw=$(wc -c <"$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "==> shoal_wasm_bg.wasm: $raw bytes, $gz bytes gzipped (gzip -9; target <= $size_limit)"
if ((check_size && gz > size_limit)); then
  echo "build.sh: the gzipped wasm ($gz bytes) exceeds $size_limit bytes" >&2
  exit 1
fi
