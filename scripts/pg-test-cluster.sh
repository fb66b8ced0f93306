#!/usr/bin/env bash
# Starts (or reuses) a throwaway PostgreSQL cluster for the store's tests and prints its URL on the
# last line of stdout: postgres://postgres@127.0.0.1:54329/attune
#
# - Installs PostgreSQL from the distribution's packages when no initdb is found.
# - Runs the cluster as the `postgres` user (initdb refuses root), trust auth, loopback only, no TLS.
# - Idempotent: a cluster already answering on the port is reused; `attune` is created if missing.
#
# With --replica (run it after the plain call), it also starts a hot standby of that cluster on the
# next port (54330) and prints the standby's URL instead: ATTUNE_TEST_POSTGRES_REPLICA.
#
# Environment: ATTUNE_PG_DIR (default /tmp/attune-pg), ATTUNE_PG_PORT (default 54329).
# Stop it with: su postgres -c "$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)/pg_ctl -D /tmp/attune-pg/data stop"
set -euo pipefail

dir=${ATTUNE_PG_DIR:-/tmp/attune-pg}
port=${ATTUNE_PG_PORT:-54329}
url="postgres://postgres@127.0.0.1:$port/attune"

log() { echo "pg-test-cluster: $*" >&2; }

find_bin() {
  # The newest installed major version.
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

pgbin=$(find_bin)
if [[ -z $pgbin || ! -x $pgbin/initdb ]]; then
  log "PostgreSQL not found: installing from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  pgbin=$(find_bin)
fi
[[ -x $pgbin/initdb ]] || { log "no initdb under /usr/lib/postgresql/*/bin after installing"; exit 1; }

# As root, run the server tools as `postgres`; as any other user, run them directly.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then su postgres -s /bin/bash -c "$1"; else bash -c "$1"; fi
}

ready() { "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; }

if ready; then
  log "reusing the cluster already listening on 127.0.0.1:$port"
else
  mkdir -p "$dir/data" "$dir/sock"
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres:postgres "$dir"; fi
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    log "initdb in $dir/data"
    as_pg "'$pgbin/initdb' -D '$dir/data' -U postgres --auth=trust -E UTF8 --no-locale" >&2
  fi
  # A killed server leaves postmaster.pid behind; PostgreSQL refuses to start while the pid in it
  # belongs to any live process, and after a reboot or a sandbox restart that pid may well be
  # reused by something else. Remove the file when its pid is not a running postgres.
  remove_stale_pid() { # data dir
    local pidfile=$1/postmaster.pid pid
    [[ -f $pidfile ]] || return 0
    pid=$(head -n 1 "$pidfile")
    if [[ ! -r /proc/$pid/comm ]] || ! grep -qE '^(postgres|postmaster)$' "/proc/$pid/comm"; then
      log "removing the stale $pidfile (pid $pid is not a running postgres)"
      rm -f "$pidfile"
    fi
  }
  remove_stale_pid "$dir/data"
  log "starting PostgreSQL on 127.0.0.1:$port (log: $dir/log)"
  as_pg "'$pgbin/pg_ctl' -D '$dir/data' -l '$dir/log' -o \"-p $port -k '$dir/sock' -c listen_addresses=127.0.0.1 -c max_connections=200\" -w -t 60 start" >&2
fi

for _ in $(seq 1 60); do ready && break; sleep 0.5; done
ready || { log "the server did not come up; see $dir/log"; exit 1; }

psql=("$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qtA)
if [[ $("${psql[@]}" -d postgres -c "select 1 from pg_database where datname = 'attune'") != 1 ]]; then
  "${psql[@]}" -d postgres -c 'create database attune' >&2
fi

if [[ ${1:-} != --replica ]]; then
  echo "$url"
  exit 0
fi

# --replica: a hot standby streaming from the cluster above, on the next port; prints its URL.
rdir=$dir-replica
rport=$((port + 1))
if "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$rport" -U postgres -d postgres; then
  log "reusing the replica already listening on 127.0.0.1:$rport"
else
  # A stopped standby may need WAL the primary has recycled since: always start from a fresh base
  # backup (seconds for a test cluster). The replication slot keeps the WAL it needs while it runs.
  rm -rf "$rdir"
  mkdir -p "$rdir"
  if [[ $(id -u) -eq 0 ]]; then chown -R postgres:postgres "$rdir"; fi
  "${psql[@]}" -d postgres -c "select pg_drop_replication_slot(slot_name) from pg_replication_slots
                               where slot_name = 'attune_test_replica' and not active" >/dev/null
  log "pg_basebackup into $rdir/data (a standby: -R writes standby.signal and primary_conninfo)"
  as_pg "'$pgbin/pg_basebackup' -h 127.0.0.1 -p $port -U postgres -D '$rdir/data' -R -X stream -C -S attune_test_replica" >&2
  log "starting the replica on 127.0.0.1:$rport (log: $rdir/log)"
  # A standby needs max_connections >= the primary's.
  as_pg "'$pgbin/pg_ctl' -D '$rdir/data' -l '$rdir/log' -o \"-p $rport -k '$dir/sock' -c listen_addresses=127.0.0.1 -c max_connections=200\" -w -t 60 start" >&2
fi
echo "postgres://postgres@127.0.0.1:$rport/attune"
