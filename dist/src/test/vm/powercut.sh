#!/bin/bash
# Power-cut test: what jloop acknowledged as durable survives a real power cut of the machine it runs on.
#
# usage: powercut.sh [-o OUT_DIR] [-b BOOTS] JLOOP_HOME
#   JLOOP_HOME  an unpacked distribution (bin/jloop, lib/), e.g. dist/target/jloop-VERSION/jloop-VERSION
#   OUT_DIR     results (default: ./target/powercut)
#   BOOTS       boots of the VM (default 2, or POWERCUT_BOOTS); each boot is three cuts
#
# Each boot (vm-run.sh with powercut-guest.sh) gets three virtio disks: raw files here, each with an ext4
# file system made here. The guest serves each disk with `jloop serve` of the raw disk, through ublk or
# through the kernel's NBD client, one backend per disk, and runs a workload on each file system that
# writes new files and lists each one (with its SHA-256) only after its fsync returned. At a random
# moment after every workload is under way this script kills qemu-system-x86_64 with SIGKILL: the
# guest's page cache, jloop and the kernel's queues are gone, what qemu wrote to the disk files stays
# (the host's page cache outlives qemu). Then, here, for each disk (a "cut"):
#   - a copy of the disk gets its journal replayed (e2fsck -E journal_only), as the next mount would;
#   - e2fsck -fn finds it clean;
#   - every listed file is read out of it with debugfs and has exactly the listed SHA-256.
# Files written without a sync (listed apart) may be lost; how many were is reported. The boots
# alternate between two sets, so two boots cover each backend through both frontends:
#   odd boots:  ublk:sync  nbd:nio   ublk:io_uring      even boots: nbd:sync  ublk:nio  nbd:io_uring
# Before that, the checker checks itself on doctored copies of the first recovered disk: a listed file
# with one block overwritten, a listed file that does not exist, and an inode with a wrong link count
# must each make it fail.
#
# OUT_DIR holds boot-NN/ (vm-run.sh's output: console.log, powercut-guest/log, powercut-guest/work/ with
# the guest's lists and jloop's logs), per cut cut-NN-vdX/ with setup, log, rc, recovered.img (the
# disk after the journal replay) and recovered.img.sha256 (the files the guest made durable), and
# self-check/log and rc. A disk (cut-NN-vdX/disk.img) is kept only when its check failed.
#
# exit: 0 every cut passed; 1 a cut or the self-check failed; 2 a boot failed (the workloads never got
# under way, or the guest ended before the cut); 77 a prerequisite is missing (as vm-run.sh).
#
# env: POWERCUT_BOOTS       boots (default 2)
#      POWERCUT_CUT_WITHIN  the cut comes at a random moment up to this many seconds after every
#                           workload is under way (default 20)
#      POWERCUT_SEED        seeds the random choices (default: from the clock; printed, to repeat a run)
#      POWERCUT_DISK_SIZE   size of each disk (default 512M; sparse)
#      VM_TIMEOUT           seconds for each boot (default 900); VM_ENV, SMP, MEM as for vm-run.sh
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin

here=$(cd "$(dirname "$0")" && pwd)
out=target/powercut
boots=${POWERCUT_BOOTS:-2}
usage() { echo "usage: powercut.sh [-o OUT_DIR] [-b BOOTS] JLOOP_HOME" >&2; exit 64; }
while getopts o:b: opt; do
    case $opt in
        o) out=$OPTARG ;;
        b) boots=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
jloop_home=$(readlink -f "$1")
[ -x "$jloop_home/bin/jloop" ] || { echo "powercut: no bin/jloop under $jloop_home" >&2; exit 64; }
[[ $boots =~ ^[1-9][0-9]*$ ]] || usage

cut_within=${POWERCUT_CUT_WITHIN:-20}
seed=${POWERCUT_SEED:-$(($(date +%s%N) / 1000 % 32768))}
RANDOM=$seed
disk_size=${POWERCUT_DISK_SIZE:-512M}
sets=(ublk:sync,nbd:nio,ublk:io_uring nbd:sync,ublk:nio,nbd:io_uring)
letters=abcdefghijklmnop

started=$(date +%s)
say() { printf '[powercut %4ss] %s\n' $(($(date +%s) - started)) "$*" >&2; }

for tool in mkfs.ext4 e2fsck debugfs sha256sum; do
    command -v "$tool" >/dev/null || { say "unavailable: $tool (apt-get install e2fsprogs coreutils)"; exit 77; }
done

mkdir -p "$out"
out=$(readlink -f "$out")
if [ -n "$(ls -A "$out")" ] && [ ! -f "$out/.jloop-powercut-out" ]; then
    echo "powercut: $out is neither empty nor an earlier powercut.sh output; not emptying it" >&2
    exit 64
fi
find "$out" -mindepth 1 -delete
touch "$out/.jloop-powercut-out"

qemu_pid=
# ours: PID is the qemu that vm-run.sh started for this boot (other VMs may run on this machine)
ours()
{
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = qemu-system-x86 ] &&
        tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF "$boot_dir/qemu.pid"
}
# Should this script end early, the VM must not run on until its timeout.
stop_vm()
{
    if ours "$qemu_pid"; then
        kill -KILL "$qemu_pid" 2>/dev/null || true
    fi
}
trap stop_vm EXIT

# check_files IMAGE MANIFEST: reads every file of MANIFEST (sha256sum lines, paths from the file system's
# root) out of the ext4 IMAGE with debugfs; prints each one that is missing or differs; fails if any is.
check_files()
{
    local image=$1 manifest=$2 dir n=0 bad=0 sum path actual
    dir=$(mktemp -d "$(dirname "$image")/extracted.XXXXXX")
    awk -v dir="$dir" '{ printf "dump \"/%s\" \"%s/%d\"\n", $2, dir, NR }' "$manifest" >"$dir/commands"
    # One debugfs for all files: it reads the image itself, no mount and no loop device.
    if ! debugfs -f "$dir/commands" "$image" >"$dir/debugfs.log" 2>&1; then
        echo "debugfs $image failed:"
        cat "$dir/debugfs.log"
        rm -rf "$dir"
        return 1
    fi
    while read -r sum path; do
        n=$((n + 1))
        if [ ! -f "$dir/$n" ]; then
            echo "missing: $path"
            bad=$((bad + 1))
        else
            actual=$(sha256sum <"$dir/$n")
            if [ "${actual%% *}" != "$sum" ]; then
                echo "differs: $path ($(stat -c %s "$dir/$n") bytes, SHA-256 ${actual%% *}, listed $sum)"
                bad=$((bad + 1))
            fi
        fi
    done <"$manifest"
    rm -rf "$dir"
    [ "$bad" -eq 0 ]
}

# check_image IMAGE MANIFEST: e2fsck -fn finds IMAGE clean and every file of MANIFEST is intact in it.
check_image()
{
    local image=$1 manifest=$2 rc=0 fsck
    fsck=$(e2fsck -fn "$image" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "e2fsck -fn $image: exit $rc"
        echo "$fsck"
        return 1
    fi
    check_files "$image" "$manifest"
}

# Shows, on doctored copies of a good image, that check_image fails where it must.
self_check()
{
    local image=$1 manifest=$2 dir=$out/self-check first block report
    mkdir -p "$dir"
    first=$(head -n 1 "$manifest" | cut -c 67-)
    {
        echo "self-check on $image, with /$first"
        check_image "$image" "$manifest" >/dev/null || { echo "FAIL: the undoctored image does not pass"; return 1; }

        cp --sparse=always "$image" "$dir/doctored.img"
        block=$(debugfs -R "bmap /$first 0" "$dir/doctored.img" 2>/dev/null)
        [[ $block =~ ^[0-9]+$ ]] && [ "$block" -gt 0 ] || { echo "FAIL: no block for /$first: $block"; return 1; }
        dd if=/dev/urandom of="$dir/doctored.img" bs=4096 seek="$block" count=1 conv=notrunc status=none
        if report=$(check_image "$dir/doctored.img" "$manifest"); then
            echo "FAIL: a listed file with block $block overwritten passes"
            return 1
        fi
        [[ $report == *"differs: $first "* ]] || { echo "FAIL: the overwritten block is not reported as such:"; echo "$report"; return 1; }
        echo "ok: block $block of /$first overwritten: $report"

        cp "$manifest" "$dir/longer.sha256"
        echo "$(head -c 64 "$manifest")  d0/never-written" >>"$dir/longer.sha256"
        if report=$(check_image "$image" "$dir/longer.sha256"); then
            echo "FAIL: a listed file that does not exist passes"
            return 1
        fi
        [[ $report == *"missing: d0/never-written"* ]] || { echo "FAIL: the missing file is not reported as such:"; echo "$report"; return 1; }
        echo "ok: a listed file that does not exist: $report"

        cp --sparse=always "$image" "$dir/doctored.img"
        debugfs -w -R "set_inode_field /$first links_count 7" "$dir/doctored.img" >/dev/null 2>&1
        if report=$(check_image "$dir/doctored.img" "$manifest"); then
            echo "FAIL: an inode with a wrong link count passes"
            return 1
        fi
        [[ $report == *"e2fsck -fn"* ]] || { echo "FAIL: the wrong link count is not reported by e2fsck:"; echo "$report"; return 1; }
        echo "ok: /$first with a wrong link count: $(echo "$report" | grep -i 'count' | head -n 2 | tr '\n' ' ')"
        rm -f "$dir/doctored.img"
    } >"$dir/log" 2>&1
}

# check_cut BOOT_DIR CUT_DIR DISK: the disk after the cut against the guest's lists.
check_cut()
{
    local work=$1/powercut-guest/work cut=$2 disk=$3 rc=0 listed unsynced lost
    grep -E '^[0-9a-f]{64}  [^ ]+$' "$work/$disk.fsynced" >"$cut/recovered.img.sha256" || true
    grep -E '^[0-9a-f]{64}  [^ ]+$' "$work/$disk.unsynced" >"$cut/unsynced.sha256" || true
    listed=$(wc -l <"$cut/recovered.img.sha256")
    unsynced=$(wc -l <"$cut/unsynced.sha256")
    echo "$(cat "$cut/setup"): $listed files made durable and listed, $unsynced written without a sync"
    if [ -e "$work/$disk.failed" ]; then
        echo "the workload failed before the cut: $(cat "$work/$disk.failed")"
        return 1
    fi
    [ "$listed" -gt 0 ] || { echo "no file was listed"; return 1; }

    cp --sparse=always "$cut/disk.img" "$cut/recovered.img"
    # After a power cut the journal holds committed transactions not yet in place: replay them, as a
    # mount would, and nothing else; the full check comes after, read-only.
    e2fsck -E journal_only -y "$cut/recovered.img" >"$cut/replay.log" 2>&1 || rc=$?
    cat "$cut/replay.log"
    [ "$rc" -le 1 ] || { echo "e2fsck -E journal_only: exit $rc"; return 1; }
    check_image "$cut/recovered.img" "$cut/recovered.img.sha256" || return 1
    echo "e2fsck -fn clean; all $listed listed files intact"

    lost=0
    if [ "$unsynced" -gt 0 ]; then
        lost=$(check_files "$cut/recovered.img" "$cut/unsynced.sha256" | wc -l)
    fi
    echo "written without a sync: $lost of $unsynced lost or incomplete (allowed)"
}

failed=0
self_checked=
for boot in $(seq 1 "$boots"); do
    IFS=, read -r -a setups <<<"${sets[$(((boot - 1) % ${#sets[@]}))]}"
    nn=$(printf %02d "$boot")
    boot_dir=$out/boot-$nn
    cuts=() disks=() drives=()
    for i in "${!setups[@]}"; do
        disk=vd${letters:$i:1}
        cut=$out/cut-$nn-$disk
        mkdir -p "$cut"
        echo "${setups[$i]/:/ }, boot $boot, /dev/$disk" >"$cut/setup"
        truncate -s "$disk_size" "$cut/disk.img"
        mkfs.ext4 -q -F -b 4096 -L "$disk" "$cut/disk.img"
        cuts+=("$cut") disks+=("$disk") drives+=(-d "$cut/disk.img")
    done
    say "boot $boot: ${setups[*]} (seed $seed)"
    VM_TIMEOUT=${VM_TIMEOUT:-900} VM_ENV="${VM_ENV:-} POWERCUT_SETUPS=$(IFS=,; echo "${setups[*]}")" \
        bash "$here/vm-run.sh" -o "$boot_dir" "${drives[@]}" "$jloop_home" "$here/powercut-guest.sh" \
        >"$boot_dir.vm-run.log" 2>&1 &
    vm=$!
    running=$boot_dir/powercut-guest/work/running
    while [ ! -e "$running" ] && kill -0 "$vm" 2>/dev/null; do
        # read again each time: vm-run.sh boots again when the kernel dies while booting
        qemu_pid=$(cat "$boot_dir/qemu.pid" 2>/dev/null || true)
        sleep 0.5
    done
    if [ ! -e "$running" ]; then
        rc=0
        wait "$vm" || rc=$?
        [ "$rc" -ne 77 ] || { cat "$boot_dir.vm-run.log" >&2; exit 77; }
        say "boot $boot: FAIL: the VM ended (vm-run.sh exit $rc) before every workload was under way"
        tail -n 30 "$boot_dir/powercut-guest/log" "$boot_dir.vm-run.log" >&2 2>/dev/null || true
        for cut in "${cuts[@]}"; do
            echo "the VM of boot $boot ended before the cut; see $boot_dir" >"$cut/log"
            echo 2 >"$cut/rc"
        done
        failed=2
        qemu_pid=
        continue
    fi
    qemu_pid=$(cat "$boot_dir/qemu.pid")
    delay=$((RANDOM % (cut_within * 10)))
    say "boot $boot: every workload under way; cutting the power in $((delay / 10)).$((delay % 10)) s"
    sleep "$((delay / 10)).$((delay % 10))"
    if ! ours "$qemu_pid"; then
        say "boot $boot: FAIL: qemu (pid $qemu_pid) ended before the cut"
        tail -n 30 "$boot_dir/powercut-guest/log" >&2 || true
        for cut in "${cuts[@]}"; do
            echo "the guest of boot $boot ended before the cut; see $boot_dir/powercut-guest/log" >"$cut/log"
            echo 2 >"$cut/rc"
        done
        failed=2
        wait "$vm" || true
        qemu_pid=
        continue
    fi
    kill -KILL "$qemu_pid"
    wait "$vm" || true
    qemu_pid=
    say "boot $boot: power cut (SIGKILL of qemu, pid $(cat "$boot_dir/qemu.pid"))"

    for i in "${!cuts[@]}"; do
        cut=${cuts[$i]}
        rc=0
        check_cut "$boot_dir" "$cut" "${disks[$i]}" >"$cut/log" 2>&1 || rc=1
        echo "$rc" >"$cut/rc"
        if [ "$rc" -eq 0 ]; then
            say "cut $(basename "$cut"): ok: $(grep -m 1 'made durable' "$cut/log")"
            if [ -z "$self_checked" ]; then
                self_checked=yes
                if self_check "$cut/recovered.img" "$cut/recovered.img.sha256"; then
                    echo 0 >"$out/self-check/rc"
                    say "self-check: ok"
                else
                    echo 1 >"$out/self-check/rc"
                    say "self-check: FAIL"
                    cat "$out/self-check/log" >&2
                    [ "$failed" -ne 0 ] || failed=1
                fi
            fi
            rm -f "$cut/disk.img"
        else
            say "cut $(basename "$cut"): FAIL"
            cat "$cut/log" >&2
            [ "$failed" -ne 0 ] || failed=1
        fi
    done
done
say "done: $(cat "$out"/cut-*/rc | grep -c '^0$') of $(ls -d "$out"/cut-* | wc -l) cuts passed"
exit "$failed"
