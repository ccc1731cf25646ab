#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, every test (unit, integration against
# a real etcd + kube-apiserver built from Go modules, doc tests) and the license/source checks.
# Installs what it needs on a fresh machine (cargo-deny, the test control plane).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "tools"
if ! command -v cargo-deny >/dev/null 2>&1; then
    cargo install --locked cargo-deny
fi

step "prometheus (Debian package) for the NetworkTraffic tests"
if [ -x scripts/install-prometheus.sh ]; then
    scripts/install-prometheus.sh
fi

step "control plane for the e2e tests (etcd, kube-apiserver, kube-scheduler from Go modules; cached)"
KSCHED_TESTENV_BIN_DIR="$(testenv/build.sh | tail -n 1)"
export KSCHED_TESTENV_BIN_DIR

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, integration, e2e, doc tests)"
cargo test --workspace --locked --no-fail-fast

step "cargo deny (licenses, bans, sources)"
cargo deny --offline check licenses bans sources

printf '\nall checks passed in %ss\n' "$(( $(date +%s) - started ))"
