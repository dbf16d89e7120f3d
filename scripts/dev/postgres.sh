#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster for snapfork's metadata (issue 13) and prints, on
# stdout and nothing else, the variables a server needs:
#
#   eval "$(scripts/dev/postgres.sh)"   # sets SNAPFORK_DATABASE_URL=postgres://...
#
# Debian's postgresql-15 (installed with apt-get when missing; we run as root). The cluster
# lives in ${SNAPFORK_PG_DIR:-/tmp/snapfork-postgres}, a directory of its own:
#
#   data/          the cluster (initdb), owned by the postgres user, which the server runs as
#                  (postgres refuses to run as root)
#   password       the generated password of the `snapfork` role
#   postgres.log   the server's log
#   .s.PGSQL.*     its Unix socket (peer authentication, used by this script only)
#
# The server listens on 127.0.0.1 only, port ${SNAPFORK_PG_PORT:-54329} (not 5432, so it never
# meets a system cluster), and is started with pg_ctl directly: PID 1 here is not systemd. The
# `snapfork` role may create databases (the tests make one per run) and owns the database
# `snapfork`, which exists when this script returns. Idempotent: a second run finds the server
# running and prints the same line. Stop it with scripts/dev/postgres-stop.sh (--purge removes
# the directory).
set -euo pipefail

readonly VERSION=15
readonly BIN=/usr/lib/postgresql/$VERSION/bin
readonly ROLE=snapfork
readonly DATABASE=snapfork
dir=${SNAPFORK_PG_DIR:-/tmp/snapfork-postgres}
port=${SNAPFORK_PG_PORT:-54329}
data=$dir/data

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
as_postgres() { runuser -u postgres -- "$@"; }
# psql as the superuser over the Unix socket; -X skips any psqlrc, -v stops at the first error.
psql_admin() { as_postgres "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d postgres "$@"; }

[[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "SNAPFORK_PG_PORT must be a port number, got '$port'"
((EUID == 0)) || die "run as root (apt-get, and runuser to the postgres user)"

if [[ ! -x $BIN/pg_ctl ]]; then
  log "installing postgresql-$VERSION"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "postgresql-$VERSION" >&2
fi
# The package's own cluster (if it made one) is never started here: we run our own.

mkdir -p "$dir"
chown postgres: "$dir"
chmod 700 "$dir"

if [[ ! -f $data/PG_VERSION ]]; then
  log "creating the cluster in $data"
  rm -rf "$data"
  # URL-safe, so that it needs no escaping in the URL or in SQL.
  (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' > "$dir/password")
  chown postgres: "$dir/password"
  # Trust nobody by default: peer on the socket (this script), scram on TCP (everyone else).
  as_postgres "$BIN/initdb" -D "$data" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >&2
fi

if as_postgres "$BIN/pg_ctl" status -D "$data" >/dev/null 2>&1; then
  running=$(as_postgres "$BIN/psql" -X -At -h "$dir" -p "$port" -d postgres -c 'SHOW port' 2>/dev/null || true)
  [[ $running == "$port" ]] || die "the cluster in $data already runs, but not on port $port: stop it first"
  log "already running on 127.0.0.1:$port"
else
  log "starting on 127.0.0.1:$port (log: $dir/postgres.log)"
  as_postgres "$BIN/pg_ctl" start -D "$data" -l "$dir/postgres.log" -w -t 60 -s \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir'" >&2 ||
    die "the server did not start; see $dir/postgres.log"
fi

password=$(<"$dir/password")
# Idempotent statements, so that a rerun (or a run after a crash between them) converges. The
# password goes through stdin, never a command line that ps would show.
psql_admin -v role="$ROLE" <<SQL >&2
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec
ALTER ROLE :"role" PASSWORD '$password';
SQL
psql_admin -v role="$ROLE" -v database="$DATABASE" <<'SQL' >&2
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
SQL

printf 'export SNAPFORK_DATABASE_URL=postgres://%s:%s@127.0.0.1:%s/%s\n' "$ROLE" "$password" "$port" "$DATABASE"
