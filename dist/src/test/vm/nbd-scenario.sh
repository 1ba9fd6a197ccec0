#!/bin/bash
# The kernel's own NBD client against jloop, inside the VM (see README.md next to this file).
#
# usage: nbd-scenario.sh JLOOP_HOME WORK_DIR
#
# For every backend in NBD_BACKENDS (default: sync nio io_uring) and every attachment mode in
# NBD_MODES (default: plain, over TCP with one connection; multi, over a Unix socket with
# nbd-client -C 4): serve a fresh image with `jloop serve`, attach it as /dev/nbd0, make ext4 on it,
# write files whose SHA-256 sums are known in advance, read them back through a fresh mount, unmount,
# fsck -fn, detach, stop jloop with SIGTERM (exit code 0 required), then check the image file itself
# with fsck and debugfs. Each image and its manifest (sha256sum lines, paths from the file system's
# root) are left in WORK_DIR as NAME.img and NAME.img.sha256 for the host to check again.
set -Eeuo pipefail

home=${1:?usage: nbd-scenario.sh JLOOP_HOME WORK_DIR}
work=${2:?usage: nbd-scenario.sh JLOOP_HOME WORK_DIR}
backends=${NBD_BACKENDS:-sync nio io_uring}
modes=${NBD_MODES:-plain multi}
connections=4
# C2 compiles cost more than they save in a short run under an emulated CPU: jloop starts in half the time.
export JLOOP_JAVA_OPTS=${JLOOP_JAVA_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}
device=/dev/nbd0
jloop=$home/bin/jloop

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
    mountpoint -q "$mnt" && umount "$mnt"
    if [ -n "$(cat /sys/block/nbd0/pid 2>/dev/null)" ]; then
        nbd-client -d "$device" || true
    fi
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" || true
    fi
    return 0
}
trap cleanup EXIT

# The nbd module with one device is enough; a multi-connection device needs nothing more from it.
modprobe nbd nbds_max=2
[ -b "$device" ] || fail "$device missing after modprobe nbd"

# The files the file system will hold, made once in tmpfs (not through NBD) so their sums are known
# before any byte crosses jloop: a large file written with O_DIRECT (straight to the device), odd
# sizes that end mid-block, many small files, and a nested directory.
src=$scratch/src
mkdir -p "$src/data/small" "$src/data/deep/er/still"
head -c $((8 << 20)) /dev/urandom >"$src/data/big.bin"
for size in 1 4095 4097 65537 1000003 3145728; do
    head -c "$size" /dev/urandom >"$src/data/odd-$size.bin"
done
for i in $(seq 1 48); do
    head -c $((i * 97)) /dev/urandom | base64 >"$src/data/small/file-$i.txt"
done
head -c 200000 /dev/urandom >"$src/data/deep/er/still/nested.bin"
(cd "$src" && find data -type f | sort | xargs sha256sum) >"$scratch/manifest"
files=$(wc -l <"$scratch/manifest")
say "source: $files files, $(du -sk "$src" | cut -f1) KiB"

# Waits for jloop's start line on its stdout ("jloop: serving URI: ...") and prints it.
wait_for_start()
{
    local out=$1 deadline=$(($(date +%s) + 120))
    until grep -q '^jloop: serving ' "$out" 2>/dev/null; do
        kill -0 "$server_pid" 2>/dev/null || { cat "$out" "$out.err" >&2; fail "jloop exited before serving"; }
        [ "$(date +%s)" -lt "$deadline" ] || { cat "$out.err" >&2; fail "jloop did not start within 120 s"; }
        sleep 0.2
    done
    grep '^jloop: serving ' "$out"
}

# Waits until the kernel reports a size for the device (nbd-client returns once it is configured).
wait_for_device()
{
    local deadline=$(($(date +%s) + 60))
    until [ "$(cat /sys/block/nbd0/size)" -gt 0 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$device has no size 60 s after nbd-client"
        sleep 0.2
    done
}

run()
{
    local backend=$1 mode=$2
    local name=$backend-$mode
    local image=$scratch/$name.img out=$scratch/$name.out
    local listen client_args start_line
    say "== $name"

    case $mode in
        plain)
            listen=(--listen 127.0.0.1:10809)
            client_args=(127.0.0.1 "$device" -N "" -t 120)
            ;;
        multi)
            listen=(--socket "$scratch/nbd.sock")
            client_args=(-u "$scratch/nbd.sock" "$device" -N "" -t 120 -b 4096 -C "$connections")
            ;;
        *) fail "unknown mode $mode" ;;
    esac

    "$jloop" serve --backend "$backend" "${listen[@]}" --size 256M "$image" >"$out" 2>"$out.err" &
    server_pid=$!
    start_line=$(wait_for_start "$out")
    say "$start_line"
    case $start_line in
        *"backend $backend"*) ;;
        *) fail "jloop serves with another backend than $backend: $start_line" ;;
    esac

    nbd-client "${client_args[@]}"
    wait_for_device
    [ "$(($(cat /sys/block/nbd0/size) * 512))" -eq $((256 << 20)) ] || fail "$device size $(cat /sys/block/nbd0/size) sectors, expected 256 MiB"
    if [ "$mode" = multi ]; then
        # The kernel refuses -C N > 1 unless the server advertises NBD_FLAG_CAN_MULTI_CONN. Once it
        # accepts, jloop holds N connections and the device has one hardware queue per connection
        # (at most one per CPU).
        local accepted queues expected_queues
        accepted=$(ss -xn | grep -c " $scratch/nbd.sock " || true)
        [ "$accepted" -eq "$connections" ] || { ss -xn; fail "jloop holds $accepted connections, expected $connections"; }
        queues=$(ls /sys/block/nbd0/mq | wc -l)
        expected_queues=$((connections < $(nproc) ? connections : $(nproc)))
        [ "$queues" -eq "$expected_queues" ] || fail "$device has $queues queues, expected $expected_queues"
    fi

    mkfs.ext4 -q -F -L "$name" "$device"
    mount "$device" "$mnt"
    mkdir "$mnt/data"
    dd if="$src/data/big.bin" of="$mnt/data/big.bin" bs=1M oflag=direct status=none
    (cd "$src/data" && find . -mindepth 1 ! -name big.bin -print0 | cpio -0 -pdm --quiet "$mnt/data")
    sync -f "$mnt"
    umount "$mnt"

    # Read back through the device, not the page cache.
    echo 3 >/proc/sys/vm/drop_caches
    blockdev --flushbufs "$device"
    mount -o ro "$device" "$mnt"
    (cd "$mnt" && sha256sum --quiet -c "$scratch/manifest") || fail "$name: files read back through $device differ"
    umount "$mnt"
    fsck.ext4 -fn "$device" >"$scratch/$name.fsck" 2>&1 || { cat "$scratch/$name.fsck"; fail "$name: fsck -fn $device"; }

    nbd-client -d "$device"
    local deadline=$(($(date +%s) + 30))
    while [ "$(cat /sys/block/nbd0/size)" -ne 0 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$device still attached 30 s after nbd-client -d"
        sleep 0.2
    done

    kill -TERM "$server_pid"
    local rc=0
    wait "$server_pid" || rc=$?
    server_pid=
    [ "$rc" -eq 0 ] || { cat "$out.err"; fail "$name: jloop exited $rc after SIGTERM, expected 0"; }

    # The image file itself, after jloop is gone: what it wrote is what ext4 wrote.
    fsck.ext4 -fn "$image" >"$scratch/$name.fsck" 2>&1 || { cat "$scratch/$name.fsck"; fail "$name: fsck -fn of the image file"; }
    rm -rf "$scratch/check"
    mkdir "$scratch/check"
    debugfs -R "rdump /data $scratch/check" "$image" >/dev/null 2>&1
    (cd "$scratch/check" && sha256sum --quiet -c "$scratch/manifest") || fail "$name: files in the image file differ"

    cp --sparse=always "$image" "$work/$name.img"
    cp "$scratch/manifest" "$work/$name.img.sha256"
    rm -f "$image"
    say "$name: ok"
}

for backend in $backends; do
    for mode in $modes; do
        run "$backend" "$mode"
    done
done
say "all ok"
