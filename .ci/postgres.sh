#!/usr/bin/env bash
# Start a local PostgreSQL for the store tests (Debian, as root, no systemd needed).
#
# Idempotent: installs the server only if missing, creates/starts a cluster that
# listens on 127.0.0.1 only, and (re)creates role `kai` (password `kai`) owning
# database `kaitest`. Then point the tests at it:
#
#   export KAI_TEST_POSTGRES_URL=postgresql+psycopg://kai:kai@127.0.0.1:5432/kaitest
#
# Prints only progress lines; exits non-zero (with the server log tail) on failure.
set -euo pipefail

PORT="${KAI_PG_PORT:-5432}"
CLUSTER="${KAI_PG_CLUSTER:-main}"
log() { echo "postgres.sh: $*"; }
die() { echo "postgres.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts a server)"

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing postgresql (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
fi

VER="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
[ -n "$VER" ] || die "no PostgreSQL version under /usr/lib/postgresql"
log "using PostgreSQL $VER, cluster $CLUSTER, port $PORT"

# Without systemd-tmpfiles the socket directory may not exist in a fresh container.
install -d -o postgres -g postgres -m 2775 /var/run/postgresql

if ! pg_lsclusters -h | awk -v v="$VER" -v c="$CLUSTER" '$1==v && $2==c {found=1} END {exit !found}'; then
  log "creating cluster $VER/$CLUSTER"
  pg_createcluster "$VER" "$CLUSTER" --port "$PORT" >/dev/null || die "pg_createcluster failed"
fi

# Our settings live in conf.d so the packaged postgresql.conf stays untouched.
# ssl off: the snakeoil certificate is often missing in containers.
CONF_DIR="/etc/postgresql/$VER/$CLUSTER/conf.d"
CONF="$CONF_DIR/kaieval.conf"
WANT="$(printf "listen_addresses = '127.0.0.1'\nport = %s\nssl = off\n" "$PORT")"
changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$WANT" ]; then
  install -d -o postgres -g postgres "$CONF_DIR"
  printf '%s\n' "$WANT" > "$CONF"
  changed=1
fi

status="$(pg_lsclusters -h | awk -v v="$VER" -v c="$CLUSTER" '$1==v && $2==c {print $4}')"
LOGFILE="/var/log/postgresql/postgresql-$VER-$CLUSTER.log"
if [ "$status" = "online" ] && [ "$changed" -eq 0 ]; then
  log "cluster already running"
elif [ "$status" = "online" ]; then
  log "restarting cluster (settings changed)"
  pg_ctlcluster "$VER" "$CLUSTER" restart || { tail -n 20 "$LOGFILE" >&2 || true; die "restart failed"; }
else
  log "starting cluster"
  pg_ctlcluster "$VER" "$CLUSTER" start || { tail -n 20 "$LOGFILE" >&2 || true; die "start failed"; }
fi

for _ in $(seq 1 30); do
  if pg_isready -q -h 127.0.0.1 -p "$PORT"; then break; fi
  sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || { tail -n 20 "$LOGFILE" >&2 || true; die "server not ready on 127.0.0.1:$PORT"; }

psql_admin() {
  (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" "$@")
}

log "ensuring role kai and database kaitest"
psql_admin -d postgres -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kai') THEN
    CREATE ROLE kai LOGIN PASSWORD 'kai';
  ELSE
    ALTER ROLE kai LOGIN PASSWORD 'kai';
  END IF;
END \$\$;" >/dev/null || die "could not create role kai"
if [ "$(psql_admin -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = 'kaitest'")" != "1" ]; then
  psql_admin -d postgres -c "CREATE DATABASE kaitest OWNER kai" >/dev/null || die "could not create database kaitest"
fi

PGPASSWORD=kai psql -X -q -h 127.0.0.1 -p "$PORT" -U kai -d kaitest -tA -c "SELECT 1" >/dev/null \
  || die "cannot log in as kai@127.0.0.1:$PORT/kaitest"
log "ready: postgresql+psycopg://kai:kai@127.0.0.1:$PORT/kaitest"
