#!/usr/bin/env bash
# Builds the OCI test images from Debian binaries (no image comes from the internet) and
# pushes them to a registry on loopback.
#
#   scripts/test-images.sh build OUT_DIR          # OCI layout in OUT_DIR (busybox:test)
#   scripts/test-images.sh serve DIR PORT [HTPASSWD] # docker-registry on 127.0.0.1:PORT, data
#                                                    # in DIR; with HTPASSWD, pulls need a login
#   scripts/test-images.sh push OUT_DIR HOST:PORT [USER:PASS] # copies busybox:test there,
#                                                    # plain HTTP
#   scripts/test-images.sh wasm FILE OUT_DIR TAG  # OCI layout in OUT_DIR holding the component
#                                                 # FILE as a wasm artifact tagged TAG
#
# A layout from `wasm` is pushed with skopeo like any other:
#   skopeo copy --dest-tls-verify=false oci:OUT_DIR:TAG docker://HOST:PORT/NAME:TAG
#
# The busybox image holds Debian's static busybox (package busybox-static) with a link for
# every applet in /bin, so `sh`, `httpd`, `wget`, `sleep` ... all work as commands.
set -euo pipefail

build() {
  local out=$1 root blobs layer config manifest
  root=$(mktemp -d)
  trap 'rm -rf "$root"' RETURN
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/var/www" "$out/blobs/sha256"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  echo 'root:x:0:' > "$root/etc/group"
  chmod 1777 "$root/tmp"
  blobs="$out/blobs/sha256"
  # A reproducible layer: fixed owner, order and times.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$out/layer.tar" .
  local diff_id size_layer
  diff_id=$(sha256sum "$out/layer.tar" | cut -d' ' -f1)
  gzip -n -9 -c "$out/layer.tar" > "$out/layer.tar.gz"
  rm "$out/layer.tar"
  layer=$(sha256sum "$out/layer.tar.gz" | cut -d' ' -f1)
  size_layer=$(stat -c %s "$out/layer.tar.gz")
  mv "$out/layer.tar.gz" "$blobs/$layer"
  cat > "$out/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]}}
JSON
  config=$(sha256sum "$out/config.json" | cut -d' ' -f1)
  local size_config
  size_config=$(stat -c %s "$out/config.json")
  mv "$out/config.json" "$blobs/$config"
  cat > "$out/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$size_config},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer","size":$size_layer}]}
JSON
  manifest=$(sha256sum "$out/manifest.json" | cut -d' ' -f1)
  local size_manifest
  size_manifest=$(stat -c %s "$out/manifest.json")
  mv "$out/manifest.json" "$blobs/$manifest"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
  cat > "$out/index.json" <<JSON
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$size_manifest,"annotations":{"org.opencontainers.image.ref.name":"busybox:test"}}]}
JSON
}

# Writes `$2` into the layout's blobs under its sha256 and prints `DIGEST SIZE`.
add_blob() {
  local out=$1 file=$2 digest
  digest=$(sha256sum "$file" | cut -d' ' -f1)
  cp "$file" "$out/blobs/sha256/$digest"
  echo "sha256:$digest $(stat -c %s "$file")"
}

# The wasm OCI artifact layout (CNCF wasm TAG's "wasm OCI artifact" format): config
# `application/vnd.wasm.config.v0+json`, one layer `application/wasm` holding the component.
wasm() {
  local component=$1 out=$2 tag=$3 work config layer manifest
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  mkdir -p "$out/blobs/sha256"
  read -r layer layer_size < <(add_blob "$out" "$component")
  printf '{"architecture":"wasm","os":"wasip2","layerDigests":["%s"]}' "$layer" > "$work/config.json"
  read -r config config_size < <(add_blob "$out" "$work/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/wasm","digest":"%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" > "$work/manifest.json"
  read -r manifest manifest_size < <(add_blob "$out" "$work/manifest.json")
  echo '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}\n' \
    "$manifest" "$manifest_size" "$tag" > "$out/index.json"
}

serve() {
  local dir=$1 port=$2 htpasswd=${3:-} auth=""
  mkdir -p "$dir/data"
  if [ -n "$htpasswd" ]; then
    auth="auth:
  htpasswd:
    realm: wkube-test
    path: $htpasswd"
  fi
  cat > "$dir/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
YML
  exec docker-registry serve "$dir/config.yml"
}

push() {
  local out=$1 registry=$2 creds=()
  [ -n "${3:-}" ] && creds=(--dest-creds "$3")
  skopeo copy --quiet --dest-tls-verify=false "${creds[@]}" "oci:$out:busybox:test" "docker://$registry/busybox:test"
}

case "${1:-}" in
  build) build "$2" ;;
  serve) serve "$2" "$3" "${4:-}" ;;
  push) push "$2" "$3" "${4:-}" ;;
  wasm) wasm "$2" "$3" "$4" ;;
  *) echo "usage: $0 build OUT_DIR | serve DIR PORT [HTPASSWD] | push OUT_DIR HOST:PORT [USER:PASS] | wasm FILE OUT_DIR TAG" >&2; exit 2 ;;
esac
