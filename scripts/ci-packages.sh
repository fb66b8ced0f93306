#!/usr/bin/env bash
# System packages the tests use beyond PostgreSQL (scripts/pg-test-cluster.sh installs that):
# - Debian's Chromium and ChromeDriver, for the console's and the demo site's browser tests
#   (crates/attune/tests/console.rs, browser.rs);
# - Debian's Firefox ESR and geckodriver, for the demo site's test in Firefox (browser.rs).
#   Debian has no geckodriver package: it is Mozilla's Rust crate, built once with `cargo install`
#   into ~/.cache/attune-ci/geckodriver (about 3 minutes on 2 cores) and reused from there.
#
# Prints the lines to export (GECKODRIVER=...) on stdout's last line.
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v firefox-esr >/dev/null || missing+=(firefox-esr)
if ((${#missing[@]})); then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
chromium --version >&2
firefox-esr --version >&2

gecko_root=${ATTUNE_CI_CACHE:-$HOME/.cache/attune-ci}/geckodriver
gecko=$gecko_root/bin/geckodriver
if ! "$gecko" --version >/dev/null 2>&1; then
  echo "building geckodriver (cargo install, cached in $gecko_root)" >&2
  # Its own target dir: the project's must not be invalidated by another lock file.
  CARGO_TARGET_DIR=$gecko_root/target cargo install geckodriver --version 0.37.1 --locked --root "$gecko_root" >&2
  rm -rf "$gecko_root/target"
fi
# Read its whole output (a `| head` can close the pipe early: geckodriver then panics on EPIPE and,
# under pipefail, fails the script).
gecko_version=$("$gecko" --version)
echo "${gecko_version%%$'\n'*}" >&2
echo "GECKODRIVER=$gecko"
