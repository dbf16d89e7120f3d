#!/usr/bin/env bash
# A throwaway S3 object store on loopback for tests and for trying snapfork's S3 chunk store:
# Ceph's RADOS Gateway from Debian (one monitor, one OSD with bluestore on a sparse file,
# radosgw), every daemon started directly (PID 1 here is not systemd), all in one directory.
#
#   eval "$(scripts/dev/s3.sh)"      # installs Ceph when missing, bootstraps or restarts, prints
#                                    # only `export SNAPFORK_S3_...=...` lines on stdout
#   scripts/dev/s3-stop.sh [--purge] # stops the daemons; --purge also removes the directory
#
# Idempotent: with everything up it starts nothing and prints the same lines; with the directory
# present but the daemons dead (after a reboot) it restarts them. Progress goes to stderr, daemon
# logs to $SNAPFORK_CEPH_DIR/log/.
#
# Settings (environment):
#   SNAPFORK_CEPH_DIR       where everything lives            (default /tmp/snapfork-ceph)
#   SNAPFORK_CEPH_RGW_PORT  the S3 endpoint's port            (default 17480; RGW's own is 7480)
#   SNAPFORK_CEPH_MON_PORT  the monitor's msgr2 port          (default 13300; Ceph's own is 3300)
#   SNAPFORK_CEPH_OSD_SIZE  the OSD's sparse block file, GiB  (default 64)
#   SNAPFORK_CEPH_BUCKET    the bucket created for snapfork   (default snapfork)
set -euo pipefail

dir=${SNAPFORK_CEPH_DIR:-/tmp/snapfork-ceph}
rgw_port=${SNAPFORK_CEPH_RGW_PORT:-17480}
mon_port=${SNAPFORK_CEPH_MON_PORT:-13300}
osd_size_gib=${SNAPFORK_CEPH_OSD_SIZE:-64}
bucket=${SNAPFORK_CEPH_BUCKET:-snapfork}
# RGW's default zonegroup is named "default"; SigV4 signs with this region.
region=default
here=$(cd "$(dirname "$0")" && pwd)
conf=$dir/ceph.conf

log() { echo "s3.sh: $*" >&2; }
ceph_() { ceph -c "$conf" --connect-timeout 20 "$@"; }

install_ceph() {
  local missing=()
  for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  log "installing Ceph from Debian (missing: ${missing[*]})"
  local start=$SECONDS
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    ceph-mon ceph-osd radosgw ceph-common >&2
  log "installed in $((SECONDS - start)) s"
}

write_conf() {
  local fsid=$1
  mkdir -p "$dir"/{run,log,mon,osd,rgw}
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$mon_port]
ms_bind_msgr1 = false
ms_bind_ipv6 = false
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
# A single-user store on loopback: no cephx keys to hand around.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
keyring = $dir/no-keyring
# radosgw asks for an encrypted ("secure") link to the monitor by default, which needs cephx
# session keys; without cephx it would retry for client_mount_timeout and never start.
ms_mon_client_mode = crc
# A daemon that cannot reach the monitor gives up after this, not the default 300 s.
client_mount_timeout = 30
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
log_file = $dir/log/\$name.log
mon_data = $dir/mon/\$name
osd_data = $dir/osd/\$name
# One OSD holds every object once: pools of size 1, and no health warning about it that could
# hold I/O back. Autoscaling needs the manager, which this store does not run.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
# The monitor stops itself below mon_data_avail_crit (5 %) of free disk; a throwaway store on a
# busy shared disk should not.
mon_data_avail_warn = 2
mon_data_avail_crit = 1
# Two shared cores and other work on the machine: keep the daemons small. 896 MiB is the floor
# of osd_memory_target; with autotuning off the OSD's cache is a fixed 128 MiB, well under it.
osd_memory_target = 939524096
bluestore_cache_autotune = false
bluestore_cache_size = 134217728
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[osd]
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = $((osd_size_gib * 1024 * 1024 * 1024))

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port
rgw_data = $dir/rgw
rgw_thread_pool_size = 64
rgw_enable_usage_log = false
EOF
}

# True when the pid file names a live process of that daemon (a reused pid is not ours).
running() {
  local pidfile=$dir/run/$1.pid pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# Starts a daemon unless it runs; Ceph daemons fork and write their pid file themselves. Their
# stdio goes to the log so that `$(s3.sh)` does not wait on a pipe they would hold open.
start_daemon() {
  local name=$1 binary=$2
  shift 2
  if running "$name" "$binary"; then
    log "$name already running (pid $(<"$dir/run/$name.pid"))"
    return
  fi
  log "starting $name"
  "$binary" -c "$conf" "$@" </dev/null >>"$dir/log/$name.stdout" 2>&1
}

# Waits (bounded) for a condition, checking every half second.
wait_for() {
  local what=$1 tries=$2
  shift 2
  for ((i = 0; i < tries; i++)); do
    "$@" >/dev/null 2>&1 && return
    sleep 0.5
  done
  log "timed out waiting for $what; logs in $dir/log/"
  exit 1
}

osd_up() { ceph_ osd dump --format json | grep -q '"up":1'; }
rgw_listens() { (exec 3<>"/dev/tcp/127.0.0.1/$rgw_port"); }

bootstrap() {
  log "bootstrapping a new cluster in $dir"
  local start=$SECONDS fsid osd_uuid
  fsid=$(</proc/sys/kernel/random/uuid)
  write_conf "$fsid"
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >&2
  ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" >&2
  start_daemon mon.a ceph-mon -i a
  wait_for "the monitor" 60 ceph_ mon stat

  osd_uuid=$(</proc/sys/kernel/random/uuid)
  ceph_ osd new "$osd_uuid" >&2 # allocates id 0
  # RGW creates its pools on first use, and its first requests then wait on that; creating them
  # now keeps the first S3 call fast. Each creation waits for a monitor commit, so they run (in
  # one `ceph` shell) while the OSD is made.
  local pool commands=()
  for pool in .rgw.root default.rgw.control default.rgw.meta default.rgw.log \
    default.rgw.buckets.index default.rgw.buckets.non-ec default.rgw.buckets.data; do
    commands+=("osd pool create $pool 8 8" "osd pool application enable $pool rgw")
  done
  printf '%s\n' "${commands[@]}" | ceph_ >"$dir/log/pools.log" 2>&1 &
  local pools=$!
  mkdir -p "$dir/osd/osd.0"
  # The monitor's central config is not reachable before the OSD exists.
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" --no-mon-config >>"$dir/log/osd.0.mkfs" 2>&1
  start_daemon osd.0 ceph-osd -i 0
  wait_for "the OSD" 120 osd_up
  wait "$pools" || true
  if [[ $(grep -c "^pool '.*' created" "$dir/log/pools.log") -ne 7 ]]; then
    log "creating the RGW pools failed; see $dir/log/pools.log"
    exit 1
  fi
  start_daemon client.rgw.a radosgw -n client.rgw.a
  wait_for "radosgw" 120 rgw_listens

  local access secret
  access=$(head -c 10 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
  secret=$(head -c 30 /dev/urandom | base64 | tr -d '/+=\n')
  radosgw-admin -c "$conf" user create --uid snapfork --display-name snapfork \
    --access-key "$access" --secret-key "$secret" >/dev/null
  printf '%s\n' "$access" "$secret" >"$dir/s3-keys"
  log "bootstrapped in $((SECONDS - start)) s"
}

restart() {
  start_daemon mon.a ceph-mon -i a
  wait_for "the monitor" 60 ceph_ mon stat
  start_daemon osd.0 ceph-osd -i 0
  wait_for "the OSD" 120 osd_up
  start_daemon client.rgw.a radosgw -n client.rgw.a
  wait_for "radosgw" 120 rgw_listens
}

install_ceph
if [[ -s $dir/s3-keys ]]; then
  restart
else
  # A directory without keys is a bootstrap that did not finish: start over.
  if [[ -e $dir ]]; then
    "$here/s3-stop.sh" --purge
  fi
  bootstrap
fi

{ read -r access; read -r secret; } <"$dir/s3-keys"
endpoint=http://127.0.0.1:$rgw_port
SNAPFORK_S3_ENDPOINT=$endpoint SNAPFORK_S3_REGION=$region SNAPFORK_S3_BUCKET=$bucket \
  SNAPFORK_S3_ACCESS_KEY_ID=$access SNAPFORK_S3_SECRET_ACCESS_KEY=$secret \
  node "$here/s3-create-bucket.js" >&2

echo "export SNAPFORK_S3_ENDPOINT=$endpoint"
echo "export SNAPFORK_S3_BUCKET=$bucket"
echo "export SNAPFORK_S3_REGION=$region"
echo "export SNAPFORK_S3_ACCESS_KEY_ID=$access"
echo "export SNAPFORK_S3_SECRET_ACCESS_KEY=$secret"
echo "export SNAPFORK_S3_FORCE_PATH_STYLE=true"
