#!/bin/sh
# Guest-side scenario for the ublk frontend: run as root inside a VM whose kernel has ublk_drv loaded
# (Linux 6.12 recommended) and ext4 available (built in or loaded). Needs: mkfs.ext4, fsck.ext4, mount,
# fio (libaio), blkdiscard, blockdev, sha256sum, cmp; setpriv for the non-root check (skipped without).
# Under TCG a jloop start takes 10-60 s (vm-guest.sh sets JLOOP_JAVA_OPTS for the emulated CPU).
# The whole scenario took 5-9 minutes on a loaded 2-core host.
#
#   ublk-scenario.sh JLOOP_HOME WORKDIR
#
# JLOOP_HOME is an unpacked distribution (bin/jloop, lib/); WORKDIR a writable scratch directory
# (images are created there). Exits 0 when every check passed, non-zero with a "FAIL:" line on the
# first mismatch. Checks, for each backend (sync with one queue, nio and io_uring with two):
#   - ext4 on /dev/ublkbN: mkfs, mount, checksummed files, remount and verify, umount, fsck -fn
#   - fio randrw with verify=crc32c at iodepth 32 on the raw device
#   - blkdiscard and blkdiscard -z (zero-out) read back as zeros
#   - deep queues, 128 requests in flight on each queue: FUA writes (O_DIRECT|O_DSYNC through
#     io_uring) verified with crc32c; a zero-out of half the device while FUA writes fill the queues;
#     blkdiscard and blkdiscard -z of the whole device at once while readers fill the queues; ext4
#     with -o discard freeing 256 extents at once. Each has a deadline: one that passes is a hang,
#     reported with jloop's threads (saved in WORKDIR as hang-*.threads), after which jloop is killed
#     and the other backends are still checked; the scenario then fails at its end.
# then once: --ublk-id, --queues, --queue-depth, --read-only and --direct as the kernel sees them, a
# taken id and a non-root user refused with a clear message;
# SIGTERM while fio writes -> the device disappears, the server exits 0, and after a restart
# (with --ublk-id) the data written before the last completed flush is intact; SIGTERM right after a
# buffered dd -> its data is in the image; and SIGTERM with a
# file system still mounted -> exit 0, the id is free again after the umount, and after a restart
# the journal replays on mount, the file synced before SIGTERM is there and fsck -fn finds it clean.
set -u
JLOOP_HOME=${1:?usage: ublk-scenario.sh JLOOP_HOME WORKDIR}
WORK=${2:?usage: ublk-scenario.sh JLOOP_HOME WORKDIR}
# Images and the jloop copy live in guest RAM: WORKDIR may be the host's share (9p), slow for I/O.
W=$(mktemp -d /tmp/ublk-scenario.XXXXXX) && chmod 755 "$W"    # the non-root check runs jloop from here
J=$W/jloop/bin/jloop
MNT=$W/mnt
SIZE=${UBLK_SCENARIO_SIZE:-128M}
PID=
DEV=
DEEP_FAILED=

fail()
{
    echo "ublk-scenario: FAIL: $*" >&2
    [ -f "$W/err.log" ] && tail -20 "$W/err.log" >&2
    umount "$MNT" 2>/dev/null
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    exit 1
}

step()
{
    echo "ublk-scenario: [$(cut -d' ' -f1 /proc/uptime)s] $*"
}

# start_server IMAGE ARGS... : starts jloop, waits for its start line, sets PID and DEV
start_server()
{
    image=$1
    shift
    : >"$W/out.log"
    "$J" serve --frontend ublk "$@" "$image" >"$W/out.log" 2>"$W/err.log" &
    PID=$!
    i=0
    while ! grep -q '^jloop: serving /dev/ublkb' "$W/out.log"; do
        kill -0 "$PID" 2>/dev/null || { wait "$PID"; rc=$?; PID=; cat "$W/out.log" >&2; fail "jloop exited with $rc before serving ($*)"; }
        i=$((i + 1))
        [ $i -lt 240 ] || fail "no start line after 120 s ($*)"
        sleep 0.5
    done
    DEV=$(sed -n 's|^jloop: serving \(/dev/ublkb[0-9]*\):.*|\1|p' "$W/out.log")
    [ -b "$DEV" ] || fail "start line names $DEV, which is not a block device"
    step "serving $DEV ($*)"
}

# stop_server: SIGTERM, exit code 0, and no ublk device or character device left behind
stop_server()
{
    id=${DEV#/dev/ublkb}
    kill -TERM "$PID"
    (sleep 90 && kill -KILL "$PID" 2>/dev/null) &
    dog=$!
    wait "$PID"
    rc=$?
    kill "$dog" 2>/dev/null
    PID=
    [ $rc -ne 137 ] || fail "jloop did not exit within 90 s of SIGTERM"
    [ $rc -eq 0 ] || fail "jloop exited with $rc after SIGTERM"
    i=0
    while [ -e "$DEV" ] || [ -e "/dev/ublkc$id" ] || [ -e "/sys/class/ublk-char/ublkc$id" ]; do
        i=$((i + 1))
        [ $i -lt 20 ] || fail "$DEV or /dev/ublkc$id still present after the server exited"
        sleep 0.5
    done
    step "stopped, $DEV gone"
}

# zeros DEV OFFSET_MIB LENGTH_MIB: fails unless that range reads back as zeros
expect_zeros()
{
    dd if="$1" of="$W/range" bs=1M skip="$2" count="$3" iflag=direct 2>/dev/null || fail "reading $1 at ${2}M"
    head -c "$(($3 * 1048576))" /dev/zero >"$W/zero"
    cmp -s "$W/range" "$W/zero" || fail "$4: $1 at ${2}M+${3}M does not read back as zeros"
}

filesystem()
{
    mkfs.ext4 -q -F "$DEV" || fail "mkfs.ext4 $DEV"
    mkdir -p "$MNT"
    mount "$DEV" "$MNT" || fail "mount $DEV"
    for n in 1 2 3 4 5 6; do
        head -c $((n * 700000)) /dev/urandom >"$MNT/file$n" || fail "writing file$n"
    done
    mkdir -p "$MNT/dir" && cp "$MNT/file3" "$MNT/dir/copy"
    (cd "$MNT" && sha256sum file* dir/copy >"$W/sums")
    umount "$MNT" || fail "umount"
    mount "$DEV" "$MNT" || fail "second mount"
    (cd "$MNT" && sha256sum -c --quiet "$W/sums") || fail "checksums differ after remount"
    umount "$MNT" || fail "second umount"
    fsck.ext4 -fn "$DEV" >"$W/fsck.log" 2>&1 || { cat "$W/fsck.log"; fail "fsck.ext4 -fn $DEV"; }
    step "ext4: files verified, fsck clean"
}

fio_verify()
{
    fio --name=ublk-verify --filename="$DEV" --ioengine=libaio --direct=1 --rw=randrw --bs=4k \
        --iodepth=32 --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 --eta=never \
        --output="$W/fio.log" || { cat "$W/fio.log"; fail "fio randrw verify=crc32c on $DEV"; }
    step "fio randrw crc32c verified"
}

discard_and_zero()
{
    dd if=/dev/urandom of="$DEV" bs=1M seek=4 count=8 oflag=direct conv=fsync 2>/dev/null || fail "pattern write"
    blkdiscard -f -o $((4 * 1048576)) -l $((4 * 1048576)) "$DEV" || fail "blkdiscard"
    expect_zeros "$DEV" 4 4 "blkdiscard"
    blkdiscard -f -z -o $((8 * 1048576)) -l $((4 * 1048576)) "$DEV" || fail "blkdiscard -z"
    expect_zeros "$DEV" 8 4 "zero-out"
    step "discard and zero-out read back as zeros"
}

# within SECONDS WHAT COMMAND...: runs COMMAND and returns its exit code, or 124 if it hangs (see await)
within()
{
    limit=$1
    what=$2
    shift 2
    "$@" &
    await "$limit" "$what" $!
}

# await SECONDS WHAT PID: waits for the background job PID and returns its exit code; if it is still
# running after SECONDS, that is a hang: jloop's threads go to WORKDIR, jloop is killed and its device
# deleted (the kernel then fails the device's requests, so the job ends too), and it returns 124 with PID empty.
await()
{
    i=0
    while kill -0 "$3" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt $(($1 * 2)) ]; then
            dump="$WORK/hang-$backend-$(echo "$2" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' - | tr -s - | cut -c 1-50).threads"
            echo "ublk-scenario: HANG: $2 did not finish within $1 s ($backend); jloop's threads in $dump" >&2
            : >"$W/out.log"
            kill -QUIT "$PID" 2>/dev/null
            sleep 3
            cp "$W/out.log" "$dump"
            kill -KILL "$PID" 2>/dev/null
            wait "$PID" 2>/dev/null
            PID=
            # the device waits for a new server (user recovery): deleting it fails the I/O that waits
            "$J" ublk del "${DEV#/dev/ublkb}" >/dev/null 2>&1
            kill -KILL "$3" 2>/dev/null
            wait "$3" 2>/dev/null
            return 124
        fi
        sleep 0.5
    done
    wait "$3"
}

# fio's options for one job per CPU, so that every ublk queue (one per CPU at most) gets its own
PER_CPU="--numjobs=2 --cpus_allowed=0-1 --cpus_allowed_policy=split"

# background_reader: readers that keep 128 reads in flight on each queue until stopped (sets READER)
background_reader()
{
    fio --name=reader --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randread --bs=64k --iodepth=128 \
        $PER_CPU --time_based --runtime=600 --eta=never --output="$W/fio-reader.log" &
    READER=$!
    sleep 2
}

# stop_reader: SIGTERM to the reader; fails if it does not end within 60 s (its reads hang)
stop_reader()
{
    kill -TERM $READER 2>/dev/null
    i=0
    while kill -0 $READER 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 120 ] || { kill -KILL $READER 2>/dev/null; deep_failed "the reader did not stop within 60 s: its reads hang"; return 1; }
        sleep 0.5
    done
    wait $READER 2>/dev/null
    return 0
}

# zeros_within WHAT OFFSET_MIB LENGTH_MIB: that range reads back as zeros, within 120 s
zeros_within()
{
    within 120 "reading back after $1" cmp -n $(($3 << 20)) -i $(($2 << 20)):0 "$DEV" /dev/zero
    rc=$?
    [ $rc -eq 0 ] || { deep_failed "$DEV at ${2}M+${3}M does not read back as zeros after $1 (cmp exit $rc)"; return 1; }
}

# deep_queues: checks with every ublk queue at its full depth (128 each); the first failure or hang
# ends the checks of this backend and is added to DEEP_FAILED.
deep_queues()
{
    mib=$(($(blockdev --getsize64 "$DEV") >> 20))
    half=$((mib / 2))
    # O_DSYNC on O_DIRECT makes every write a FUA write; the verify pass reads every block back. Each
    # job has a range of its own, so that neither overwrites what the other verifies.
    within 120 "fio: 128 FUA writes in flight" fio --name=ublk-deep-fua --filename="$DEV" --ioengine=io_uring \
        --direct=1 --sync=dsync --rw=randwrite --bs=4k --iodepth=128 $PER_CPU --size=16M --offset_increment=16M \
        --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 --eta=never --output="$W/fio-deep.log"
    rc=$?
    [ $rc -eq 0 ] || { [ $rc -eq 124 ] || cat "$W/fio-deep.log"; deep_failed "fio: 128 FUA writes in flight (exit $rc)"; return 1; }
    step "deep queue: 128 FUA writes in flight, crc32c verified"

    # zero-out (written zeros where the file system cannot zero a range) of one half while 128 FUA
    # writes are in flight on the other
    fio --name=ublk-deep-fua-zero --filename="$DEV" --ioengine=io_uring --direct=1 --sync=dsync --rw=randwrite \
        --bs=4k --iodepth=128 $PER_CPU --size=16M --offset_increment=16M --verify=crc32c --verify_fatal=1 \
        --do_verify=1 --randrepeat=0 --eta=never --output="$W/fio-deep.log" 2>"$W/fio-deep.err" &
    writer=$!
    dd if=/dev/urandom of="$DEV" bs=1M seek=$half count=$half oflag=direct 2>/dev/null || { deep_failed "writing data to zero out"; return 1; }
    within 120 "blkdiscard -z of ${half} MiB while 128 FUA writes are in flight" blkdiscard -f -z -o $((half << 20)) -l $((half << 20)) "$DEV"
    rc=$?
    [ $rc -ne 124 ] || { deep_failed "blkdiscard -z while 128 FUA writes are in flight: hang"; kill -KILL $writer; return 1; }
    [ $rc -eq 0 ] || { deep_failed "blkdiscard -z while 128 FUA writes are in flight (exit $rc)"; kill -KILL $writer; return 1; }
    await 120 "fio: 128 FUA writes in flight while a zero-out runs" $writer
    rc=$?
    [ $rc -eq 0 ] || { [ $rc -eq 124 ] || cat "$W/fio-deep.log" "$W/fio-deep.err"; deep_failed "fio: 128 FUA writes in flight while a zero-out runs (exit $rc)"; return 1; }
    zeros_within "blkdiscard -z while 128 FUA writes are in flight" $half $half || return 1
    step "deep queue: zero-out of $half MiB while 128 FUA writes are in flight: verified, zeros"

    # the whole device at once, while 128 reads are in flight
    for how in blkdiscard "blkdiscard -z"; do
        dd if=/dev/urandom of="$DEV" bs=1M count=32 oflag=direct conv=fsync 2>/dev/null || { deep_failed "writing data to discard"; return 1; }
        background_reader
        within 120 "$how of the whole device while 128 reads are in flight" $how -f "$DEV"
        rc=$?
        [ $rc -ne 124 ] || { deep_failed "$how of the whole device while 128 reads are in flight: hang"; kill -KILL $READER; return 1; }
        stop_reader || return 1
        [ $rc -eq 0 ] || { deep_failed "$how of the whole device (exit $rc)"; return 1; }
        zeros_within "$how of the whole device" 0 $mib || return 1
        step "deep queue: $how of the whole device while 128 reads are in flight: zeros"
    done

    # ext4 mounted with -o discard discards each freed extent at the journal commit, all in flight at
    # once: 512 files of 8 KiB, every other one deleted, leave 256 separate extents
    mkfs.ext4 -q -F -E nodiscard "$DEV" || { deep_failed "mkfs.ext4"; return 1; }
    mount -o discard "$DEV" "$MNT" || { deep_failed "mount -o discard"; return 1; }
    rm -rf "$W/many" && mkdir "$W/many" && head -c $((512 * 8192)) /dev/urandom | (cd "$W/many" && split -a 3 -b 8192 - f)
    cp -r "$W/many" "$MNT/many" && sync -f "$MNT" || { deep_failed "writing 512 files"; umount "$MNT"; return 1; }
    (cd "$W/many" && ls | awk 'NR % 2 == 0' | xargs rm -f && sha256sum * >"$W/many.sums")
    (cd "$MNT/many" && ls | awk 'NR % 2 == 0' | xargs rm -f)
    within 120 "sync of ext4 -o discard after deleting 256 files" sync -f "$MNT"
    rc=$?
    [ $rc -ne 124 ] || { deep_failed "sync of ext4 -o discard after deleting 256 files: hang"; umount -l "$MNT"; return 1; }
    umount "$MNT" && echo 3 >/proc/sys/vm/drop_caches && mount -o ro "$DEV" "$MNT" || { deep_failed "remount"; return 1; }
    (cd "$MNT/many" && sha256sum -c --quiet "$W/many.sums") || { deep_failed "files next to the discarded extents differ"; umount "$MNT"; return 1; }
    umount "$MNT"
    fsck.ext4 -fn "$DEV" >"$W/fsck.log" 2>&1 || { cat "$W/fsck.log"; deep_failed "fsck.ext4 -fn after the discards"; return 1; }
    step "deep queue: ext4 -o discard freed 256 extents at once; the other files intact, fsck clean"
}

deep_failed()
{
    echo "ublk-scenario: FAIL: deep queues, $backend: $*" >&2
    DEEP_FAILED="$DEEP_FAILED; $backend: $*"
}

[ "$(id -u)" = 0 ] || fail "must run as root"
[ -e /dev/ublk-control ] || modprobe ublk_drv
[ -e /dev/ublk-control ] || fail "/dev/ublk-control is missing: modprobe ublk_drv"
mkdir -p "$W" || fail "cannot create $W"
[ -x "$JLOOP_HOME/bin/jloop" ] || fail "$JLOOP_HOME/bin/jloop is not executable"
# A local copy: loading classes through a VM's shared file system (9p) costs many seconds per start.
rm -rf "$W/jloop" && cp -r "$JLOOP_HOME" "$W/jloop" || fail "cannot copy $JLOOP_HOME to $W"
grep -qw ext4 /proc/filesystems || modprobe ext4 2>/dev/null
grep -qw ext4 /proc/filesystems || fail "the guest kernel has no ext4 (load the ext4 module first)"

for backend in sync nio io_uring; do
    rm -f "$W/$backend.img"
    queues=1
    [ $backend = sync ] || queues=2
    start_server "$W/$backend.img" --backend $backend --size "$SIZE" --queues $queues
    filesystem
    fio_verify
    discard_and_zero
    if deep_queues; then
        stop_server
    elif [ -n "$PID" ]; then
        stop_server
    fi
    rm -f "$W/$backend.img"    # guest RAM: the images live in a tmpfs
done

# Options and refusals: id, queues, depth, read-only, 4 KiB blocks under --direct; a taken id; not root
rm -f "$W/opt.img"
start_server "$W/opt.img" --backend io_uring --size 16M --ublk-id 3 --queues 2 --queue-depth 16 --read-only --direct
[ "$DEV" = /dev/ublkb3 ] || fail "--ublk-id 3 gave $DEV"
[ "$(blockdev --getro "$DEV")" = 1 ] || fail "--read-only: $DEV is not read-only"
[ "$(blockdev --getss "$DEV")" = 4096 ] || fail "--direct: logical block size $(blockdev --getss "$DEV"), expected 4096"
[ "$(cat /sys/block/ublkb3/mq/*/nr_tags 2>/dev/null | sort -u)" = 16 ] || fail "--queue-depth 16: nr_tags $(cat /sys/block/ublkb3/mq/*/nr_tags)"
[ "$(ls /sys/block/ublkb3/mq | wc -l)" = 2 ] || fail "--queues 2: $(ls /sys/block/ublkb3/mq | wc -l) queues"
dd if=/dev/zero of="$DEV" bs=4k count=1 oflag=direct 2>/dev/null && fail "a write to the read-only device succeeded"
dd if="$DEV" of=/dev/null bs=1M iflag=direct 2>/dev/null || fail "reading the read-only device"
KEEP_PID=$PID
KEEP_DEV=$DEV
"$J" serve --frontend ublk --backend sync --ublk-id 3 "$W/opt.img" >"$W/taken.out" 2>"$W/taken.err" &&
    fail "a second server took ublk id 3"
grep -q 'EEXIST.*--ublk-id' "$W/taken.err" || fail "taken id: unclear error: $(cat "$W/taken.err")"
PID=$KEEP_PID
DEV=$KEEP_DEV
stop_server
if command -v setpriv >/dev/null; then
    chmod 644 "$W/opt.img"
    setpriv --reuid=65534 --regid=65534 --clear-groups "$J" serve --frontend ublk --backend sync --read-only "$W/opt.img" \
        >"$W/user.out" 2>"$W/user.err" && fail "a non-root user started a ublk device"
    grep -q 'needs root' "$W/user.err" || fail "not root: unclear error: $(cat "$W/user.err")"
fi
step "options and refusals as expected"

# --run: the command gets $device, jloop exits with its status and deletes the device
rm -f "$W/run.img"
"$J" serve --frontend ublk --backend io_uring --size 32M \
    --run 'mkfs.ext4 -q "$device" && mkdir -p '"$MNT"' && mount "$device" '"$MNT"' && echo ran >'"$MNT"'/f && umount '"$MNT"' && echo "$device" >'"$W/run.device"'; exit 7' \
    "$W/run.img" >"$W/run.out" 2>"$W/run.err"
status=$?
[ $status = 7 ] || fail "--run: exit status $status, expected the command's 7: $(cat "$W/run.err")"
RUN_DEV=$(cat "$W/run.device" 2>/dev/null)
case "$RUN_DEV" in /dev/ublkb[0-9]*) ;; *) fail "--run: \$device was '$RUN_DEV'" ;; esac
[ ! -e "$RUN_DEV" ] || fail "--run: $RUN_DEV still exists after jloop exited"
fsck.ext4 -fn "$W/run.img" >/dev/null 2>&1 || fail "--run: the file system made through \$device is not clean in the image"
step "--run with \$device: the command's status, device deleted, file system in the image"

# Filters through ublk: delay below, error above; the kernel sees the injected errno while the trigger exists
rm -f "$W/filter.img" "$W/fail-now"
start_server "$W/filter.img" --backend io_uring --size 32M --filter error:error=EIO,error-ops=write --error-file "$W/fail-now" \
    --filter delay:delay-write=1ms
dd if=/dev/urandom of="$W/chunk" bs=64k count=1 2>/dev/null
dd if="$W/chunk" of="$DEV" bs=64k count=1 oflag=direct 2>/dev/null || fail "filters: a write without the trigger failed"
touch "$W/fail-now"
dd if=/dev/zero of="$DEV" bs=64k count=1 oflag=direct 2>"$W/dd-err.log" && fail "filters: a write with the trigger succeeded"
grep -q "Input/output error" "$W/dd-err.log" || fail "filters: unexpected error: $(cat "$W/dd-err.log")"
rm -f "$W/fail-now"
dd if="$DEV" of="$W/chunk.back" bs=64k count=1 iflag=direct 2>/dev/null || fail "filters: reading back"
cmp -s "$W/chunk" "$W/chunk.back" || fail "filters: the refused write changed the data"
stop_server
step "filters through ublk: injected EIO seen by dd, data unchanged"

# cow through ublk: a file system made on the device lands in the overlay; the file below is untouched
rm -f "$W/base.img"
dd if=/dev/urandom of="$W/base.img" bs=1M count=32 2>/dev/null
cp "$W/base.img" "$W/base.copy"
start_server "$W/base.img" --backend nio --filter cow --cow-file "$W/base.overlay"
mkfs.ext4 -q -F "$DEV" || fail "cow: mkfs.ext4 $DEV"
fsck.ext4 -fn "$DEV" >/dev/null 2>&1 || fail "cow: fsck.ext4 -fn $DEV"
stop_server
cmp -s "$W/base.img" "$W/base.copy" || fail "cow: the file below the overlay was written"
"$J" commit --cow-file "$W/base.overlay" "$W/base.img" >"$W/commit.log" 2>&1 || fail "cow: jloop commit: $(cat "$W/commit.log")"
fsck.ext4 -fn "$W/base.img" >/dev/null 2>&1 || fail "cow: after jloop commit the file holds no clean file system"
step "cow through ublk: mkfs into the overlay, the file untouched, then committed into it"

# SIGTERM while fio writes: flushed data survives, the device goes away, exit code 0
rm -f "$W/term.img"
start_server "$W/term.img" --backend nio --size 64M
# the id the kernel picked (0 unless a killed server still holds it) is asked for again on restart
ID=${DEV#/dev/ublkb}
dd if=/dev/urandom of="$W/flushed" bs=1M count=8 2>/dev/null
dd if="$W/flushed" of="$DEV" bs=1M count=4 oflag=direct conv=fsync 2>/dev/null || fail "writing the flushed range"
# --allow_file_create=0: once the device node is gone, a time-based fio that reopens its file would
# otherwise create a regular file of that name in /dev and write on into it
fio --name=ublk-term --filename="$DEV" --ioengine=libaio --direct=1 --rw=randwrite --bs=64k --iodepth=32 \
    --offset=16M --size=40M --time_based --runtime=60 --allow_file_create=0 --output="$W/fio-term.log" &
FIO=$!
sleep 3
# the last flush completes while fio keeps 32 writes in flight
dd if="$W/flushed" of="$DEV" bs=1M skip=4 seek=4 count=4 conv=fsync 2>/dev/null || fail "writing under load"
kill -0 $FIO 2>/dev/null || fail "fio ended before SIGTERM"
stop_server
i=0
while kill -0 $FIO 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 60 ] || { kill -KILL $FIO; fail "fio still runs 30 s after the device went away"; }
    sleep 0.5
done
start_server "$W/term.img" --backend nio --ublk-id "$ID"
[ "$DEV" = "/dev/ublkb$ID" ] || fail "--ublk-id $ID gave $DEV"
dd if="$DEV" of="$W/readback" bs=1M count=8 iflag=direct 2>/dev/null || fail "reading back after restart"
cmp -s "$W/flushed" "$W/readback" || fail "data flushed before SIGTERM differs after restart"
stop_server
step "SIGTERM under load: device gone, exit 0, flushed data intact"

# SIGTERM right after a buffered write: what dd was told was written is in the file (the server
# writes the page cache back before it removes the disk)
rm -f "$W/buffered.img"
start_server "$W/buffered.img" --backend sync --size 64M
dd if=/dev/urandom of="$W/buffered" bs=1M count=32 2>/dev/null
dd if="$W/buffered" of="$DEV" bs=1M count=32 2>/dev/null || fail "buffered write"
stop_server
cmp -s -n $((32 << 20)) "$W/buffered" "$W/buffered.img" || fail "data of a buffered write before SIGTERM is not in the file"
step "SIGTERM after a buffered write: the page cache reached the file"

# SIGTERM while a file system is still mounted: the server exits 0 all the same (the kernel keeps
# the deleted device until the umount), and the id is free again afterwards
rm -f "$W/mounted.img"
start_server "$W/mounted.img" --backend sync --size 64M
ID=${DEV#/dev/ublkb}
mkfs.ext4 -q -F "$DEV" || fail "mkfs.ext4 $DEV"
mount "$DEV" "$MNT" || fail "mount $DEV"
echo data >"$MNT/x" && sync
stop_server
umount "$MNT" 2>/dev/null || umount -l "$MNT" || fail "umount after the device went away"
start_server "$W/mounted.img" --backend sync --ublk-id "$ID"
[ "$DEV" = "/dev/ublkb$ID" ] || fail "id $ID not free after the umount: got $DEV"
# The file system was never cleanly unmounted: its last metadata may be only in the journal, with
# the home blocks half written back, so a check that skips the journal (fsck -n) can see
# inconsistencies that are not there. Mounting replays the journal, as after a power cut; then
# the synced file must be there and the file system clean.
mount "$DEV" "$MNT" || fail "mount $DEV after the restart (journal replay)"
[ "$(cat "$MNT/x" 2>/dev/null)" = data ] || fail "a file synced before SIGTERM is lost after the journal replay"
umount "$MNT" || fail "umount after the journal replay"
fsck.ext4 -fn "$DEV" >"$W/fsck.log" 2>&1 || { cat "$W/fsck.log"; fail "fsck.ext4 -fn after stopping under a mount"; }
stop_server
step "SIGTERM with a mounted file system: exit 0, id freed after umount, synced file kept, fsck clean"
[ -z "$DEEP_FAILED" ] || fail "deep queues${DEEP_FAILED}"
echo "ublk-scenario: PASS"
