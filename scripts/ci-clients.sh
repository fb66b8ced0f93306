#!/usr/bin/env bash
# Generated clients (issue 18): starts `attune serve` on a free loopback port with a fresh data
# directory, fetches GET /v1/openapi.json, validates it with openapi-spec-validator, generates a
# Python client (openapi-python-client) and a TypeScript client (openapi-typescript + openapi-fetch),
# and runs the flow script of each against the server (clients/python/flow.py,
# clients/typescript/flow.ts). Exits non-zero on any failure; the last line says
# `clients: N passed, M failed`.
#
#   bash scripts/ci-clients.sh [path/to/attune]     (default: $CARGO_TARGET_DIR or target, /debug/attune)
#
# Needs python3 (3.11+), node 20+ and npm, and the Python and npm registries. Generator versions
# are pinned in clients/python/requirements-ci.txt and clients/typescript/package-lock.json; the
# venv and node_modules are cached under ~/.cache/attune-ci, keyed by those files.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/attune}
python=${PYTHON:-python3}
cache=${ATTUNE_CI_CACHE:-$HOME/.cache/attune-ci}
started=$(date +%s)
say() { echo "-- $* ($(( $(date +%s) - started )) s)"; }

if [[ ! -x $bin ]]; then
  say "no $bin: building it"
  cargo build -p attune
  bin=${CARGO_TARGET_DIR:-target}/debug/attune
fi
admin_key=${ATTUNE_ADMIN_KEY:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
if (( ${#admin_key} < 32 )); then
  echo "ATTUNE_ADMIN_KEY must be at least 32 characters" >&2
  exit 2
fi

# The tools, cached by the hash of the pin files.
mkdir -p "$cache"
venv=$cache/venv-$(sha256sum clients/python/requirements-ci.txt | cut -c1-12)
if [[ ! -x $venv/bin/openapi-python-client ]]; then
  say "Python venv: $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r clients/python/requirements-ci.txt
fi
npm_dir=$cache/npm-$(cat clients/typescript/package.json clients/typescript/package-lock.json | sha256sum | cut -c1-12)
if [[ ! -x $npm_dir/node_modules/.bin/tsx ]]; then
  say "npm packages: $npm_dir"
  rm -rf "$npm_dir"
  mkdir -p "$npm_dir"
  cp clients/typescript/package.json clients/typescript/package-lock.json "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

# The server.
work=$(mktemp -d "${TMPDIR:-/tmp}/attune-clients.XXXXXX")
server_pid=
finish() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap finish EXIT
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
say "attune serve on $url"
ATTUNE_ADMIN_KEY=$admin_key "$bin" serve --listen "127.0.0.1:$port" --data "$work/data" \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 240); do
  if curl -fsS "$url/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "attune serve exited:" >&2; cat "$work/server.log" >&2; exit 1
  fi
  sleep 0.5
done
curl -fsS "$url/readyz" >/dev/null || { echo "not ready after 120 s:" >&2; tail -n 50 "$work/server.log" >&2; exit 1; }
curl -fsS "$url/v1/openapi.json" -o "$work/openapi.json"

say "openapi-spec-validator"
if ! "$venv/bin/openapi-spec-validator" "$work/openapi.json"; then
  echo "clients: 0 passed, 2 failed (the document is not valid OpenAPI)"
  exit 1
fi

export ATTUNE_URL=$url ATTUNE_ADMIN_KEY=$admin_key

python_client() {
  local out=$work/python
  mkdir -p "$out"
  # A warning means an operation or model was left out of the client: that fails too.
  "$venv/bin/openapi-python-client" generate --path "$work/openapi.json" --meta none \
    --config "$root/clients/python/config.yaml" --output-path "$out/attune_client" >"$out/generate.log" 2>&1 \
    || { cat "$out/generate.log"; return 1; }
  if grep -qi "warning" "$out/generate.log"; then cat "$out/generate.log"; return 1; fi
  PYTHONPATH=$out "$venv/bin/python" "$root/clients/python/flow.py"
}

typescript_client() {
  local out=$work/typescript
  mkdir -p "$out"
  cp "$root/clients/typescript/flow.ts" "$root/clients/typescript/tsconfig.json" "$out/"
  ln -s "$npm_dir/node_modules" "$out/node_modules"
  (
    cd "$out"
    ./node_modules/.bin/openapi-typescript "$work/openapi.json" -o attune.d.ts --silent &&
      ./node_modules/.bin/tsc -p tsconfig.json &&
      ./node_modules/.bin/tsx flow.ts
  )
}

passed=0
failed=0
for client in python typescript; do
  say "$client client: generate it, run the flow"
  if "${client}_client"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "$client client: FAILED"
  fi
done
if (( failed > 0 )); then
  echo "server log (last 30 lines):"; tail -n 30 "$work/server.log"
fi
say "done"
echo "clients: $passed passed, $failed failed"
(( failed == 0 ))
