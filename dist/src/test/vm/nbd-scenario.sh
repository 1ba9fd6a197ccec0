#!/bin/bash
# The kernel's own NBD client against jloop, inside the VM (see README.md next to this file).
#
# usage: nbd-scenario.sh JLOOP_HOME WORK_DIR
#
# For every backend in NBD_BACKENDS (default: sync nio io_uring), one `jloop serve` of a fresh image
# (over TCP; nio over a Unix socket), attached twice as /dev/nbd0 by the kernel's nbd-client:
#   1. one connection: mkfs.ext4, mount, write the first set of files, unmount, read them back through
#      a fresh mount, detach;
#   2. nbd-client -C 4 (multi-conn): check that jloop holds 4 connections, read the first set again,
#      write the second set, read both back through a fresh mount, fsck -fn, detach.
# Then SIGTERM must stop jloop with exit code 0, and the image file itself must pass fsck and hold
# both sets (read with debugfs). The image and its manifest (sha256sum lines, paths from the file
# system's root) are left in WORK_DIR as BACKEND.img and BACKEND.img.sha256 for the host to check.
set -Eeuo pipefail

home=${1:?usage: nbd-scenario.sh JLOOP_HOME WORK_DIR}
work=${2:?usage: nbd-scenario.sh JLOOP_HOME WORK_DIR}
backends=${NBD_BACKENDS:-sync nio io_uring}
connections=4
device=/dev/nbd0
port=10809

started=$(date +%s)
say() { printf '[nbd %4ss] %s\n' $(($(date +%s) - started)) "$*"; }
fail() { say "FAIL: $*"; exit 1; }
trap 'say "FAIL: line $LINENO: $BASH_COMMAND exited with $?"' ERR

scratch=$(mktemp -d /tmp/nbd-scenario.XXXXXX)
mnt=$scratch/mnt
mkdir -p "$mnt"
server_pid=

cleanup()
{
    if mountpoint -q "$mnt"; then
        umount "$mnt" || true
    fi
    if [ "$(cat /sys/block/nbd0/size 2>/dev/null || echo 0)" != 0 ]; then
        nbd-client -d "$device" || true
    fi
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" || true
    fi
    return 0
}
trap cleanup EXIT

modprobe nbd nbds_max=2
[ -b "$device" ] || fail "$device missing after modprobe nbd"

# Reading jars over 9p from an emulated CPU is slow: jloop starts several times faster from tmpfs.
cp -a "$home" "$scratch/jloop"
jloop=$scratch/jloop/bin/jloop

# The files, made in tmpfs (not through NBD) so their sums are known before any byte crosses jloop:
# a large file (written with O_DIRECT, straight to the device), sizes that end mid-block, many small
# files, a nested directory.
make_set()
{
    local dir=$1
    mkdir -p "$dir/small" "$dir/deep/er/still"
    head -c $((6 << 20)) /dev/urandom >"$dir/big.bin"
    for size in 1 4095 4097 65537 1000003; do
        head -c "$size" /dev/urandom >"$dir/odd-$size.bin"
    done
    for i in $(seq 1 16); do
        head -c $((i * 97)) /dev/urandom | base64 >"$dir/small/file-$i.txt"
    done
    head -c 200000 /dev/urandom >"$dir/deep/er/still/nested.bin"
}
src=$scratch/src
make_set "$src/first"
make_set "$src/second"
(cd "$src" && find first -type f | sort | xargs sha256sum) >"$scratch/first.sha256"
(cd "$src" && find second -type f | sort | xargs sha256sum) >"$scratch/second.sha256"
cat "$scratch/first.sha256" "$scratch/second.sha256" >"$scratch/all.sha256"
say "source: $(wc -l <"$scratch/all.sha256") files, $(du -sk "$src" | cut -f1) KiB"

# Waits for jloop's start line on its stdout ("jloop: serving URI: ...") and prints it.
wait_for_start()
{
    local out=$1 deadline=$(($(date +%s) + 180))
    until grep -q '^jloop: serving ' "$out" 2>/dev/null; do
        kill -0 "$server_pid" 2>/dev/null || { cat "$out" "$out.err" >&2; fail "jloop exited before serving"; }
        [ "$(date +%s)" -lt "$deadline" ] || { cat "$out.err" >&2; fail "jloop did not start within 180 s"; }
        sleep 0.2
    done
    grep '^jloop: serving ' "$out"
}

# nbd-client returns once the device is configured; waits until the kernel shows the expected size.
attach()
{
    local deadline=$(($(date +%s) + 60))
    nbd-client "$@" -N "" -t 120
    until [ "$(cat /sys/block/nbd0/size)" -gt 0 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$device has no size 60 s after nbd-client"
        sleep 0.2
    done
    [ "$(($(cat /sys/block/nbd0/size) * 512))" -eq $((256 << 20)) ] || fail "$device has $(cat /sys/block/nbd0/size) sectors, expected 256 MiB"
}

detach()
{
    local deadline=$(($(date +%s) + 60))
    nbd-client -d "$device"
    while [ "$(cat /sys/block/nbd0/size)" -ne 0 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$device still attached 60 s after nbd-client -d"
        sleep 0.2
    done
}

write_set()
{
    local set=$1
    mkdir "$mnt/$set"
    dd if="$src/$set/big.bin" of="$mnt/$set/big.bin" bs=1M oflag=direct status=none
    (cd "$src/$set" && find . -mindepth 1 ! -name big.bin -print0 | cpio -0 -pdm --quiet "$mnt/$set")
    sync -f "$mnt"
}

# Unmounts, drops the page cache and mounts again read-only, so the check reads through the device.
verify_through_device()
{
    local manifest=$1 what=$2
    umount "$mnt"
    echo 3 >/proc/sys/vm/drop_caches
    blockdev --flushbufs "$device"
    mount -o ro "$device" "$mnt"
    (cd "$mnt" && sha256sum --quiet -c "$manifest") || fail "$what: files read back through $device differ"
}

run()
{
    local backend=$1
    local image=$scratch/$backend.img out=$scratch/$backend.out
    local listen target start_line
    say "== $backend"
    if [ "$backend" = nio ]; then
        listen=(--socket "$scratch/nbd.sock")
        target=(-u "$scratch/nbd.sock" "$device")
    else
        listen=(--listen "127.0.0.1:$port")
        target=(127.0.0.1 "$device")
    fi

    "$jloop" serve --backend "$backend" "${listen[@]}" --size 256M "$image" >"$out" 2>"$out.err" &
    server_pid=$!
    start_line=$(wait_for_start "$out")
    say "$start_line"
    case $start_line in
        *"backend $backend"*) ;;
        *) fail "jloop serves with another backend than $backend: $start_line" ;;
    esac

    # 1. One connection: a new file system and the first set of files.
    attach "${target[@]}"
    # 4 KiB blocks: the second attachment uses a 4 KiB device block size (-b 4096).
    mkfs.ext4 -q -F -b 4096 -L "$backend" "$device"
    mount "$device" "$mnt"
    write_set first
    verify_through_device "$scratch/first.sha256" "$backend, one connection"
    umount "$mnt"
    detach
    say "$backend: one connection ok"

    # 2. Multi-conn: the kernel refuses -C N > 1 unless the server advertises NBD_FLAG_CAN_MULTI_CONN.
    attach "${target[@]}" -b 4096 -C "$connections"
    local held
    if [ "$backend" = nio ]; then
        held=$(ss -xn | grep -c " $scratch/nbd.sock " || true)
    else
        held=$(ss -tnH state established "( sport = :$port )" | wc -l)
    fi
    [ "$held" -eq "$connections" ] || { ss -xtn; fail "jloop holds $held connections, expected $connections"; }
    mount "$device" "$mnt"
    (cd "$mnt" && sha256sum --quiet -c "$scratch/first.sha256") || fail "$backend, $connections connections: the first set differs"
    write_set second
    verify_through_device "$scratch/all.sha256" "$backend, $connections connections"
    umount "$mnt"
    fsck.ext4 -fn "$device" >"$scratch/$backend.fsck" 2>&1 || { cat "$scratch/$backend.fsck"; fail "$backend: fsck -fn $device"; }
    detach
    say "$backend: $connections connections ok"

    kill -TERM "$server_pid"
    local rc=0
    wait "$server_pid" || rc=$?
    server_pid=
    [ "$rc" -eq 0 ] || { cat "$out.err"; fail "$backend: jloop exited $rc after SIGTERM, expected 0"; }

    # The image file itself, after jloop is gone.
    fsck.ext4 -fn "$image" >"$scratch/$backend.fsck" 2>&1 || { cat "$scratch/$backend.fsck"; fail "$backend: fsck -fn of the image file"; }
    rm -rf "$scratch/check"
    mkdir "$scratch/check"
    debugfs -R "rdump /first /second $scratch/check" "$image" >/dev/null 2>&1
    (cd "$scratch/check" && sha256sum --quiet -c "$scratch/all.sha256") || fail "$backend: files in the image file differ"

    cp --sparse=always "$image" "$work/$backend.img"
    cp "$scratch/all.sha256" "$work/$backend.img.sha256"
    rm -f "$image"
    say "$backend: image ok"
}

for backend in $backends; do
    run "$backend"
done
say "all ok"
