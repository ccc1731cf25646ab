#!/usr/bin/env bash
# Installs Prometheus (Debian package `prometheus`, which also ships `promtool`) for the
# NetworkTraffic plugin's tests, which start a real Prometheus on a loopback port.
# Does nothing when a `prometheus` binary is already on PATH or at /usr/bin/prometheus.
# The package's own systemd service is neither needed nor wanted: tests run their own instance
# on a free port, so the script stops and disables it when the package started it.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
# Keep the package from starting its service (port 9090) where policy-rc.d is honoured.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null

if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

prometheus --version 2>&1 | head -n 1
