#!/bin/bash
# Boots a Debian 6.12 kernel (it has the nbd and ublk_drv modules the build machine's kernel may lack)
# under qemu once, and runs every scenario script in that one boot.
#
# usage: vm-run.sh [-o OUT_DIR] [-d DISK ...] JLOOP_HOME [SCENARIO.sh ...]
#   JLOOP_HOME  an unpacked distribution (bin/jloop, lib/), e.g. dist/target/jloop-VERSION/jloop-VERSION
#   SCENARIO    guest scripts to run; default: every *-scenario.sh next to this script
#   OUT_DIR     results (default: ./target/vm): console.log, qemu.pid, and per scenario NAME/rc, NAME/log,
#               NAME/work/ (NAME: the script's name without -scenario.sh or .sh)
#   DISK        a raw file attached as a virtio disk: /dev/vda, /dev/vdb, ... in the order given (after
#               `modprobe virtio_blk`). It outlives the guest: SIGKILL of qemu (its pid is in
#               OUT_DIR/qemu.pid) cuts the guest's power, and the file keeps what qemu had written.
#
# The guest's / is the host's / (read-only 9p) under a tmpfs overlay: it runs the host's JDK, tools and
# the distribution at their host paths, without network (loopback only). OUT_DIR is shared writable:
# each scenario gets OUT_DIR/NAME/work/ for what the host should check after the VM ends.
#
# exit: 0 every scenario passed; 1 a scenario failed (see NAME/rc and NAME/log); 2 the VM did not
# finish (see console.log); 77 a prerequisite is missing (qemu, kernel package) and cannot be installed.
#
# env: JLOOP_VM_CACHE  kernel + initramfs cache (default /var/cache/jloop-vm, else ~/.cache/jloop-vm)
#      KVER            kernel version, e.g. 6.12.117+deb12-amd64 (default: newest cached, else newest in apt)
#      VM_TIMEOUT      seconds for each boot of the VM (default 1500); SCENARIO_TIMEOUT per scenario (default 900)
#      SMP MEM         guest CPUs (default 2) and MiB (default 3072)
#      VM_ENV          extra "NAME=value ..." exported to the scenarios (e.g. "NBD_BACKENDS=nio")
set -euo pipefail
# depmod, nbd-client, mkfs.ext4 live in sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

here=$(cd "$(dirname "$0")" && pwd)
out=target/vm
drives=()
usage() { echo "usage: vm-run.sh [-o OUT_DIR] [-d DISK ...] JLOOP_HOME [SCENARIO.sh ...]" >&2; exit 64; }
while getopts o:d: opt; do
    case $opt in
        o) out=$OPTARG ;;
        d)
            [ -f "$OPTARG" ] || { echo "vm-run: disk $OPTARG is not a file" >&2; exit 64; }
            # writeback: qemu writes into the host's page cache, which outlives qemu; the guest's flushes
            # become fdatasync of the file. discard=unmap: the guest may punch holes in the file.
            drives+=(-drive "file=$(readlink -f "$OPTARG"),if=virtio,format=raw,cache=writeback,discard=unmap")
            ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
jloop_home=$(readlink -f "$1")
shift
[ -x "$jloop_home/bin/jloop" ] || { echo "vm-run: no bin/jloop under $jloop_home" >&2; exit 64; }
scenarios=()
if [ $# -gt 0 ]; then
    for s in "$@"; do scenarios+=("$(readlink -f "$s")"); done
else
    for s in "$here"/*-scenario.sh; do [ -e "$s" ] && scenarios+=("$s"); done
fi
[ ${#scenarios[@]} -gt 0 ] || { echo "vm-run: no *-scenario.sh in $here" >&2; exit 64; }

started=$(date +%s)
say() { printf '[vm-run %4ss] %s\n' $(($(date +%s) - started)) "$*" >&2; }
missing() { say "unavailable: $*"; exit 77; }

# 1. Host packages (Debian). Installed only when missing and only as root; otherwise say what is missing.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
busybox_static() { command -v busybox >/dev/null && ! ldd "$(command -v busybox)" >/dev/null 2>&1; }
busybox_static || need+=(busybox-static)
command -v depmod >/dev/null || need+=(kmod)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
command -v nbd-client >/dev/null || need+=(nbd-client)
command -v mkfs.ext4 >/dev/null && command -v debugfs >/dev/null || need+=(e2fsprogs)
command -v ss >/dev/null && command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        missing "packages ${need[*]} (install them as root: apt-get install ${need[*]})"
    fi
    say "installing ${need[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } >&2 ||
        missing "apt-get install ${need[*]} failed"
fi
busybox_static || missing "a statically linked busybox (busybox-static)"

# 2. The kernel package, downloaded and unpacked into the cache (never installed on the host).
if [ -z "${JLOOP_VM_CACHE:-}" ]; then
    if mkdir -p /var/cache/jloop-vm 2>/dev/null && [ -w /var/cache/jloop-vm ]; then
        JLOOP_VM_CACHE=/var/cache/jloop-vm
    else
        JLOOP_VM_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/jloop-vm
    fi
fi
cache=$JLOOP_VM_CACHE
mkdir -p "$cache"
# Several builds on one machine share the cache: one of them downloads and unpacks at a time.
exec 9>"$cache/.lock"
flock -w 900 9 || missing "lock on $cache/.lock"

# Bookworm's own 6.1 kernels have no ublk_drv; bookworm-security's 6.12 has ublk_drv, nbd, 9p and
# overlay as modules. The generic flavour: -cloud has no 9p. -unsigned: same files, fewer dependencies.
kernel_pattern='^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$'
newest_in_apt() { apt-cache search --names-only "$kernel_pattern" 2>/dev/null | awk '{print $1}' | sed 's/^linux-image-//; s/-unsigned$//' | sort -V | tail -1; }
if [ -z "${KVER:-}" ]; then
    KVER=$(ls -d "$cache"/kernel-6.12.*/boot 2>/dev/null | sed 's|.*/kernel-||; s|/boot$||' | sort -V | tail -1 || true)
fi
if [ -z "${KVER:-}" ]; then
    KVER=$(newest_in_apt)
    if [ -z "$KVER" ] && [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq >&2 || true
        KVER=$(newest_in_apt)
    fi
    [ -n "$KVER" ] || missing "no linux-image-6.12.*+deb12-amd64-unsigned in apt (add bookworm-security to the sources)"
fi
kroot=$cache/kernel-$KVER
if [ ! -f "$kroot/boot/vmlinuz-$KVER" ]; then
    say "downloading linux-image-$KVER-unsigned"
    rm -rf "$cache/debs" "$kroot"
    mkdir -p "$cache/debs"
    (cd "$cache/debs" && apt-get download -q "linux-image-$KVER-unsigned") >&2 || missing "apt-get download linux-image-$KVER-unsigned failed"
    dpkg -x "$cache"/debs/linux-image-"$KVER"-unsigned_*.deb "$kroot.partial"
    depmod -b "$kroot.partial" "$KVER"
    mv "$kroot.partial" "$kroot"
    rm -rf "$cache/debs"
fi
say "kernel $KVER in $kroot"

# 3. The initramfs: static busybox, the 9p and overlay modules, and an /init that mounts the host's /
# read-only with a tmpfs overlay, mounts OUT_DIR at /mnt/out and runs vm-guest.sh.
initramfs=$cache/initramfs-$KVER.cpio.gz
if [ ! -f "$initramfs" ] || [ "$0" -nt "$initramfs" ]; then
    ird=$(mktemp -d "$cache/initramfs.XXXXXX")
    mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lower,rw,mods}
    cp "$(command -v busybox)" "$ird/bin/busybox"
    for m in netfs 9pnet 9pnet_virtio 9p overlay; do
        f=$(find "$kroot/lib/modules/$KVER/kernel" -name "$m.ko*" | head -1)
        [ -n "$f" ] || missing "module $m in linux-image-$KVER"
        case $f in
            *.xz) xz -dc "$f" >"$ird/mods/$m.ko" ;;
            *) cp "$f" "$ird/mods/$m.ko" ;;
        esac
    done
    cat >"$ird/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in netfs 9pnet 9pnet_virtio 9p overlay; do insmod /mods/$m.ko || echo "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower || { echo "9p mount of / failed"; poweroff -f; }
mount -t tmpfs -o size=75% tmpfs /rw && mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || { echo "overlay mount failed"; poweroff -f; }
mount --move /proc /newroot/proc; mount --move /sys /newroot/sys; mount --move /dev /newroot/dev
mount -t tmpfs tmpfs /newroot/run; mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts; mount -t tmpfs tmpfs /newroot/dev/shm
mkdir -p /newroot/mnt/out && mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /newroot/mnt/out || { echo "9p mount of the out share failed"; poweroff -f; }
echo "[guest $(cut -d' ' -f1 /newroot/proc/uptime)s] root ready"
exec switch_root /newroot /bin/sh -c "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root; export PATH HOME; bash /mnt/out/vm-guest.sh; sync; exec /bin/busybox poweroff -f"
EOF
    chmod +x "$ird/init"
    (cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1 >"$initramfs.partial")
    mv "$initramfs.partial" "$initramfs"
    rm -rf "$ird"
fi
flock -u 9

# 4. Boot once; the guest runs every scenario (vm-guest.sh), each result lands in OUT_DIR/NAME/.
# OUT_DIR is emptied before each run, so it must be new, empty, or an earlier run's (it has the marker).
mkdir -p "$out"
out=$(readlink -f "$out")
if [ -n "$(ls -A "$out")" ] && [ ! -f "$out/.jloop-vm-out" ]; then
    echo "vm-run: $out is neither empty nor an earlier vm-run output; not emptying it" >&2
    exit 64
fi
find "$out" -mindepth 1 -delete
touch "$out/.jloop-vm-out"
cp "$here/vm-guest.sh" "$out/vm-guest.sh"
{
    printf 'JLOOP_HOME=%q\nKROOT=%q\nKVER=%q\nSCENARIO_TIMEOUT=%q\n' "$jloop_home" "$kroot" "$KVER" "${SCENARIO_TIMEOUT:-900}"
    printf 'SCENARIOS=%q\n' "${scenarios[*]}"
    for assignment in ${VM_ENV:-}; do printf 'export %q\n' "$assignment"; done
} >"$out/vm.env"
smp=${SMP:-2}
mem=${MEM:-3072}
say "booting qemu (tcg, $smp CPUs, ${mem} MiB, $((${#drives[@]} / 2)) disk(s)) for ${#scenarios[@]} scenario(s), console in $out/console.log"
# A guest kernel that dies before the first scenario starts is qemu's doing, not the scenarios': TCG
# now and then lets a vCPU run into the int3 of the kernel's own text patching while it boots ("Oops:
# int3"). Nothing of jloop's has run then, so that boot is tried again, three boots at most; the
# console of each one that died is kept beside console.log.
boots=1
while true; do
    set +e
    # qemu sometimes stays paused after a guest failure instead of exiting: timeout ends it.
    timeout -k 10 "${VM_TIMEOUT:-1500}" qemu-system-x86_64 -accel tcg,thread=multi,tb-size=512 -cpu max \
        -smp "$smp" -m "$mem" -nodefaults -no-user-config -display none -no-reboot -monitor none -nic none \
        -serial "file:$out/console.log" -pidfile "$out/qemu.pid" ${drives[@]+"${drives[@]}"} \
        -kernel "$kroot/boot/vmlinuz-$KVER" -initrd "$initramfs" \
        -append "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$out,mount_tag=out,security_model=none" \
        -device virtio-rng-pci </dev/null >"$out/qemu.log" 2>&1
    qemu_rc=$?
    set -e
    say "qemu exited with $qemu_rc"
    if [ -f "$out/done" ] || [ "$boots" -ge 3 ] || grep -q 'scenario .*: start' "$out/console.log" \
        || ! grep -qE 'Oops|Kernel panic' "$out/console.log"; then
        break
    fi
    say "the guest's kernel died before the first scenario (boot $boots, console in $out/console-$boots.log):"
    grep -m 2 -E 'Oops|Kernel panic' "$out/console.log" >&2 || true
    mv "$out/console.log" "$out/console-$boots.log"
    boots=$((boots + 1))
done
if [ ! -f "$out/done" ]; then
    say "the guest did not finish (qemu exit $qemu_rc, 124 = timeout); last console lines:"
    tail -n 40 "$out/console.log" "$out/qemu.log" >&2 || true
    exit 2
fi
failed=0
for s in "${scenarios[@]}"; do
    name=$(basename "$s" .sh)
    name=${name%-scenario}
    rc=$(cat "$out/$name/rc" 2>/dev/null || echo none)
    say "scenario $name: exit $rc"
    [ "$rc" = 0 ] || failed=1
done
exit $failed
