#!/bin/bash
# The guest side of the power-cut test: powercut.sh on the host boots it with vm-run.sh and cuts the
# power (SIGKILL of qemu) while it runs. Not a *-scenario.sh: it never ends well by itself.
#
# usage: powercut-guest.sh JLOOP_HOME WORK_DIR
# env:   POWERCUT_SETUPS   FRONTEND:BACKEND pairs, comma-separated, one per virtio disk in the order
#                          vm-run.sh attached them (/dev/vda, /dev/vdb, ...), e.g. ublk:sync,nbd:nio
#        POWERCUT_SECONDS  how long the workloads run if nobody cuts the power (default 600)
#        POWERCUT_READY    durable files per workload before the host is told to cut (default 3)
#
# Each disk holds an ext4 file system the host made. For each: `jloop serve` of the raw disk (the
# disk is jloop's backing file), through ublk (/dev/ublkbN) or through the kernel's nbd-client with two
# connections (/dev/nbdN); the file system mounted from that device; and a workload that writes new
# files of random size and content and makes each one durable, in turn with dd conv=fsync, dd
# conv=fdatasync, dd oflag=dsync (every write O_DSYNC), dd oflag=direct conv=fsync, or a buffered cp
# and `sync FILE`, and then `sync DIR` for its directory entry. Only after all that returned, it
# appends the file's SHA-256 and path (sha256sum's format, paths from the file system's root) to
# WORK_DIR/vdX.fsynced. Every third file also gets a sibling written without any sync, listed in
# WORK_DIR/vdX.unsynced: those may be lost, and usually some are.
#
# WORK_DIR is the host's (9p without a cache): a line appended there is in the host's file when the
# write returns, so the power cut cannot take it back. WORK_DIR/running appears once every workload
# has made POWERCUT_READY files durable: the host's cue to cut the power. A workload that fails writes
# WORK_DIR/vdX.failed; jloop's output goes to WORK_DIR/vdX.jloop.log.
set -Eeuo pipefail

home=${1:?usage: powercut-guest.sh JLOOP_HOME WORK_DIR}
work=${2:?usage: powercut-guest.sh JLOOP_HOME WORK_DIR}
IFS=, read -r -a setups <<<"${POWERCUT_SETUPS:?POWERCUT_SETUPS is not set}"
seconds=${POWERCUT_SECONDS:-600}
ready=${POWERCUT_READY:-3}

started=$(date +%s)
say() { printf '[powercut %4ss] %s\n' $(($(date +%s) - started)) "$*"; }
fail() { say "FAIL: $*"; exit 1; }
trap 'say "FAIL: line $LINENO: $BASH_COMMAND exited with $?"' ERR

modprobe virtio_blk
modprobe ublk_drv
modprobe nbd nbds_max=${#setups[@]}
[ -e /dev/ublk-control ] || fail "/dev/ublk-control missing after modprobe ublk_drv"

# Reading jars over 9p from an emulated CPU is slow: jloop starts several times faster from tmpfs.
scratch=$(mktemp -d /tmp/powercut.XXXXXX)
cp -a "$home" "$scratch/jloop"
jloop=$scratch/jloop/bin/jloop

letters=abcdefghijklmnop
disks=() frontends=() backends=() pids=()
for i in "${!setups[@]}"; do
    setup=${setups[$i]}
    frontend=${setup%%:*}
    backend=${setup#*:}
    disk=vd${letters:$i:1}
    [ -b "/dev/$disk" ] || fail "/dev/$disk missing: the host attached fewer disks than POWERCUT_SETUPS lists"
    case $frontend in
        ublk) args=(--frontend ublk --ublk-id "$i") ;;
        nbd) args=(--listen "127.0.0.1:$((10809 + i))") ;;
        *) fail "unknown frontend in $setup" ;;
    esac
    # The raw disk itself is the backing file: its size is the device's, no --size.
    "$jloop" serve --backend "$backend" "${args[@]}" "/dev/$disk" >"$work/$disk.jloop.log" 2>&1 &
    disks+=("$disk") frontends+=("$frontend") backends+=("$backend") pids+=($!)
    say "/dev/$disk: jloop serve --backend $backend ${args[*]}"
done

# The JVMs start in parallel: under TCG each takes 20-50 s alone, longer while the others start.
devices=()
for i in "${!disks[@]}"; do
    disk=${disks[$i]}
    deadline=$(($(date +%s) + 400))
    until grep -q '^jloop: serving ' "$work/$disk.jloop.log"; do
        kill -0 "${pids[$i]}" 2>/dev/null || { cat "$work/$disk.jloop.log"; fail "jloop for /dev/$disk exited before serving"; }
        [ "$(date +%s)" -lt "$deadline" ] || { cat "$work/$disk.jloop.log"; fail "jloop for /dev/$disk did not start within 400 s"; }
        sleep 0.5
    done
    line=$(grep '^jloop: serving ' "$work/$disk.jloop.log")
    say "$line"
    case $line in
        *"backend ${backends[$i]}"*) ;;
        *) fail "jloop serves /dev/$disk with another backend than ${backends[$i]}" ;;
    esac
    if [ "${frontends[$i]}" = ublk ]; then
        device=$(sed -n 's|^jloop: serving \(/dev/ublkb[0-9]*\):.*|\1|p' "$work/$disk.jloop.log")
    else
        device=/dev/nbd$i
        # Two connections: a FLUSH on one must cover the writes completed on the other.
        nbd-client 127.0.0.1 $((10809 + i)) "$device" -N "" -b 4096 -C 2 -t 120
        until [ "$(cat "/sys/block/nbd$i/size")" -gt 0 ]; do sleep 0.2; done
    fi
    [ -b "$device" ] || fail "$device is not a block device"
    [ "$(blockdev --getsize64 "$device")" = "$(blockdev --getsize64 "/dev/$disk")" ] ||
        fail "$device has $(blockdev --getsize64 "$device") bytes, /dev/$disk $(blockdev --getsize64 "/dev/$disk")"
    devices+=("$device")
done

# Random files, each made durable before it is listed. The sizes: mostly small, some up to 1 MiB.
workload()
{
    local disk=$1 mnt=$2
    local fsynced=$work/$disk.fsynced unsynced=$work/$disk.unsynced src=$scratch/$disk.src
    local end=$(($(date +%s) + seconds)) n=0 size dir file sum
    while [ "$(date +%s)" -lt "$end" ]; do
        n=$((n + 1))
        case $((RANDOM % 8)) in
            0) size=$(((RANDOM << 15 | RANDOM) % 1048576 + 1)) ;;
            1 | 2) size=$(((RANDOM << 15 | RANDOM) % 131072 + 1)) ;;
            *) size=$((RANDOM % 16384 + 1)) ;;
        esac
        dir=d$((n % 8))
        file=$dir/f$n
        case $((n % 5)) in
            0)
                head -c "$size" /dev/urandom >"$src"
                dd if="$src" of="$mnt/$file" bs=64k conv=fsync status=none
                ;;
            1)
                head -c "$size" /dev/urandom >"$src"
                dd if="$src" of="$mnt/$file" bs=64k conv=fdatasync status=none
                ;;
            2)
                head -c "$size" /dev/urandom >"$src"
                dd if="$src" of="$mnt/$file" bs=64k oflag=dsync status=none
                ;;
            3)
                # O_DIRECT wants whole blocks
                size=$(((size + 4095) / 4096 * 4096))
                head -c "$size" /dev/urandom >"$src"
                dd if="$src" of="$mnt/$file" bs=64k oflag=direct conv=fsync status=none
                ;;
            4)
                head -c "$size" /dev/urandom >"$src"
                cp "$src" "$mnt/$file"
                sync "$mnt/$file"
                ;;
        esac
        # ext4 commits the new directory entry with the file's fsync; POSIX asks for the directory's own.
        sync "$mnt/$dir"
        sum=$(sha256sum <"$src")
        echo "${sum%% *}  $file" >>"$fsynced"
        if [ $((n % 3)) = 0 ]; then
            head -c "$size" /dev/urandom >"$src"
            cp "$src" "$mnt/unsynced/u$n"
            sum=$(sha256sum <"$src")
            echo "${sum%% *}  unsynced/u$n" >>"$unsynced"
        fi
    done
}

workers=()
for i in "${!disks[@]}"; do
    disk=${disks[$i]}
    mnt=$scratch/mnt-$disk
    mkdir -p "$mnt"
    mount -t ext4 "${devices[$i]}" "$mnt"
    mkdir -p "$mnt"/d{0..7} "$mnt/unsynced"
    sync -f "$mnt"
    : >"$work/$disk.fsynced"
    : >"$work/$disk.unsynced"
    (
        trap 'echo "workload on ${devices[$i]} (/dev/$disk): line $LINENO: $BASH_COMMAND exited with $?" >"$work/$disk.failed"' ERR
        workload "$disk" "$mnt"
    ) &
    workers+=($!)
    say "/dev/$disk: ext4 on ${devices[$i]} (${frontends[$i]}, ${backends[$i]}) mounted, workload started"
done

deadline=$(($(date +%s) + 300))
while :; do
    under_way=0
    for disk in "${disks[@]}"; do
        [ ! -e "$work/$disk.failed" ] || fail "$(cat "$work/$disk.failed")"
        [ "$(wc -l <"$work/$disk.fsynced")" -lt "$ready" ] || under_way=$((under_way + 1))
    done
    [ "$under_way" -lt "${#disks[@]}" ] || break
    [ "$(date +%s)" -lt "$deadline" ] || fail "the workloads did not make $ready files durable each within 300 s"
    sleep 0.2
done
date +%s >"$work/running"
say "every workload under way: waiting for the power cut"

wait "${workers[@]}" || true
for disk in "${disks[@]}"; do
    [ ! -e "$work/$disk.failed" ] || fail "$(cat "$work/$disk.failed")"
done
fail "the workloads ran for $seconds s and nobody cut the power"
