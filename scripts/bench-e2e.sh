#!/usr/bin/env bash
# Side-by-side benchmark on the real control plane: networktraffic-scheduler (ours, default
# profile) against upstream kube-scheduler v1.37.2, scheduler_perf-style. See docs/benchmarks.md,
# "Side by side with kube-scheduler".
#
#   scripts/bench-e2e.sh [--nodes 500,1000,5000] [--pods 5000] [--out report.md] [other flags]
#
# Builds the harness binaries (etcd, kube-apiserver, kube-scheduler; cached), ksched-bench-e2e
# (release) and networktraffic-scheduler in the `dist` profile — the shipped build, release with
# fat LTO (Cargo.toml) — then runs ksched-bench-e2e with the given flags (`--help` lists them
# all: --schedulers, --qps, --burst, --create-concurrency, --json, --work-dir, ...).
# KSCHED_BENCH_PROFILE=release measures a plain release build instead (faster to rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."

KSCHED_TESTENV_BIN_DIR="$(testenv/build.sh | tail -n 1)"
export KSCHED_TESTENV_BIN_DIR

profile="${KSCHED_BENCH_PROFILE:-dist}"
cargo build --release --locked -p ksched-bench-e2e
cargo build --profile "$profile" --locked -p networktraffic-scheduler
echo "networktraffic-scheduler built in profile $profile" >&2
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)" >&2
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- crates examples Cargo.lock 2>/dev/null; then
    revision="$revision + uncommitted changes"
fi
exec target/release/ksched-bench-e2e --ours-bin "target/$profile/networktraffic-scheduler" \
    --revision "$revision ($profile)" "$@"
