#!/bin/bash
# Runs inside the guest booted by vm-run.sh, after the root switch: loads nothing itself but makes the
# unpacked kernel's modules reachable by plain `modprobe`, then runs every scenario in turn, each with
# a timeout, its output in /mnt/out/NAME/log and its exit code in /mnt/out/NAME/rc.
. /mnt/out/vm.env

uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "[guest $(uptime_s)s] $*"; }

# The kernel package is unpacked on the host, not installed: its modules live under KROOT.
mkdir -p "/lib/modules/$KVER" && mount --bind "$KROOT/lib/modules/$KVER" "/lib/modules/$KVER"
ip link set lo up
# Every jloop in the guest: C1 only (C2 compiles do not pay off on an emulated CPU) and no AVX code
# from the JIT: HotSpot crashed (SIGSEGV in compiled code) under qemu 7.2's TCG emulation of AVX.
export JLOOP_JAVA_OPTS=${JLOOP_JAVA_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:UseAVX=0}

for scenario in $SCENARIOS; do
    name=$(basename "$scenario" .sh)
    name=${name%-scenario}
    dir=/mnt/out/$name
    mkdir -p "$dir/work"
    say "scenario $name: start"
    start=$(date +%s)
    ( cd /tmp && exec timeout -k 20 "$SCENARIO_TIMEOUT" bash "$scenario" "$JLOOP_HOME" "$dir/work" ) </dev/null >"$dir/log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && echo "scenario timed out after $SCENARIO_TIMEOUT s" >>"$dir/log"
    echo $rc >"$dir/rc"
    say "scenario $name: exit $rc after $(($(date +%s) - start)) s"
done
sync
echo done >/mnt/out/done
