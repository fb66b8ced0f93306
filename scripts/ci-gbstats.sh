#!/usr/bin/env bash
# Cross-checks Attune's experiment analysis against GrowthBook's stats engine: builds three
# experiments from real decisions and events through the engine (the `experiments_gbstats` test
# dumps their sufficient statistics and Attune's results), then recomputes every lift, interval
# and p-value with gbstats 0.8.0 and fails on a difference above 1e-6.
# The venv lives under ~/.cache/attune-ci/gbstats (gbstats 0.8.0 needs numpy < 2 and pandas < 2).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${ATTUNE_GBSTATS_VENV:-$HOME/.cache/attune-ci/gbstats}
python=${ATTUNE_PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$venv/bin/python" -c 'import gbstats, importlib.metadata as m; assert m.version("gbstats") == "0.8.0"' 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "numpy<2" "pandas<2" "gbstats==0.8.0"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ATTUNE_GBSTATS_OUT="$out/experiments.json" cargo test --quiet --workspace --test experiments_gbstats  # --workspace: the features of the test step, so nothing is rebuilt
"$venv/bin/python" scripts/gbstats_check.py "$out/experiments.json"
