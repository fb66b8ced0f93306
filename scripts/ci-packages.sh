#!/usr/bin/env bash
# System packages the tests use beyond PostgreSQL (scripts/pg-test-cluster.sh installs that):
# Debian's Chromium and ChromeDriver, for the console's browser test (crates/attune/tests/console.rs).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
chromium --version
