#!/usr/bin/env bash
# Stops the daemons scripts/dev/s3.sh started (radosgw, then the OSD, then the monitor), each by
# the pid in its pid file; `--purge` also removes the directory (SNAPFORK_CEPH_DIR, default
# /tmp/snapfork-ceph) with its data. Safe to run when nothing runs.
set -euo pipefail

dir=${SNAPFORK_CEPH_DIR:-/tmp/snapfork-ceph}
purge=false
case ${1:-} in
  --purge) purge=true ;;
  '') ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac

log() { echo "s3-stop.sh: $*" >&2; }
# A zombie (exited, not yet reaped by PID 1) counts as gone.
alive() { [[ -r /proc/$1/stat ]] && [[ $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# Sends SIGTERM, waits up to 30 s for the process to go, then SIGKILL. A pid that now belongs to
# another program (the daemon died and the pid was reused) is left alone.
stop() {
  local name=$1 binary=$2 pidfile=$dir/run/$1.pid pid
  [[ -s $pidfile ]] || return 0
  pid=$(<"$pidfile")
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$binary"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
      alive "$pid" || break
      sleep 0.5
    done
    if alive "$pid"; then
      log "$name did not stop in 30 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

if [[ -d $dir ]]; then
  stop client.rgw.a radosgw
  stop osd.0 ceph-osd
  stop mon.a ceph-mon
fi
if $purge; then
  log "removing $dir"
  rm -rf "$dir"
fi
