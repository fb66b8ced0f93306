#!/usr/bin/env bash
# Cross-checks Attune's off-policy evaluation against Open Bandit Pipeline: `attune eval bandit`
# evaluates Attune's contextual bandit on the Open Bandit Dataset's `all` campaign and writes the
# exact inputs it used (evaluation rounds, the policy's action_dist, the reward model's estimates)
# with its IPS, SNIPS, DM and DR estimates; scripts/obp_check.py recomputes them with obp 0.5.7 and
# fails on a difference above 1e-6 (and checks that the rounds are obp's own reading of the log).
# obp 0.5.7 pins torch 1.12, which has no wheel for Python >= 3.11: the venv is built with a Python
# 3.8–3.10 (ATTUNE_OBP_PYTHON, else the first found) and cached under ~/.cache/attune-ci/obp.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${ATTUNE_OBP_VENV:-$HOME/.cache/attune-ci/obp}
data=${ATTUNE_DATASETS:-$HOME/.cache/attune-datasets}/open-bandit
campaigns=${ATTUNE_OBP_CAMPAIGNS:-all}
if [[ ! -s $data/random/all/all.csv || ! -s $data/bts/all/all.csv ]]; then
  echo "ci-obp: no Open Bandit Dataset under $data (run ../shared/data/fetch-datasets.sh)" >&2
  exit 1
fi
python_below_311() { "$1" -c 'import sys; sys.exit(0 if (3, 8) <= sys.version_info[:2] < (3, 11) else 1)' 2>/dev/null; }
if ! "$venv/bin/python" -c 'import obp, importlib.metadata as m; assert m.version("obp") == "0.5.7"' 2>/dev/null; then
  python=${ATTUNE_OBP_PYTHON:-}
  if [[ -z $python ]]; then
    for candidate in python3.10 python3.9 python3.8 "$HOME"/.pyenv/versions/3.10*/bin/python3 "$HOME"/.pyenv/versions/3.9*/bin/python3; do
      if command -v "$candidate" >/dev/null 2>&1 && python_below_311 "$candidate"; then python=$candidate; break; fi
    done
  fi
  if [[ -z $python ]] || ! python_below_311 "$python"; then
    echo "ci-obp: obp 0.5.7 needs a Python 3.8–3.10 (set ATTUNE_OBP_PYTHON); none found" >&2
    exit 1
  fi
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # obp 0.5.7 pins numpy 1.23.5, pandas 1.5.2, scikit-learn 1.1.3, scipy 1.9.3 and torch 1.12.
  # Its seaborn 0.11 needs a matplotlib before 3.9 (3.9 removed `matplotlib.cm.register_cmap`).
  "$venv/bin/pip" install --quiet --disable-pip-version-check "obp==0.5.7" "matplotlib<3.9"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The test step's build (same features, so nothing is rebuilt); it includes the attune binary.
cargo test --quiet --workspace --no-run
"${CARGO_TARGET_DIR:-target}/debug/attune" eval bandit "$data" --campaigns "$campaigns" --dump "$out/ope.jsonl"
"$venv/bin/python" scripts/obp_check.py "$out/ope.jsonl"
