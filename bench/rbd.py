"""bench/run --rbd: jloop's rbd backend against qemu-nbd's rbd driver and fio's rbd engine.

One one-node Ceph cluster (the tests' own fixture, testkit's CephCluster: a mon and one BlueStore OSD
on a sparse file under bench/target/rbd), one image written in full first (reads of objects that
were never written cost the OSD nothing and would flatter everyone), then 4 KiB random reads and
writes at iodepth 1 and 32 through:

  jloop-rbd     jloop serve --backend rbd, fio --ioengine=nbd over a Unix socket
  qemu-nbd-rbd  qemu-nbd -f raw --cache=none -e 4 'rbd:POOL/IMAGE:conf=...', fio --ioengine=nbd (librbd's cache off)
  qemu-nbd-rbd-wb  the same with --cache=writeback (librbd's cache on, as jloop and fio's engine have it)
  fio-rbd       fio --ioengine=rbd on the image: librbd without NBD, the limit

Each target first gets an unmeasured warm-up of random writes with flushes (see warm_up). Writes bench/target/rbd-results.md and rbd-results.json; fio's JSON and the server logs go to
bench/target/raw/.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "target")
POOL = "rbd"
IMAGE = "bench"
WORKLOADS = [
    ("randread-4k-qd1", "randread", 1),
    ("randread-4k-qd32", "randread", 32),
    ("randwrite-4k-qd1", "randwrite", 1),
    ("randwrite-4k-qd32", "randwrite", 32),
]
TARGETS = ("jloop-rbd", "qemu-nbd-rbd", "qemu-nbd-rbd-wb", "fio-rbd")


def log(message):
    print("bench/run --rbd: " + message, file=sys.stderr, flush=True)


class RbdBench:
    def __init__(self, args, jloop_bin):
        self.args = args
        self.jloop = jloop_bin
        self.raw = os.path.join(OUT, "raw")
        self.dir = os.path.join(OUT, "rbd")
        self.sock = os.path.join(self.dir, "nbd.sock")
        self.cluster = None
        self.conf = None
        self.failures = []
        self.results = []

    def start_cluster(self):
        jars = glob.glob(os.path.join(ROOT, "testkit", "target", "jloop-testkit-*[0-9T].jar"))
        if not jars:
            raise SystemExit("testkit's jar is missing: build first (mvn package)")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.raw, exist_ok=True)
        log("starting a one-node Ceph cluster in " + self.dir)
        self.cluster = subprocess.Popen(["java", "-cp", jars[0], "dev.jloop.testkit.CephCluster", os.path.join(self.dir, "ceph")],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.cluster.stdout.readline().strip()
        if not line.startswith("ceph.conf "):
            raise SystemExit("the Ceph cluster did not start: " + line)
        self.conf = line[len("ceph.conf "):]
        size = f"{self.args.rbd_size}M"
        self.rbd("create", "--size", size, f"{POOL}/{IMAGE}")
        log(f"filling {POOL}/{IMAGE} ({size})")
        self.rbd("bench", "--io-type", "write", "--io-pattern", "seq", "--io-size", "4M", "--io-threads", "4",
                 "--io-total", size, f"{POOL}/{IMAGE}")

    def stop_cluster(self):
        if self.cluster is not None:
            self.cluster.stdin.close()
            try:
                self.cluster.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.cluster.kill()

    def rbd(self, *args):
        subprocess.run(["rbd", "-c", self.conf] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start_server(self, name, command):
        if os.path.exists(self.sock):
            os.remove(self.sock)
        log(f"{name}: starting: {' '.join(command)}")
        logfile = open(os.path.join(self.raw, name + ".server.log"), "w")
        process = subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(self.sock):
                return process
            if process.poll() is not None:
                break
            time.sleep(0.05)
        process.kill()
        self.failures.append(f"{name}: server did not start")
        return None

    @staticmethod
    def stop_server(process):
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def fio(self, name, workload, target_args):
        wname, rw, depth = workload
        fio_json = os.path.join(self.raw, f"{name}.{wname}.json")
        command = ["fio", "--name=" + wname, "--rw=" + rw, "--bs=4k", f"--iodepth={depth}", "--numjobs=1",
                   "--time_based", f"--runtime={self.args.runtime}", f"--ramp_time={self.args.ramp}", "--randrepeat=0",
                   "--norandommap", f"--size={self.args.rbd_size}M", "--lat_percentiles=1", "--output-format=json",
                   "--output=" + fio_json] + target_args
        log(f"{name}: {wname}")
        result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, CEPH_CONF=self.conf))
        row = {"target": name, "workload": wname, "iodepth": depth, "fio_command": " ".join(command)}
        if result.returncode != 0 or not os.path.exists(fio_json):
            self.failures.append(f"{name} {wname}: fio failed: " + " ".join((result.stdout + result.stderr).strip().splitlines()[-3:]))
            row["error"] = "fio failed"
            return row
        text = open(fio_json).read()
        job = json.loads(text[text.index("{"):])["jobs"][0]
        side = job["read"] if rw.endswith("read") else job["write"]
        lat = side.get("lat_ns", {}).get("percentile") or side.get("clat_ns", {}).get("percentile", {})
        row.update({"iops": side["iops"], "p50_us": lat.get("50.000000", 0) / 1000, "p99_us": lat.get("99.000000", 0) / 1000})
        return row

    def warm_up(self, name, target_args):
        """Unmeasured random writes with flushes, the same for every target: the JVM compiles jloop's data path,
        and librbd's cache leaves its writethrough mode, which lasts until the first flush
        (rbd_cache_writethrough_until_flush), as it would under any file system. fio's nbd engine sends no flush
        by itself, and its rbd engine would start with the cache already in writeback."""
        log(f"{name}: {self.args.warmup} s warm-up")
        subprocess.run(["fio", "--name=warmup", "--rw=randrw", "--bs=4k", "--iodepth=16", "--numjobs=1", "--time_based",
                        f"--runtime={max(1, self.args.warmup)}", "--fsync=64", f"--size={self.args.rbd_size}M",
                        "--output-format=terse"] + target_args,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, CEPH_CONF=self.conf))

    def run(self):
        started = time.time()
        self.start_cluster()
        try:
            image = f"{POOL}/{IMAGE}"
            nbd = ["--ioengine=nbd", f"--uri=nbd+unix:///?socket={self.sock}"]
            for target in TARGETS:
                if self.args.only and target not in self.args.only.split(","):
                    continue
                server = None
                if target == "jloop-rbd":
                    server = self.start_server(target, [self.jloop, "serve", "--backend", "rbd", "--ceph-conf", self.conf,
                                                        "--socket", self.sock, image])
                elif target.startswith("qemu-nbd-rbd"):
                    cache = "writeback" if target.endswith("-wb") else "none"
                    server = self.start_server(target, ["qemu-nbd", "-t", "-e", "4", "-f", "raw", "--cache=" + cache, "-k", self.sock,
                                                        f"rbd:{image}:conf={self.conf}"])
                if target != "fio-rbd" and server is None:
                    continue
                args = nbd if server is not None else ["--ioengine=rbd", "--clientname=admin", f"--pool={POOL}", f"--rbdname={IMAGE}"]
                try:
                    self.warm_up(target, args)
                    for workload in WORKLOADS:
                        self.results.append(self.fio(target, workload, args))
                finally:
                    self.stop_server(server)
        finally:
            self.stop_cluster()
        self.write(time.time() - started)
        return 1 if self.failures else 0

    def iops(self, target, workload):
        for row in self.results:
            if row["target"] == target and row["workload"] == workload and "iops" in row:
                return row["iops"]
        return None

    def write(self, elapsed):
        lines = ["# jloop rbd benchmark", "",
                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, a one-node Ceph cluster (one BlueStore OSD "
                 f"on a sparse file), a {self.args.rbd_size} MiB image written in full first; {self.args.runtime} s per job; "
                 f"{elapsed:.0f} s in all.", "",
                 "| workload | " + " | ".join(TARGETS) + " | jloop / qemu-nbd (none) | jloop / fio-rbd |",
                 "|---|" + "---:|" * (len(TARGETS) + 2)]
        for wname, _, _ in WORKLOADS:
            cells = []
            for target in TARGETS:
                value = self.iops(target, wname)
                cells.append("FAILED" if value is None else f"{value:,.0f}")
            jloop, qemu, fio = (self.iops(t, wname) for t in ("jloop-rbd", "qemu-nbd-rbd", "fio-rbd"))
            cells.append(f"{jloop / qemu:.2f}x" if jloop and qemu else "-")
            cells.append(f"{jloop / fio:.2f}x" if jloop and fio else "-")
            lines.append(f"| {wname} | " + " | ".join(cells) + " |")
        lines += ["", "IOPS; p50/p99 latencies and the fio commands are in rbd-results.json."]
        if self.failures:
            lines += ["", "Failures:", ""] + ["- " + f for f in self.failures]
        text = "\n".join(lines) + "\n"
        with open(os.path.join(OUT, "rbd-results.md"), "w") as f:
            f.write(text)
        with open(os.path.join(OUT, "rbd-results.json"), "w") as f:
            json.dump({"results": self.results, "failures": self.failures}, f, indent=1)
        print(text)


def main(args, jloop_bin):
    return RbdBench(args, jloop_bin).run()
