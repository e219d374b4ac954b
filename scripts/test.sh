#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, builds the
# WASI test guests, then runs every test (unit, integration, end-to-end with real kubectl).
set -euo pipefail
cd "$(dirname "$0")/.."

# The guests are WASI preview 2 components.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

# The partition tests cut member links with iptables on loopback.
if ! command -v iptables >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq iptables
fi

bash guests/build.sh

# cargo-nextest runs test binaries in parallel with per-test processes; plain cargo test
# works too. Use whichever the machine has.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
