#!/usr/bin/env bash
# Starts a real control plane (etcd + kube-apiserver) in the foreground for manual work with
# kubectl; Ctrl-C stops it and removes its data (unless --keep-dir is given).
#
#   testenv/up.sh [--kubectl] [ksched-testenv up flags...]
#
# Defaults to --dir target/testenv/manual, so the kubeconfig path is stable:
#   export KUBECONFIG=$PWD/target/testenv/manual/kubeconfig
# --kubectl also builds kubectl (into the same bin directory, printed at start).
# Other flags go to `ksched-testenv up` (see `--help`), e.g. --no-api-limits, --keep-dir,
# --apiserver-arg=--v=2.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
build_args=()
up_args=()
have_dir=0
for arg in "$@"; do
	case "$arg" in
	--kubectl) build_args+=(--kubectl) ;;
	-h | --help)
		sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	--dir | --dir=*)
		have_dir=1
		up_args+=("$arg")
		;;
	*) up_args+=("$arg") ;;
	esac
done
if [[ $have_dir == 0 ]]; then
	up_args+=("--dir=$repo/target/testenv/manual")
fi

bin="$("$here/build.sh" "${build_args[@]}" | tail -n 1)"
echo "binaries: $bin" >&2
if [[ -x "$bin/kubectl" ]]; then
	echo "kubectl:  $bin/kubectl   (e.g. alias kubectl=$bin/kubectl)" >&2
fi
exec "$bin/ksched-testenv" up --bin-dir="$bin" "${up_args[@]}"
