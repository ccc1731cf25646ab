#!/usr/bin/env bash
# Builds the real control-plane binaries for ksched's tests from Go modules:
#   etcd            go.etcd.io/etcd/server/v3            (the version k8s.io/kubernetes pins)
#   kube-apiserver  k8s.io/kubernetes/cmd/kube-apiserver
#   kube-scheduler  k8s.io/kubernetes/cmd/kube-scheduler
#   ksched-testenv  ./cmd/ksched-testenv                 (supervisor: `ksched-testenv up`)
#   kubectl         k8s.io/kubernetes/cmd/kubectl        (only with --kubectl)
# into target/testenv/<first 16 hex digits of sha256(go.sum)>/bin and prints that directory on
# the last line of stdout. Binaries that already exist are not rebuilt (the supervisor is rebuilt
# when its sources change). Everything else goes to stderr.
#
# Environment: KSCHED_TESTENV_CACHE_DIR overrides target/testenv; GOMODCACHE/GOCACHE/GOPROXY as
# usual. Safe to run concurrently (flock).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache_root="${KSCHED_TESTENV_CACHE_DIR:-$repo/target/testenv}"
with_kubectl=0
for arg in "$@"; do
	case "$arg" in
	--kubectl) with_kubectl=1 ;;
	-h | --help)
		sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build.sh: unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0

key="$(sha256sum "$here/go.sum" | cut -c1-16)"
bin="$cache_root/$key/bin"
mkdir -p "$bin"
exec 9>"$cache_root/build.lock"
flock 9

k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2 }' "$here/go.mod")"
if [[ ! "$k8s_version" =~ ^v1\.([0-9]+)\.[0-9]+$ ]]; then
	echo "build.sh: cannot find the k8s.io/kubernetes version in $here/go.mod" >&2
	exit 1
fi
k8s_minor="${BASH_REMATCH[1]}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor -X k8s.io/component-base/version.gitTreeState=clean"

# build NAME PACKAGE: go build PACKAGE to $bin/NAME via a temporary file (atomic).
build() {
	local name="$1" pkg="$2" start
	start=$(date +%s)
	echo "build.sh: building $name ($pkg) ..." >&2
	(cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg")
	mv -f "$bin/.$name.tmp" "$bin/$name"
	echo "build.sh: built $name in $(($(date +%s) - start))s" >&2
}

total_start=$(date +%s)
built=0
for entry in \
	"etcd go.etcd.io/etcd/server/v3" \
	"kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver" \
	"kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler"; do
	read -r name pkg <<<"$entry"
	if [[ ! -x "$bin/$name" ]]; then
		build "$name" "$pkg"
		built=1
	fi
done
if [[ $with_kubectl == 1 && ! -x "$bin/kubectl" ]]; then
	build kubectl k8s.io/kubernetes/cmd/kubectl
	built=1
fi

# The supervisor is small (standard library only): rebuild it whenever its sources change.
src_hash="$(cat "$here/go.mod" "$here"/cmd/ksched-testenv/*.go | sha256sum | cut -c1-16)"
if [[ ! -x "$bin/ksched-testenv" || "$(cat "$bin/ksched-testenv.srchash" 2>/dev/null)" != "$src_hash" ]]; then
	build ksched-testenv ./cmd/ksched-testenv
	echo "$src_hash" >"$bin/ksched-testenv.srchash"
	built=1
fi

if [[ $built == 1 ]]; then
	echo "build.sh: done in $(($(date +%s) - total_start))s" >&2
fi
echo "$bin"
