#!/usr/bin/env bash
# Builds the guest assets a snapfork VM boots (issue 12), from Debian packages only, into
# ${SNAPFORK_VM_ASSETS:-${SNAPFORK_DATA_DIR:-<checkout>/storage}/vm-assets}, where the server looks:
#
#   vmlinux      Debian's kernel as an uncompressed ELF: QEMU boots it directly (PVH), which
#                skips ~4 s of in-guest xz decompression under TCG
#   initrd.cpio  a busybox initramfs: Debian builds virtio and ext4 as modules, so it loads
#                them, mounts /dev/vda (ext4) as the root and switch_roots to its /init
#   rootfs.img   the base root disk, raw ext4 (sparse, 512 MiB): busybox, qemu-ga and resize2fs
#                with their shared libraries, and an /init whose contract is in storage/README.md
#   assets.json  {kernel_version, kernel_package, built_at, inputs, files: {name: sha256}};
#                written last, so its presence means the set is complete and consistent
#
# Runs as root (apt-get; root-owned files in the image). Idempotent: when the inputs (this
# script, the kernel package version, the host binaries copied into the guest) are those the
# assets.json records, nothing is rebuilt. Each file is built in a temp directory and renamed
# into place, so an interrupted build never leaves half an asset.
set -euo pipefail

readonly PACKAGES=(qemu-system-x86 qemu-utils busybox-static qemu-guest-agent cpio e2fsprogs kmod python3)
# The drivers of the root disk and of the agent's virtio-serial port; all are modules (=m) in
# Debian's kernel. Their own dependencies come from modules.dep.
readonly MODULES=(virtio_ring virtio virtio_mmio virtio_blk virtio_console crc16 mbcache jbd2 crc32c_generic ext4)
# Those that bind the VM's devices: the initramfs loads them only after its hold (below), so that
# a kernel held there has touched no device and resumes over any disks.
readonly DEVICE_MODULES=(virtio_mmio virtio_blk virtio_console)
readonly ROOTFS_SIZE=512M
readonly AGENT=/usr/sbin/qemu-ga
# Grows the root file system at boot when the VM's disk is larger than the image (fs_size_mib).
readonly RESIZE2FS=/usr/sbin/resize2fs
readonly AGENT_PORT=org.qemu.guest_agent.0
# What the initramfs says on the console when it holds (src/runtime/qemu/boot-templates.ts).
readonly HOLD_MARKER="snapfork-initramfs: held before the devices"
# Every file in the initramfs and the root image gets this mtime, and the image a UUID and hash
# seed derived from the inputs: the same inputs give the same bytes, so a rebuilt rootfs.img
# deduplicates against the one already stored.
readonly EPOCH=1704067200 # 2024-01-01T00:00:00Z
readonly PY=/usr/bin/python3 # Debian's, installed above; not whatever python3 PATH finds first

script=$(realpath "${BASH_SOURCE[0]}")
project=$(cd "$(dirname "$script")/../.." && pwd)
assets=${SNAPFORK_VM_ASSETS:-${SNAPFORK_DATA_DIR:-$project/storage}/vm-assets}
cache=$assets/.cache # the downloaded kernel package, kept for the next rebuild

log() { printf 'build-guest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_updated=false
apt_update() {
  $apt_updated && return
  log "apt-get update"
  apt-get update -qq
  apt_updated=true
}

ensure_packages() {
  local pkg installed missing=()
  # One dpkg-query for all: it names each installed package with its state.
  installed=$'\n'$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)$'\n'
  for pkg in "${PACKAGES[@]}"; do
    [[ $installed == *$'\n'"$pkg installed"$'\n'* ]] || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  apt_update
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Sets kernel_pkg (linux-image-6.x.y-N-amd64, what linux-image-amd64 depends on), its Debian
# version and kernel_version (its `uname -r`). Reads the local apt lists; updates them only
# when they do not know linux-image-amd64 yet (a fresh machine).
kernel_dependency() {
  apt-cache show --no-all-versions linux-image-amd64 2>/dev/null | awk '/^Depends:/ && !n++'
}
resolve_kernel() {
  local depends
  depends=$(kernel_dependency) || { apt_update && depends=$(kernel_dependency); }
  # "Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)": the metapackage pins the version.
  [[ $depends =~ (linux-image-6[^ ,]*)( \(= ([^\)]+)\))? ]] ||
    die "linux-image-amd64 depends on no linux-image-6.* package"
  kernel_pkg=${BASH_REMATCH[1]}
  kernel_pkg_version=${BASH_REMATCH[3]}
  [[ -n $kernel_pkg_version ]] ||
    kernel_pkg_version=$(apt-cache show --no-all-versions "$kernel_pkg" | awk '/^Version:/ && !n++ {print $2}')
  kernel_version=${kernel_pkg#linux-image-}
}

# Prints the host files copied into the guest: qemu-ga and resize2fs, every shared library
# ldd lists for them, and the dynamic loader (the line of ldd's output without "=>").
guest_binaries() {
  echo "$AGENT"
  echo "$RESIZE2FS"
  # One ldd per binary: given several, it prints a "path:" heading before each.
  { ldd "$AGENT"; ldd "$RESIZE2FS"; } | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u
}

busybox_path() {
  dpkg -L busybox-static | awk '/\/bin\/busybox$/ && !n++'
}

# The stamp of everything the assets are made of; assets.json records it.
inputs_stamp() {
  {
    sha256sum "$script"
    echo "$kernel_pkg $kernel_pkg_version"
    sha256sum "$busybox" $(guest_binaries)
  } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  local name
  for name in vmlinux initrd.cpio rootfs.img assets.json; do
    [[ -f $assets/$name ]] || return 1
  done
  [[ $($PY -c 'import json, sys; print(json.load(open(sys.argv[1])).get("inputs", ""))' \
    "$assets/assets.json" 2>/dev/null) == "$stamp" ]]
}

# Prints the path of the kernel package in the cache, downloading it when absent; fails when
# the download does.
kernel_deb() {
  local deb=$cache/${kernel_pkg}_${kernel_pkg_version//:/%3a}_amd64.deb
  if [[ ! -f $deb ]]; then
    mkdir -p "$cache"
    log "downloading $kernel_pkg $kernel_pkg_version"
    # Root downloads unsandboxed: the _apt user cannot write into the cache directory.
    (cd "$cache" && apt-get download -qq -o APT::Sandbox::User=root "$kernel_pkg=$kernel_pkg_version") >&2 ||
      return 1
    find "$cache" -name 'linux-image-*.deb' ! -path "$deb" -delete # keep only the one in use
  fi
  echo "$deb"
}

# vmlinuz is a boot stub followed by the xz-compressed kernel ELF: cut it out and inflate it.
extract_vmlinux() {
  $PY - "$1" "$2" <<'EOF'
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
if start < 0:
    sys.exit(f"{sys.argv[1]}: no xz stream (the kernel is not xz-compressed)")
elf = lzma.LZMADecompressor().decompress(data[start:])  # stops at the stream's end
if elf[:4] != b"\x7fELF":
    sys.exit(f"{sys.argv[1]}: the xz stream is not an ELF kernel")
open(sys.argv[2], "wb").write(elf)
EOF
}

# Fills MODULE_ORDER with MODULES and everything they depend on, each after its dependencies,
# as modprobe would load them; MODULE_FILE[name] is its path under the module directory.
# A module built into the kernel (modules.builtin) needs no loading and is left out.
declare -A MODULE_FILE MODULE_DEPS MODULE_SEEN
MODULE_ORDER=()
# Sets REPLY to the name of a module path (kernel/fs/ext4/ext4.ko -> ext4); no subshell, as
# this runs for each of the ~4000 lines of modules.dep and a fork costs milliseconds here.
module_name() {
  REPLY=${1##*/}
  REPLY=${REPLY%%.ko*}
  REPLY=${REPLY//-/_}
}
resolve_modules() {
  local moddir=$1 line name
  while IFS= read -r line; do
    module_name "${line%%:*}"
    MODULE_FILE[$REPLY]=${line%%:*}
    MODULE_DEPS[$REPLY]=${line#*:}
  done <"$moddir/modules.dep"
  while IFS= read -r line; do
    module_name "$line"
    MODULE_SEEN[$REPLY]=builtin
  done <"$moddir/modules.builtin"
  for name in "${MODULES[@]}"; do visit_module "$name"; done
}
visit_module() {
  local name=$1 dep
  [[ -z ${MODULE_SEEN[$name]:-} ]] || return 0
  MODULE_SEEN[$name]=visiting
  [[ -n ${MODULE_FILE[$name]:-} ]] || die "module $name is neither in modules.dep nor built in"
  for dep in ${MODULE_DEPS[$name]}; do
    module_name "$dep"
    visit_module "$REPLY"
  done
  MODULE_ORDER+=("$name")
}

# Copies a module as a plain .ko: busybox's insmod may not read compressed modules.
copy_module() {
  local src=$1 dst=$2
  case $src in
    *.ko) cp "$src" "$dst" ;;
    *.ko.xz) $PY -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' "$src" "$dst" ;;
    *) die "$src: unsupported module compression" ;;
  esac
}

# busybox at /bin/busybox, with a link for each applet where a Debian system keeps it
# (/usr/bin/env for `#!/usr/bin/env` scripts, /sbin/ip, ...). Python makes the ~270 links:
# one ln process each would take seconds.
install_busybox() {
  local root=$1
  install -D -m 0755 "$busybox" "$root/bin/busybox"
  "$busybox" --list-full | $PY -c '
import os, sys
root = sys.argv[1]
for applet in sys.stdin.read().split():
    link = os.path.join(root, applet)
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
' "$root"
}

# Sets every mtime in a tree to EPOCH (links themselves too), for reproducible images.
pin_mtimes() {
  find "$1" -exec touch -h -d "@$EPOCH" {} +
}

build_initrd() {
  local kernel=$1 out=$2 root=$work/initrd name
  local moddir=$kernel/lib/modules/$kernel_version
  # The package ships no modules.dep (its postinst runs depmod): make it here.
  depmod -b "$kernel" "$kernel_version"
  resolve_modules "$moddir"
  install_busybox "$root"
  mkdir -p "$root"/{dev,proc,sys,newroot,lib/modules}
  for name in "${MODULE_ORDER[@]}"; do
    copy_module "$moddir/${MODULE_FILE[$name]}" "$root/lib/modules/$name.ko"
  done
  local dev device early=() late=()
  for name in "${MODULE_ORDER[@]}"; do
    device=false
    for dev in "${DEVICE_MODULES[@]}"; do [[ $name != "$dev" ]] || device=true; done
    if $device; then late+=("$name"); else early+=("$name"); fi
  done
  log "initramfs modules: ${early[*]}; after the hold: ${late[*]}"
  # A failed step ends this init: the kernel panics, panic=-1 reboots at once and QEMU's
  # -no-reboot turns that into the process exiting, which the runtime reports as a failed boot.
  cat >"$root/init" <<EOF
#!/bin/sh
# snapfork initramfs (built by scripts/vm/build-guest.sh): loads the root disk's drivers,
# mounts /dev/vda (ext4) as the root and hands over to its /init.
#
# With snapfork.hold on the kernel command line it first holds, before any driver has touched
# a device: it says "$HOLD_MARKER" on the console and waits for a line
# there. The host snapshots the kernel at that point once, and resumes later VMs from the
# snapshot over their own disks instead of booting the kernel again; the line lets each go on.
export PATH=/bin:/sbin
fail() { echo "initramfs: \$*" >/dev/console; exit 1; }
mount -t devtmpfs devtmpfs /dev || fail "cannot mount /dev"
mount -t proc proc /proc || fail "cannot mount /proc"
for m in ${early[*]}; do
  insmod /lib/modules/\$m.ko || fail "insmod \$m failed"
done
case " \$(cat /proc/cmdline) " in
  *" snapfork.hold "*)
    echo "$HOLD_MARKER"
    read -r line ;;
esac
umount /proc
for m in ${late[*]}; do
  insmod /lib/modules/\$m.ko || fail "insmod \$m failed"
done
tries=0
while [ ! -b /dev/vda ]; do
  tries=\$((tries + 1))
  [ \$tries -le 2500 ] || fail "no /dev/vda after 5 s"
  usleep 2000
done
mount -t ext4 /dev/vda /newroot || fail "cannot mount /dev/vda as ext4"
mount --move /dev /newroot/dev || fail "cannot move /dev"
exec switch_root /newroot /init
EOF
  chmod 0755 "$root/init"
  pin_mtimes "$root"
  (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible --owner=0:0) >"$out"
}

build_rootfs() {
  local out=$1 root=$work/rootfs file uuid
  install_busybox "$root"
  # qemu-ga, resize2fs and their libraries at their host paths, so the loader path compiled
  # into them and the library paths ldd resolved hold in the guest too.
  for file in $(guest_binaries); do
    install -D -m 0755 "$file" "$root$file" # install follows links: the real file lands there
  done
  mkdir -p "$root"/{dev,proc,sys,run,tmp,root,etc,var/lib,var/log}
  chmod 1777 "$root/tmp"
  ln -s ../run "$root/var/run" # qemu-ga keeps its pid file in /var/run
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"
  ln -s ../proc/mounts "$root/etc/mtab" # resize2fs finds the root mounted there: it grows it online
  : >"$root/etc/machine-id" # written by the host through the agent at each boot
  cat >"$root/init" <<EOF
#!/bin/sh
# PID 1 of a snapfork guest (busybox sh; built by scripts/vm/build-guest.sh). What it reads
# from the host (storage/README.md, "VM guest assets"):
#   virtio-serial port $AGENT_PORT: served by qemu-ga, restarted whenever it exits
#   /dev/vda larger than its file system: the file system is grown to fill it (resize2fs)
#   /dev/vdb, when present: a dataset's files (ext4), mounted read-only at /data
# It never exits (the kernel panics when PID 1 does), and as a shell waiting on its
# foreground child it also reaps the orphans the agent's commands leave behind.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev # the initramfs moved its /dev here
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
ip link set lo up

# The disk's size against the file system's (superblock at 1024: s_blocks_count_lo at +4,
# s_log_block_size at +24, little-endian u32): a VM asked for a larger disk than its image.
disk_bytes=\$((\$(cat /sys/block/vda/size) * 512))
superblock_u32() { dd if=/dev/vda bs=4 skip=\$1 count=1 2>/dev/null | od -An -tu4; }
fs_bytes=\$((\$(superblock_u32 257) * (1024 << \$(superblock_u32 262))))
if [ \$disk_bytes -gt \$fs_bytes ]; then
  resize2fs /dev/vda >/dev/null 2>&1 || echo "init: resize2fs /dev/vda failed"
fi
if [ -b /dev/vdb ]; then
  mkdir -p /data
  mount -t ext4 -o ro /dev/vdb /data || echo "init: cannot mount /dev/vdb at /data"
fi

# The agent's port: the virtio-serial port QEMU named $AGENT_PORT.
agent_port() {
  for name in /sys/class/virtio-ports/*/name; do
    [ "\$(cat "\$name" 2>/dev/null)" = $AGENT_PORT ] || continue
    port=\${name%/name}
    echo /dev/\${port##*/}
    return 0
  done
  return 1
}
waited=0
while :; do
  if port=\$(agent_port) && [ -c "\$port" ]; then
    qemu-ga -m virtio-serial -p "\$port"
    echo "init: qemu-ga exited with \$?, restarting"
    sleep 1
  elif [ \$waited -lt 500 ]; then
    waited=\$((waited + 1)) # the port appears within milliseconds when the VM has one
    usleep 10000
  else
    sleep 1 # no agent port (yet): keep looking, cheaply
  fi
done
EOF
  chmod 0755 "$root/init"
  pin_mtimes "$root"
  uuid=$(echo "$stamp" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
  # -d copies the tree with its owners (root); the file is sparse: only what is written
  # takes space. E2FSPROGS_FAKE_TIME pins the superblock's times.
  E2FSPROGS_FAKE_TIME=$EPOCH mke2fs -q -t ext4 -L snapfork-root -U "$uuid" -E "hash_seed=$uuid" \
    -d "$root" "$out" "$ROOTFS_SIZE" >/dev/null # -q still names the file it creates
  # -d also copies each file's ctime, which no tool can set on the source tree: pin it in the
  # image, all inodes in one debugfs run.
  (cd "$root" && find . | sed 's|^\.||; s|^$|/|' | awk -v t="$EPOCH" '{print "sif \"" $0 "\" ctime @" t}') >"$work/ctimes"
  E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$work/ctimes" "$out" >/dev/null 2>&1
  e2fsck -fn "$out" >/dev/null 2>&1 || die "rootfs.img fails e2fsck"
}

write_manifest() {
  local out=$1
  $PY - "$out" "$kernel_version" "$kernel_pkg $kernel_pkg_version" "$stamp" <<'EOF'
import datetime, hashlib, json, os, sys
out, kernel_version, kernel_package, stamp = sys.argv[1:]
def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
manifest = {
    "kernel_version": kernel_version,
    "kernel_package": kernel_package,
    "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "inputs": stamp,
    "files": {name: sha256(os.path.join(out, name)) for name in ("vmlinux", "initrd.cpio", "rootfs.img")},
}
with open(os.path.join(out, "assets.json"), "w") as f:
    json.dump(manifest, f, indent=2)
    f.write("\n")
EOF
}

# Moves the built files into place: assets.json is removed first and renamed in last, so an
# interruption anywhere leaves no assets.json (a rerun rebuilds) rather than a mixed set.
publish() {
  local out=$1 name
  sync "$out"/* # the data is on disk before a rename makes it visible
  rm -f "$assets/assets.json"
  for name in vmlinux initrd.cpio rootfs.img assets.json; do
    mv -f "$out/$name" "$assets/$name"
  done
  sync "$assets"
}

main() {
  [[ $EUID -eq 0 ]] || die "run as root: it installs Debian packages and builds a root-owned image"
  mkdir -p "$assets"
  exec 9>"$assets/.lock"
  flock 9 # one build at a time per asset directory

  ensure_packages
  resolve_kernel
  busybox=$(busybox_path)
  [[ -x $busybox ]] || die "busybox-static installed no /bin/busybox"
  ! { ldd "$AGENT"; ldd "$RESIZE2FS"; } | grep 'not found' || die "$AGENT or $RESIZE2FS needs a library this host lacks"
  stamp=$(inputs_stamp)
  if up_to_date; then
    log "up to date in $assets ($kernel_version)"
    return 0
  fi

  rm -rf "$assets"/.build.* # left by a build that was killed; ours holds the lock
  work=$(mktemp -d "$assets/.build.XXXXXX") # same file system as the assets: renames are atomic
  trap 'rm -rf "$work"' EXIT
  local deb
  if ! deb=$(kernel_deb); then
    # Old apt lists may name a version the mirror has dropped: update, resolve, try once more.
    $apt_updated && die "cannot download $kernel_pkg $kernel_pkg_version"
    apt_update
    resolve_kernel
    stamp=$(inputs_stamp)
    deb=$(kernel_deb) || die "cannot download $kernel_pkg $kernel_pkg_version"
  fi
  log "building for kernel $kernel_version into $assets"
  dpkg-deb -x "$deb" "$work/kernel"
  mkdir -p "$work/out"
  extract_vmlinux "$work/kernel/boot/vmlinuz-$kernel_version" "$work/out/vmlinux"
  build_initrd "$work/kernel" "$work/out/initrd.cpio"
  build_rootfs "$work/out/rootfs.img"
  write_manifest "$work/out"
  publish "$work/out"
  log "done: $(cd "$assets" && du -h --apparent-size vmlinux initrd.cpio rootfs.img | tr '\t\n' ' ')"
}

main "$@"
