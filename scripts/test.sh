#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, builds the
# WASI test guests, then runs every test (unit, integration, end-to-end with real kubectl).
set -euo pipefail
cd "$(dirname "$0")/.."

# The guests are WASI preview 2 components.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

# Debian packages the tests drive for real: iptables (the partition tests cut member links
# on loopback), containerd and runc (OCI containers), the CNI plugins (pod networks), and
# for the test images (scripts/test-images.sh): busybox-static, a registry, skopeo, and
# htpasswd (apache2-utils) for the private registry.
packages=()
command -v iptables >/dev/null 2>&1 || packages+=(iptables)
command -v containerd >/dev/null 2>&1 || packages+=(containerd)
command -v runc >/dev/null 2>&1 || packages+=(runc)
[ -x /usr/lib/cni/bridge ] || packages+=(containernetworking-plugins)
[ -x /bin/busybox ] || packages+=(busybox-static)
command -v docker-registry >/dev/null 2>&1 || packages+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || packages+=(skopeo)
command -v htpasswd >/dev/null 2>&1 || packages+=(apache2-utils)
if [ ${#packages[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${packages[@]}"
fi

bash guests/build.sh

# cargo-nextest runs test binaries in parallel with per-test processes; plain cargo test
# works too. Use whichever the machine has.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
