#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Live-migration test for the libdirtybatch-patched QEMU (userspace/qemu).

Runs the tiny payload (payload/payload.S) as the firmware of a small KVM
guest whose memory regions are not multiples of 64 pages:

  ram0..2    guest RAM made of three NUMA memdevs (memory-backend-ram)
             of 32776K, 16392K and 8200K (8194, 4098 and 2050 pages):
             three RAMBlocks whose sizes and guest-physical offsets are not
             multiples of 64 pages (pc-dimm would need 2 MiB multiples)
  pflash     1,966,080 bytes (480 pages; holds the payload, read-only)
  + QEMU's own pc.rom and isa-bios (32 pages each)

and live-migrates it over loopback TCP to a second QEMU started with
-incoming.  The payload keeps dirtying all guest RAM above 1 MiB.  When the migration has completed both QEMUs are paused;
every region is dumped on both sides with QMP pmemsave and compared
(SHA-256).  The destination is then resumed and must keep running the
payload (its pass counter at 0x9000 advances).

Modes (--mode, several allowed; each is one migration):
  off       patched QEMU with QEMU_DIRTYBATCH=off: upstream's code path
  fallback  patched QEMU, library without the module (QEMU_DIRTYBATCH=fallback)
  module    patched QEMU, library with /dev/kvm_dirtybatch (skipped without it)
  debian    /usr/bin/qemu-system-x86_64 (Debian's own 7.2 binary): stock,
            sync time from its migration_bitmap_sync_start/end trace
            points, clear ioctls not counted

Per mode it prints one line "RESULT mode=... key=value ..." with bitmap
sync time per round (mean/max, ms, without the first sync, which QEMU
does at setup), clear ioctls per round (inside the sync, and between
syncs), total migration time, downtime, number of syncs.
Exit status: 0 all passed, 1 a migration failed or memory differs,
4 nothing could run (no /dev/kvm).
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))

FLASH_SIZE = 1966080            # 480 pages
NODES_K = [32776, 16392, 8200]
PARAM_MAGIC = 0x59425244
PASS_COUNTER = 0x9000


def log(msg):
    print(f"# {msg}", flush=True)


class QMP:
    def __init__(self, path, timeout=120):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.f = self.s.makefile("rw")
        self.events = []
        self._read()                     # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise EOFError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError(f"QMP {name}: {r['error']}")
            return r.get("return")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def build_payload(work):
    obj = os.path.join(work, "payload.o")
    binf = os.path.join(work, "payload.bin")
    subprocess.check_call(["as", "--32", "-o", obj,
                           os.path.join(HERE, "payload", "payload.S")])
    subprocess.check_call(["ld", "-m", "elf_i386", "-e", "0xfffffff0",
                           "-Ttext", "0xffff0000", "--oformat", "binary",
                           "-o", binf, obj])
    with open(binf, "rb") as f:
        img = bytearray(f.read())
    assert len(img) == 0x10000, len(img)
    return img


def make_flash(work, img, regions, stride, delay):
    img = bytearray(img)
    assert struct.unpack_from("<I", img, 0)[0] == PARAM_MAGIC
    struct.pack_into("<III", img, 4, len(regions), stride, delay)
    for i, (base, size) in enumerate(regions):
        struct.pack_into("<QQ", img, 16 + 16 * i, base, size)
    path = os.path.join(work, "flash.img")
    with open(path, "wb") as f:
        f.write(bytes(FLASH_SIZE - len(img)))
        f.write(img)
    return path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_mode(args, mode, img, work):
    res = {"mode": mode}
    qemu = args.qemu
    env = dict(os.environ)
    if mode == "debian":
        qemu = args.debian_qemu
        env.pop("QEMU_DIRTYBATCH", None)
    else:
        env["QEMU_DIRTYBATCH"] = {"off": "off", "fallback": "fallback",
                                  "module": "on"}[mode]
    if mode == "module" and not os.path.exists("/dev/kvm_dirtybatch"):
        log(f"{mode}: SKIP (no /dev/kvm_dirtybatch)")
        res["skip"] = True
        return res
    if not os.path.exists(qemu):
        log(f"{mode}: SKIP (no {qemu})")
        res["skip"] = True
        return res

    d = os.path.join(work, mode)
    os.makedirs(d, exist_ok=True)
    ram_bytes = sum(NODES_K) * 1024
    regions = [(0x100000, ram_bytes - 0x100000)]
    flash = make_flash(d, img, regions, args.stride, args.delay)
    port = free_port()

    def cmdline(name, extra):
        c = [qemu, "-machine", "q35,accel=kvm", "-cpu", "host",
             "-m", f"{sum(NODES_K)}K",
             "-nodefaults", "-no-user-config", "-display", "none",
             "-smp", "1",
             "-drive", f"if=pflash,format=raw,readonly=on,file={flash}",
             "-serial", f"file:{d}/{name}.serial",
             "-qmp", f"unix:{d}/{name}.qmp,server=on,wait=off",
             "-D", f"{d}/{name}.trace"]
        for i, k in enumerate(NODES_K):
            c += ["-object", f"memory-backend-ram,id=ram{i},size={k}K",
                  "-numa", f"node,nodeid={i},memdev=ram{i}"]
        if name == "src":
            if mode == "debian":
                ev = ["migration_bitmap_sync_start", "migration_bitmap_sync_end"]
                c += ["-msg", "timestamp=on"]   # log lines get pid@sec.usec
            else:
                ev = ["migration_bitmap_sync_stats", "kvm_dirtybatch_init",
                      "kvm_dirtybatch_submit"]
            for e in ev:
                c += ["-trace", f"enable={e}"]
        return c + extra

    procs = []
    qs = []
    try:
        dst = subprocess.Popen(cmdline("dst", ["-S", "-incoming",
                                               f"tcp:127.0.0.1:{port}"]),
                               env=env, stdout=open(f"{d}/dst.out", "w"),
                               stderr=subprocess.STDOUT)
        procs.append(dst)
        src = subprocess.Popen(cmdline("src", []), env=env,
                               stdout=open(f"{d}/src.out", "w"),
                               stderr=subprocess.STDOUT)
        procs.append(src)
        qsrc = QMP(f"{d}/src.qmp")
        qdst = QMP(f"{d}/dst.qmp")
        qs = [qsrc, qdst]

        # Let the payload run a full pass first.
        t0 = time.time()
        while True:
            ser = open(f"{d}/src.serial").read() if os.path.exists(f"{d}/src.serial") else ""
            if ser.count(".") >= args.warmup_passes:
                break
            if time.time() - t0 > args.timeout / 4:
                raise RuntimeError(f"payload did not start (serial: {ser[:40]!r})")
            time.sleep(0.2)
        res["warmup_s"] = round(time.time() - t0, 2)

        caps = [{"capability": "events", "state": True}]
        if args.auto_converge:
            caps.append({"capability": "auto-converge", "state": True})
        qsrc.cmd("migrate-set-capabilities", capabilities=caps)
        qsrc.cmd("migrate-set-parameters", **{
            "max-bandwidth": args.bandwidth_mib << 20,
            "downtime-limit": args.downtime_limit})
        qsrc.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        t0 = time.time()
        while True:
            info = qsrc.cmd("query-migrate")
            st = info.get("status")
            if st in ("completed", "failed", "cancelled"):
                break
            if time.time() - t0 > args.timeout:
                qsrc.cmd("migrate_cancel")
                raise RuntimeError(f"migration did not finish in {args.timeout}s "
                                   f"(status {st}, ram {info.get('ram')})")
            time.sleep(0.2)
        if st != "completed":
            raise RuntimeError(f"migration {st}: {info.get('error-desc', '')}")
        # 7.2 sets "completed" a moment before it fills in total-time and
        # downtime: ask again until they are there.
        t1 = time.time()
        while not info.get("total-time") and time.time() - t1 < 10:
            time.sleep(0.1)
            info = qsrc.cmd("query-migrate")
        # wait for the destination to have loaded everything
        t1 = time.time()
        while qdst.cmd("query-migrate").get("status") not in ("completed", None):
            if time.time() - t1 > 60:
                raise RuntimeError("destination did not complete")
            time.sleep(0.1)
        res["total_ms"] = info.get("total-time")
        res["downtime_ms"] = info.get("downtime")
        res["setup_ms"] = info.get("setup-time")
        ram = info.get("ram", {})
        res["syncs"] = ram.get("dirty-sync-count")
        res["transferred_mib"] = round(ram.get("transferred", 0) / 2**20, 1)
        res["src_state"] = qsrc.cmd("query-status")["status"]
        res["dst_state"] = qdst.cmd("query-status")["status"]

        # Compare memory: both sides are paused now.
        dumps = [(0, 0xa0000)] + [(b, s) for (b, s) in regions]
        ok = True
        for i, (base, size) in enumerate(dumps):
            hs = []
            for side, q in (("src", qsrc), ("dst", qdst)):
                fn = f"{d}/{side}.mem{i}"
                q.cmd("pmemsave", val=base, size=size, filename=fn)
                with open(fn, "rb") as f:
                    data = f.read()
                if len(data) != size:
                    raise RuntimeError(f"{fn}: {len(data)} bytes, want {size}")
                hs.append(hashlib.sha256(data).hexdigest())
                os.unlink(fn)
            if hs[0] != hs[1]:
                ok = False
                log(f"{mode}: region {base:#x}+{size:#x} DIFFERS "
                    f"src {hs[0][:16]} dst {hs[1][:16]}")
        res["memory_match"] = ok

        def passes(q, side):
            fn = f"{d}/{side}.ctr"
            q.cmd("pmemsave", val=PASS_COUNTER, size=4, filename=fn)
            with open(fn, "rb") as f:
                return struct.unpack("<I", f.read())[0]
        p0 = passes(qdst, "dst")
        qdst.cmd("cont")
        t1 = time.time()
        p1 = p0
        while p1 == p0 and time.time() - t1 < args.timeout / 4:
            time.sleep(0.2)
            p1 = passes(qdst, "dst")
        res["dst_runs"] = p1 > p0
        res["passes_at_switchover"] = p0

        # trace: per-sync numbers
        syncs = []
        mode_line = None
        submits = 0
        starts = {}
        with open(f"{d}/src.trace", errors="replace") as f:
            for line in f:
                m = re.search(r"migration_bitmap_sync_stats sync (\d+) us (\d+) "
                              r"clear_ioctls_in_sync (\d+) "
                              r"clear_ioctls_since_last_sync (\d+)", line)
                if m:
                    syncs.append(tuple(int(x) for x in m.groups()))
                    continue
                m = re.search(r"kvm_dirtybatch_init mode (\S+) fallback_reason (-?\d+)", line)
                if m:
                    mode_line = m.group(1)
                    continue
                if "kvm_dirtybatch_submit" in line:
                    submits += 1
                    continue
                # Debian binary (log backend): "pid@sec.usec:event ..."
                m = re.match(r"\d+@(\d+\.\d+):migration_bitmap_sync_(start|end)", line)
                if m:
                    t = float(m.group(1))
                    if m.group(2) == "start":
                        starts["t"] = t
                    elif "t" in starts:
                        syncs.append((len(syncs) + 1,
                                      int((t - starts.pop("t")) * 1e6), -1, -1))
        res["lib_mode"] = mode_line or ("n/a" if mode == "debian" else "off")
        res["submits"] = submits
        rounds = syncs[1:] if len(syncs) > 1 else syncs
        res["_sync_us"] = [s[1] for s in rounds]
        res["_clears"] = [s[2] for s in rounds if s[2] >= 0]
        if rounds:
            us = [s[1] for s in rounds]
            res["sync_ms_mean"] = round(statistics.mean(us) / 1000, 3)
            res["sync_ms_median"] = round(statistics.median(us) / 1000, 3)
            res["sync_ms_max"] = round(max(us) / 1000, 3)
            if rounds[0][2] >= 0:
                res["clears_in_sync"] = round(statistics.mean(s[2] for s in rounds), 1)
                res["clears_between"] = round(statistics.mean(s[3] for s in rounds), 1)
        res["trace_syncs"] = len(syncs)
        res["pass"] = bool(ok and res["dst_runs"])
        return res
    finally:
        for q in qs:
            try:
                q.cmd("quit")
            except Exception:
                pass
            q.close()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qemu", default=os.path.join(
        "/var/cache/kvm-dirtybatch/qemu/build", "7.2", "build",
        "qemu-system-x86_64"))
    ap.add_argument("--debian-qemu", default="/usr/bin/qemu-system-x86_64")
    ap.add_argument("--mode", action="append",
                    choices=["off", "fallback", "module", "debian"])
    ap.add_argument("--stride", type=int, default=1, help="pages between stores")
    ap.add_argument("--delay", type=int, default=0,
                    help="pause loops after each store (dirty rate)")
    ap.add_argument("--warmup-passes", type=int, default=1)
    ap.add_argument("--bandwidth-mib", type=int, default=64,
                    help="migration max-bandwidth, MiB/s")
    ap.add_argument("--downtime-limit", type=int, default=300, help="ms")
    ap.add_argument("--auto-converge", action="store_true", default=True)
    ap.add_argument("--no-auto-converge", dest="auto_converge",
                    action="store_false")
    ap.add_argument("--repeat", type=int, default=1,
                    help="migrations per mode, interleaved (off fallback "
                    "module off fallback module ...); the summary pools them")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    modes = args.mode or ["off", "fallback", "module"]

    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        log("SKIP: no /dev/kvm")
        return 4
    work = tempfile.mkdtemp(prefix="dirtybatch-mig-")
    img = build_payload(work)
    results = []
    failed = False
    for mode in modes * args.repeat:
        log(f"{mode}: migrating ({args.qemu if mode != 'debian' else args.debian_qemu})")
        try:
            r = run_mode(args, mode, img, work)
        except Exception as e:          # report and go on with the next mode
            r = {"mode": mode, "pass": False, "error": str(e)}
        results.append(r)
        if r.get("skip"):
            continue
        if not r.get("pass"):
            failed = True
        print("RESULT " + " ".join(f"{k}={v}" for k, v in r.items()
                                   if not k.startswith("_")), flush=True)
    ran = [r for r in results if not r.get("skip") and "error" not in r]
    if ran:
        print(f"# summary: {args.repeat} migration(s) per mode, pooled; sync = "
              "migration_bitmap_sync incl. KVM_GET_DIRTY_LOG, all syncs but "
              "each migration's setup sync")
        print(f"# {'mode':9} {'clearing':9} {'sync ms':>24} {'clear ioctls':>13} "
              f"{'total ms':>9} {'downtime':>9} {'syncs':>5} {'memory':>7}")
        print(f"# {'':9} {'':9} {'median / mean / max':>24} {'per sync':>13} "
              f"{'mean':>9} {'ms, mean':>9} {'':>5} {'':>7}")
        for mode in modes:
            rs = [r for r in ran if r["mode"] == mode]
            if not rs:
                continue
            us = [u for r in rs for u in r["_sync_us"]]
            cl = [c for r in rs for c in r["_clears"]]
            sm = (f"{statistics.median(us) / 1000:.1f} / "
                  f"{statistics.mean(us) / 1000:.1f} / {max(us) / 1000:.1f}"
                  if us else "-")
            ci = f"{statistics.mean(cl):.1f}" if cl else "-"
            tot = statistics.mean(r.get("total_ms") or 0 for r in rs)
            dt = statistics.mean(r.get("downtime_ms") or 0 for r in rs)
            ns = sum(r.get("syncs") or 0 for r in rs)
            mem = "same" if all(r.get("memory_match") for r in rs) else "DIFFERS"
            print(f"# {mode:9} {rs[0].get('lib_mode', '-'):9} {sm:>24} {ci:>13} "
                  f"{tot:>9.0f} {dt:>9.0f} {ns:>5} {mem:>7}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.keep or failed:
        log(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    ran = [r for r in results if not r.get("skip")]
    if not ran:
        return 4
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
