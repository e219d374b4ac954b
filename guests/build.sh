#!/usr/bin/env bash
# Builds the test guests for wasm32-wasip2 (release) and copies them to guests/out/.
# The node crate's tests load them from there.
set -euo pipefail
cd "$(dirname "$0")"

target=wasm32-wasip2
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

# The guests' own target dir, whatever the caller's CARGO_TARGET_DIR says: copied from below.
export CARGO_TARGET_DIR="$PWD/target"
cargo build --release --target "$target"

mkdir -p out
for guest in hello ticker exit-code confwatch log-shipper http-serve; do
    cp "target/$target/release/$guest.wasm" "out/$guest.wasm"
done
ls -l out/*.wasm
