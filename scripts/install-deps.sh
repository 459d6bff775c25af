#!/bin/sh
# Installs the Debian packages the daemon, the tests and the demo need, if any is missing.
# Runs as root. Safe to run again.
set -e
# systemd: systemd-analyze checks deploy/systemd (it needs no running systemd).
# zstd: ingest decompresses zstd layers with it where Node cannot (Node < 22.15).
# buildah: deploy/kubernetes/build-image.sh builds the Kubernetes image with it; podman runs that image.
# python3-fusepy (with libfuse2): the failing-store tests' store is a small FUSE filesystem of its own.
PKGS="zstd containerd runc libfuse2 fuse attr python3 python3-fusepy busybox-static docker-registry skopeo umoci debootstrap buildah podman golang-go golang-github-containerd-containerd-dev systemd"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
