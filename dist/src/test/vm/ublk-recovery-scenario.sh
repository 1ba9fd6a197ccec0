#!/bin/bash
# Guest-side scenario for ublk user recovery: run as root inside a VM whose kernel has ublk_drv
# (Linux 6.12) and ext4. Needs: mkfs.ext4, fsck.ext4, mount, fio (libaio), sha256sum, dmesg.
#
#   ublk-recovery-scenario.sh JLOOP_HOME WORKDIR
#
# Checks, on one device (/dev/ublkb7) with ext4 mounted throughout:
#   - jloop serve --frontend ublk records the device in /run/jloop/ublk/7
#   - five times in a row (UBLK_RECOVERY_ROUNDS): fio randrw with crc32c verify at iodepth 32 runs in the file system,
#     jloop is killed with SIGKILL in the middle, the device stays (jloop ublk list: "quiesced, no
#     server"), jloop ublk recover 7 serves it again, fio finishes without an I/O error and its
#     verify passes; the fifth recovery picks another backend (an upgrade-like restart)
#   - recovery refused with one line: a live device, a device that does not exist, a missing state
#     file, a state file that does not match the device
#   - files written and fsynced before the first kill are intact after the last recovery; fsck -fn
#     clean after umount; no I/O error for ublkb7 in the kernel log
#   - SIGTERM of a recovered server deletes the device and its state file
#   - kill -9, then jloop ublk del 7 on the quiesced device: the I/O waiting on it fails instead of
#     hanging, the device and its state file are gone
set -u
JLOOP_HOME=${1:?usage: ublk-recovery-scenario.sh JLOOP_HOME WORKDIR}
WORK=${2:?usage: ublk-recovery-scenario.sh JLOOP_HOME WORKDIR}
W=$(mktemp -d /tmp/ublk-recovery.XXXXXX)
J=$W/jloop/bin/jloop
MNT=$W/mnt
ID=7
DEV=/dev/ublkb$ID
STATE=${JLOOP_UBLK_STATE_DIR:-/run/jloop/ublk}/$ID
PID=
FIO=
# recoveries under load; the last one through another backend (each costs a JVM start, 30-70 s under TCG)
ROUNDS=${UBLK_RECOVERY_ROUNDS:-5}

step()
{
    echo "ublk-recovery: [$(cut -d' ' -f1 /proc/uptime)s] $*"
}

fail()
{
    echo "ublk-recovery: FAIL: $*" >&2
    for log in "$W"/err.log "$W"/fio.log; do
        [ -f "$log" ] && { echo "--- $log" >&2; tail -20 "$log" >&2; }
    done
    [ -n "$FIO" ] && kill -KILL "$FIO" 2>/dev/null
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
    "$J" ublk del $ID >/dev/null 2>&1
    umount -l "$MNT" 2>/dev/null
    exit 1
}

# await_serving LOG: waits for jloop's start line in LOG (the server is $PID)
await_serving()
{
    i=0
    while ! grep -q "^jloop: serving $DEV" "$1"; do
        kill -0 "$PID" 2>/dev/null || { wait "$PID"; rc=$?; PID=; cat "$1" >&2; fail "jloop exited with $rc before serving"; }
        i=$((i + 1))
        [ $i -lt 240 ] || fail "no start line after 120 s"
        sleep 0.5
    done
}

# one_line_error WHAT EXPECTED COMMAND...: COMMAND fails with exit 1 and one line containing EXPECTED
one_line_error()
{
    what=$1
    expected=$2
    shift 2
    "$@" >"$W/refused.out" 2>"$W/refused.err"
    rc=$?
    [ $rc -eq 1 ] || fail "$what: exit $rc, expected 1: $(cat "$W/refused.err")"
    [ "$(wc -l <"$W/refused.err")" -eq 1 ] || fail "$what: not one line: $(cat "$W/refused.err")"
    grep -qF -- "$expected" "$W/refused.err" || fail "$what: expected '$expected' in: $(cat "$W/refused.err")"
}

start_fio()
{
    # A new file each time: laying it out is part of the run, which must outlast the kill. The rate
    # cap (per direction) keeps the run at 8 s or more however fast the guest is; the queue still
    # fills to 32 once the server is gone and nothing completes.
    rm -f "$MNT/fio.dat"
    fio --name=recovery --filename="$MNT/fio.dat" --ioengine=libaio --direct=1 --rw=randrw --bs=4k --iodepth=32 \
        --size=32M --rate_iops=1000 --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 --eta=never \
        --output="$W/fio.log" &
    FIO=$!
    # let it get its 32 requests in flight
    sleep 3
    kill -0 "$FIO" 2>/dev/null || { wait "$FIO"; fail "fio ended (exit $?) before the kill: nothing was in flight"; }
}

# crash: SIGKILL of the server while fio runs; the device stays and waits
crash()
{
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null
    PID=
    [ -b "$DEV" ] || fail "$DEV went away with its server, although it was made with user recovery"
    kill -0 "$FIO" 2>/dev/null || { wait "$FIO"; fail "fio ended (exit $?) when the server died: its I/O failed instead of waiting"; }
}

# recover [ARGS]: jloop ublk recover ARGS 7, until it serves again; fio must then finish and verify
recover()
{
    "$J" ublk recover "$@" $ID >"$W/out.log" 2>"$W/err.log" &
    PID=$!
    await_serving "$W/out.log"
    i=0
    while kill -0 "$FIO" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 360 ] || fail "fio did not finish within 180 s of the recovery"
        sleep 0.5
    done
    wait "$FIO"
    rc=$?
    FIO=
    [ $rc -eq 0 ] || { cat "$W/fio.log"; fail "fio failed (exit $rc) across the recovery"; }
    grep -q "err= 0" "$W/fio.log" || { cat "$W/fio.log"; fail "fio reported an error across the recovery"; }
}

[ "$(id -u)" = 0 ] || fail "must run as root"
[ -e /dev/ublk-control ] || modprobe ublk_drv
[ -e /dev/ublk-control ] || fail "/dev/ublk-control is missing: modprobe ublk_drv"
grep -qw ext4 /proc/filesystems || modprobe ext4 2>/dev/null
grep -qw ext4 /proc/filesystems || fail "the guest kernel has no ext4"
rm -rf "$W/jloop" && cp -r "$JLOOP_HOME" "$W/jloop" || fail "cannot copy $JLOOP_HOME to $W"
mkdir -p "$MNT"
dmesg_before=$(dmesg | wc -l)

# Serve, make a file system, and make some files durable before anything is killed
"$J" serve --frontend ublk --backend io_uring --queues 2 --ublk-id $ID --size 128M "$W/disk.img" >"$W/out.log" 2>"$W/err.log" &
PID=$!
await_serving "$W/out.log"
grep -q "user recovery with reissue" "$W/err.log" || fail "the start did not say that the device has user recovery: $(cat "$W/err.log")"
[ -f "$STATE" ] || fail "no state file $STATE"
grep -q "^origin.files=$W/disk.img" "$STATE" || fail "the state file does not name the image: $(cat "$STATE")"
grep -q "^pid=$PID" "$STATE" || fail "the state file does not name the server's pid $PID: $(cat "$STATE")"
step "serving $DEV with user recovery, state in $STATE"
mkfs.ext4 -q "$DEV" || fail "mkfs.ext4"
mount "$DEV" "$MNT" || fail "mount"
for n in 1 2 3 4; do
    dd if=/dev/urandom of="$MNT/durable$n" bs=64k count=$((n * 8)) conv=fsync 2>/dev/null || fail "writing durable$n"
done
sync -f "$MNT"
(cd "$MNT" && sha256sum durable* >"$W/durable.sums")

one_line_error "recover of a live device" "is live, served by pid $PID: there is nothing to recover" "$J" ublk recover $ID
one_line_error "recover of a device that does not exist" "there is no ublk device 9 to recover" "$J" ublk recover 9
step "recovery refused: live device, no device"

for round in $(seq 1 "$ROUNDS"); do
    start_fio
    crash
    if [ $round = 1 ]; then
        "$J" ublk list >"$W/list.out" 2>"$W/list.err" || fail "jloop ublk list: $(cat "$W/list.err")"
        grep -E "^$DEV +quiesced, no server +- +2x128 +io_uring +$W/disk.img" "$W/list.out" ||
            { cat "$W/list.out"; fail "jloop ublk list does not show $DEV quiesced, without a server"; }
        mv "$STATE" "$W/state.saved"
        one_line_error "recover without a state file" "has no state file $STATE" "$J" ublk recover $ID
        sed 's/^queues=2$/queues=1/' "$W/state.saved" >"$STATE"
        one_line_error "recover with a state file that does not match" "does not match its state file $STATE" "$J" ublk recover $ID
        mv "$W/state.saved" "$STATE"
        kill -0 "$FIO" 2>/dev/null || fail "fio ended while no server was attached"
        step "killed: $DEV quiesced in jloop ublk list; refused without a state file and with a mismatching one; fio waits"
    fi
    if [ "$round" = "$ROUNDS" ]; then
        recover --backend nio
        grep -q "backend nio" "$W/out.log" || fail "the recovery did not use --backend nio: $(cat "$W/out.log")"
    else
        recover
    fi
    step "recovery $round: fio finished, crc32c verified$([ "$round" = "$ROUNDS" ] && echo ', through another backend (nio)')"
done

grep -q "^pid=$PID" "$STATE" || fail "the state file does not name the recovered server's pid $PID"
(cd "$MNT" && sha256sum -c --quiet "$W/durable.sums") || fail "files fsynced before the first kill differ"
umount "$MNT" || fail "umount"
fsck.ext4 -fn "$DEV" >"$W/fsck.log" 2>&1 || { cat "$W/fsck.log"; fail "fsck.ext4 -fn after $ROUNDS recoveries"; }
dmesg | tail -n +$((dmesg_before + 1)) >"$W/dmesg.log"
grep -iE "ublkb$ID.*error|error.*ublkb$ID|I/O error, dev ublkb$ID" "$W/dmesg.log" && fail "the kernel logged I/O errors for ublkb$ID"
step "fsynced files intact, fsck clean, no I/O error for ublkb$ID in the kernel log"

# SIGTERM of a recovered server still deletes the device and its state file
kill -TERM "$PID"
wait "$PID"
rc=$?
PID=
[ $rc -eq 0 ] || fail "the recovered server exited with $rc after SIGTERM"
i=0
while [ -e "$DEV" ] || [ -e /dev/ublkc$ID ]; do
    i=$((i + 1))
    [ $i -lt 20 ] || fail "$DEV still present after SIGTERM"
    sleep 0.5
done
[ ! -e "$STATE" ] || fail "the state file outlived the device"
step "SIGTERM of a recovered server: device and state file gone"

# jloop ublk del of a quiesced device: the waiting I/O fails rather than hanging
"$J" serve --frontend ublk --backend sync --ublk-id $ID "$W/disk.img" >"$W/out.log" 2>"$W/err.log" &
PID=$!
await_serving "$W/out.log"
kill -KILL "$PID"
wait "$PID" 2>/dev/null
PID=
[ -b "$DEV" ] || fail "$DEV went away with its server"
dd if="$DEV" of=/dev/null bs=4k count=1 skip=1000 iflag=direct 2>"$W/dd.err" &
DD=$!
sleep 3
kill -0 $DD 2>/dev/null || fail "a read of the quiesced device did not wait: $(cat "$W/dd.err")"
"$J" ublk del $ID >"$W/del.out" 2>"$W/del.err" || fail "jloop ublk del $ID: $(cat "$W/del.err")"
i=0
while kill -0 $DD 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 60 ] || { kill -KILL $DD; fail "the read still waits 30 s after jloop ublk del"; }
    sleep 0.5
done
wait $DD && fail "the read waiting on the deleted device succeeded"
[ ! -e "$DEV" ] && [ ! -e /dev/ublkc$ID ] || fail "$DEV still present after jloop ublk del"
[ ! -e "$STATE" ] || fail "the state file outlived jloop ublk del"
step "jloop ublk del of a quiesced device: the waiting read failed ($(head -1 "$W/dd.err")), device and state file gone"
rm -rf "$W"
echo "ublk-recovery: PASS"
