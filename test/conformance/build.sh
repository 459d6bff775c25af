#!/bin/sh
# Builds containerd 1.6's snapshotter conformance suite into one test binary, offline, and only
# when the binary is missing or older than what it is built from (the suite driver, containerd's
# testsuite package from Debian, the Go toolchain, this script).
# Needs Debian's golang-go and golang-github-containerd-containerd-dev (install.sh installs them).
#
# Usage: build.sh [OUT]   OUT defaults to suite.test beside this script (gitignored).
# Environment: GOCACHE (default /var/cache/conformance-go, outside the repository),
#              FORCE=1 to rebuild anyway.
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/suite.test}
export GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE=${GOCACHE:-/var/cache/conformance-go}

goroot=$(go env GOROOT)
inputs="$here/suite/suite_test.go $here/build.sh $goroot/VERSION
  $GOPATH/src/github.com/containerd/containerd/snapshots/testsuite/testsuite.go
  $GOPATH/src/github.com/containerd/containerd/snapshots/proxy/proxy.go"

stale=${FORCE:-}
if [ ! -x "$out" ]; then stale=1; fi
for f in $inputs; do
  [ -e "$f" ] || { echo "build.sh: missing $f (run install.sh)" >&2; exit 1; }
  if [ -z "$stale" ] && [ "$f" -nt "$out" ]; then stale=1; fi
done

if [ -z "$stale" ]; then
  echo "up to date: $out"
  exit 0
fi
cd "$here/suite"
go test -c -o "$out.tmp.$$" .
mv -f "$out.tmp.$$" "$out"
echo "built $out"
