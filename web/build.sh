#!/usr/bin/env bash
# Builds the browser package: the release wasm, wasm-bindgen's ES module into web/pkg/ (wgvit.js,
# wgvit_bg.wasm), wasm-opt -O when npm's binaryen is installed in web/node_modules (Debian's
# binaryen 108 breaks the module for Chromium: never used), then checks the size budget:
# the wasm must be <= 1.5 MB gzipped (exit 1 otherwise). Run from anywhere.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

budget=$((1500 * 1000)) # 1.5 MB
target_dir="${CARGO_TARGET_DIR:-target}"

cargo build --release --target wasm32-unknown-unknown --lib
rm -rf web/pkg
wasm-bindgen --target web --out-dir web/pkg "$target_dir/wasm32-unknown-unknown/release/wgvit.wasm"

wasm_opt=web/node_modules/.bin/wasm-opt
if [ -x "$wasm_opt" ]; then
    echo "wasm-opt (npm binaryen): $("$wasm_opt" --version)"
    "$wasm_opt" -O --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        web/pkg/wgvit_bg.wasm -o web/pkg/wgvit_bg.opt.wasm
    mv web/pkg/wgvit_bg.opt.wasm web/pkg/wgvit_bg.wasm
else
    echo "wasm-opt: not used (npm binaryen not installed in web/node_modules)"
fi

raw=$(wc -c <web/pkg/wgvit_bg.wasm)
gz=$(gzip -9 -c web/pkg/wgvit_bg.wasm | wc -c)
printf 'web/pkg/wgvit_bg.wasm: %d bytes, %d bytes gzipped (%.2f MB; budget 1.50 MB)\n' "$raw" "$gz" "$(awk -v g="$gz" 'BEGIN { print g / 1e6 }')"
if [ "$gz" -gt "$budget" ]; then
    echo "error: the wasm is over the size budget: $gz > $budget bytes gzipped" >&2
    exit 1
fi
