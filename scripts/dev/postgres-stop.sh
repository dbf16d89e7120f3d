#!/usr/bin/env bash
# Stops the cluster scripts/dev/postgres.sh started (same SNAPFORK_PG_DIR); with --purge, also
# removes its directory, data and password included. Idempotent: nothing running is not an error.
set -euo pipefail

readonly BIN=/usr/lib/postgresql/15/bin
dir=${SNAPFORK_PG_DIR:-/tmp/snapfork-postgres}
data=$dir/data
purge=false
case ${1:-} in
  '') ;;
  --purge) purge=true ;;
  *) printf 'usage: %s [--purge]\n' "$0" >&2; exit 2 ;;
esac

log() { printf 'postgres-stop.sh: %s\n' "$*" >&2; }

if [[ -f $data/PG_VERSION ]] && runuser -u postgres -- "$BIN/pg_ctl" status -D "$data" >/dev/null 2>&1; then
  log "stopping the cluster in $data"
  # fast: roll back open transactions and disconnect clients now, rather than wait for them.
  runuser -u postgres -- "$BIN/pg_ctl" stop -D "$data" -m fast -w -t 60 -s >&2
else
  log "no cluster runs in $data"
fi
if $purge; then
  log "removing $dir"
  rm -rf "$dir"
fi
