#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Live-migration test for the libdirtybatch-patched QEMUs (userspace/qemu).

Runs the tiny payload (payload/payload.S) as the firmware of a small KVM
guest shaped like the one of upstream's e8a6d158dbfa report: memory
regions that are not multiples of 64 pages, and two KVM listeners:

  ram0..2    guest RAM made of three NUMA memdevs (memory-backend-ram)
             of 32776K, 16392K and 8200K (8194, 4098 and 2050 pages):
             three RAMBlocks whose sizes and guest-physical offsets are not
             multiples of 64 pages (pc-dimm would need 2 MiB multiples)
  pflash     1,966,080 bytes (480 pages, OVMF's size; holds the payload,
             read-only)
  option ROM 64 KiB (16 pages), the ROM BAR of q35's AHCI controller
             (-global ich9-ahci.romfile=...)
  + QEMU's own pc.rom and isa-bios (128 KiB, 32 pages each; 9.0 and
    later alias isa-bios to the pflash instead of copying it)
  machine    q35, smm=on: KVM has the kvm-memory and kvm-smram listeners
             (--smm off for a KVM without SMM)

and live-migrates it over loopback TCP to a second QEMU started with
-incoming.  The payload keeps dirtying all guest RAM above 1 MiB.  When
the migration has completed both QEMUs are paused; all guest RAM is
dumped on both sides with QMP pmemsave and compared (SHA-256).  The
destination is then resumed and must keep running the payload (its
pass counter at 0x9000 advances).

Modes (--mode, several allowed; each is one migration per --repeat):
  TREE:SWITCH  QEMU built by build.sh in $QEMU_BUILD/TREE (7.2, 10.0,
               10.2, 10.2-nofix) run with
               off       QEMU_DIRTYBATCH=off: upstream's code path
               fallback  the library without the module
               module    the library with /dev/kvm_dirtybatch (the
                         shim, forced; skipped without it)
               native    the library with KVM's own KVM_CLEAR_DIRTY_LOG_BATCH
                         (a patched KVM, forced; skipped without it)
  off, fallback, module   short for 7.2:off, 7.2:fallback, 7.2:module
  debian    /usr/bin/qemu-system-x86_64 (Debian's own 7.2 binary): stock,
            sync time from its migration_bitmap_sync_start/end trace
            points, clear ioctls not counted

Per migration it prints one line "RESULT mode=... key=value ..."; at the
end a summary per mode over all its migrations: per sync (all syncs but
each migration's setup sync) the bitmap sync time and clear ioctls
(median and interquartile range), and, per migration (median and
min..max), KVM's TLB flushes (remote_tlb_flush_requests) and vCPU kicks
(remote_tlb_flush: flushes that had to kick a vCPU) per sync, clear
ioctls between syncs per GiB sent, total time, downtime and syncs.
Then, for the pairs that matter, the ratio of medians and whether the
difference is beyond noise (ranges do not overlap).
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
OPTION_ROM_SIZE = 65536         # 16 pages
QEMU_BUILD = os.environ.get("QEMU_BUILD", os.path.join(
    os.environ.get("QEMU_CACHE", "/var/cache/kvm-dirtybatch/qemu"), "build"))
ALIASES = {"off": "7.2:off", "fallback": "7.2:fallback", "module": "7.2:module"}
SWITCH_ENV = {"off": "off", "fallback": "fallback", "module": "on", "native": "on"}
# the library's backend, forced: on a patched KVM the shim mode must not
# silently take the native ioctl
BACKEND_ENV = {"module": "shim", "native": "native"}
TREE_LABEL = {"7.2": "7.2", "10.0": "10.0", "10.2": "10.2+fix",
              "10.2-nofix": "10.2"}
SWITCH_LABEL = {"off": "stock", "fallback": "lib fallback",
                "module": "lib + shim", "native": "lib + native"}


def have_native():
    """KVM reports KVM_CAP_CLEAR_DIRTY_LOG_BATCH (the library confirms it
    positively before use; this only decides whether to try)."""
    import fcntl
    try:
        with open("/dev/kvm", "rb", buffering=0) as f:
            return fcntl.ioctl(f, 0xAE03, 1000) > 0   # KVM_CHECK_EXTENSION
    except OSError:
        return False


def mode_label(mode):
    """'10.2:fallback' -> '10.2+fix lib fallback'; 10.2:off is the fix."""
    if mode == "debian":
        return "debian 7.2"
    tree, sw = mode.split(":")
    if tree == "10.2" and sw == "off":
        return "10.2+fix"
    return f"{TREE_LABEL.get(tree, tree)} {SWITCH_LABEL[sw]}"
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


def make_option_rom(work):
    """A 64 KiB PCI option ROM image (55 AA, 128 blocks of 512 bytes)."""
    rom = bytearray(OPTION_ROM_SIZE)
    rom[0:3] = bytes([0x55, 0xAA, OPTION_ROM_SIZE // 512])
    rom[3] = 0xCB                       # retf: an init entry doing nothing
    rom[-1] = (-sum(rom)) & 0xFF        # checksum
    path = os.path.join(work, "option.rom")
    with open(path, "wb") as f:
        f.write(rom)
    return path


def kvm_vm_stats(q):
    """KVM's VM statistics (QMP query-stats), name -> value."""
    out = {}
    for prov in q.cmd("query-stats", target="vm") or []:
        for st in prov.get("stats", []):
            if isinstance(st.get("value"), int):
                out[st["name"]] = st["value"]
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_mode(args, mode, img, work):
    res = {"mode": mode}
    env = dict(os.environ)
    sw = None
    if mode == "debian":
        qemu = args.debian_qemu
        env.pop("QEMU_DIRTYBATCH", None)
    else:
        tree, sw = mode.split(":")
        qemu = qemu_path(args, tree)
        env["QEMU_DIRTYBATCH"] = SWITCH_ENV[sw]
        env.pop("DIRTYBATCH_BACKEND", None)
        if sw in BACKEND_ENV:
            env["DIRTYBATCH_BACKEND"] = BACKEND_ENV[sw]
    if sw == "native" and not have_native():
        log(f"{mode}: SKIP (KVM has no KVM_CLEAR_DIRTY_LOG_BATCH)")
        res["skip"] = True
        return res
    if sw == "module" and not os.path.exists("/dev/kvm_dirtybatch"):
        log(f"{mode}: SKIP (no /dev/kvm_dirtybatch)")
        res["skip"] = True
        return res
    if not os.path.exists(qemu):
        log(f"{mode}: SKIP (no {qemu})")
        res["skip"] = True
        return res

    d = os.path.join(work, mode.replace(":", "-"))
    os.makedirs(d, exist_ok=True)
    rom = make_option_rom(d)
    ram_bytes = sum(NODES_K) * 1024
    regions = [(0x100000, ram_bytes - 0x100000)]
    flash = make_flash(d, img, regions, args.stride, args.delay)
    port = free_port()

    def cmdline(name, extra):
        c = [qemu, "-machine", f"q35,accel=kvm,smm={args.smm}", "-cpu", "host",
             "-m", f"{sum(NODES_K)}K",
             "-nodefaults", "-no-user-config", "-display", "none",
             "-smp", "1",
             "-drive", f"if=pflash,format=raw,readonly=on,file={flash}",
             "-global", f"ich9-ahci.romfile={rom}",
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
        if not getattr(args, "_ramblocks_logged", {}).get(qemu):
            args.__dict__.setdefault("_ramblocks_logged", {})[qemu] = True
            rb = qsrc.cmd("human-monitor-command", **{"command-line": "info ramblock"})
            for line in rb.strip().splitlines():
                log(f"{mode}: {line.rstrip()}")
        st0 = kvm_vm_stats(qsrc)
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
        st1 = kvm_vm_stats(qsrc)
        for k, name in (("tlb_flushes", "remote_tlb_flush_requests"),
                        ("vcpu_kicks", "remote_tlb_flush")):
            if name in st0 and name in st1:
                res[k] = st1[name] - st0[name]
        res["total_ms"] = info.get("total-time")
        res["downtime_ms"] = info.get("downtime")
        res["setup_ms"] = info.get("setup-time")
        ram = info.get("ram", {})
        res["syncs"] = ram.get("dirty-sync-count")
        res["transferred_mib"] = round(ram.get("transferred", 0) / 2**20, 1)
        res["_transferred"] = ram.get("transferred", 0)
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
        if rounds and rounds[0][3] >= 0 and res["_transferred"]:
            res["clears_between_per_gib"] = round(
                sum(s[3] for s in rounds) / (res["_transferred"] / 2**30), 1)
        if res.get("syncs") and "tlb_flushes" in res:
            res["tlb_flushes_per_sync"] = round(res["tlb_flushes"] / res["syncs"], 1)
            res["vcpu_kicks_per_sync"] = round(res["vcpu_kicks"] / res["syncs"], 1)
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
        # the library must have used the backend the mode names
        if sw in ("fallback", "module", "native") and res["lib_mode"] != sw:
            log(f"{mode}: FAIL: libdirtybatch ran in {res['lib_mode']} mode")
            res["pass"] = False
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


def qemu_path(args, tree):
    if tree == "7.2" and args.qemu:
        return args.qemu
    return os.path.join(args.qemu_build, tree, "build", "qemu-system-x86_64")


def parse_mode(m):
    m = ALIASES.get(m, m)
    if m == "debian":
        return m
    tree, _, sw = m.partition(":")
    if not tree or sw not in SWITCH_ENV:
        raise argparse.ArgumentTypeError(
            f"mode {m!r}: want TREE:off|fallback|module|native, off, fallback, "
            "module or debian")
    return m


def quartiles(xs):
    """(p25, median, p75) of a non-empty list."""
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def spread(xs, per_sync):
    """Median and spread: interquartile range for per-sync samples,
    min..max for per-migration ones.  Returns (lo, median, hi)."""
    if per_sync:
        return quartiles(xs)
    return min(xs), statistics.median(xs), max(xs)


def fmt(t, scale=1.0, digits=1):
    lo, med, hi = (x * scale for x in t)
    return f"{med:.{digits}f} [{lo:.{digits}f}..{hi:.{digits}f}]"


# Pairs whose difference the summary judges: (baseline, other)
PAIRS = [("10.2-nofix:off", "10.2:off"), ("10.2:off", "10.2:fallback"),
         ("10.2:off", "10.2:module"), ("10.2:fallback", "10.2:module"),
         ("10.2:off", "10.2:native"), ("10.2:module", "10.2:native"),
         ("10.0:off", "10.0:fallback"), ("10.0:off", "10.0:module"),
         ("10.0:fallback", "10.0:module"),
         ("7.2:off", "7.2:fallback"), ("7.2:off", "7.2:module"),
         ("10.0:off", "10.2:off"), ("10.2:off", "10.0:module")]


def summarize(modes, ran, repeat):
    print(f"# summary: {repeat} migration(s) per mode, interleaved, pooled. "
          "Per sync (all syncs but each migration's setup sync): median "
          "[interquartile range]; per migration: median [min..max]. "
          "sync = migration_bitmap_sync incl. KVM_GET_DIRTY_LOG.")
    cols = ["mode", "clearing", "sync ms", "clear ioctls/sync",
            "TLB flushes/sync", "vCPU kicks/sync", "clears/GiB between",
            "total ms", "downtime ms", "syncs", "memory"]
    print("# " + " | ".join(cols))
    table = {}
    for mode in modes:
        rs = [r for r in ran if r["mode"] == mode]
        if not rs:
            continue
        us = [u for r in rs for u in r["_sync_us"]]
        cl = [c for r in rs for c in r["_clears"]]
        row = {"us": spread(us, True) if us else None,
               "cl": spread(cl, True) if cl else None}
        for k in ("tlb_flushes_per_sync", "vcpu_kicks_per_sync",
                  "clears_between_per_gib", "total_ms", "downtime_ms", "syncs"):
            v = [r[k] for r in rs if r.get(k) is not None]
            row[k] = spread(v, False) if v else None
            row["n_" + k] = len(v)
        row["n_us"], row["n_cl"] = len(us), len(cl)
        row["mem"] = "same" if all(r.get("memory_match") for r in rs) else "DIFFERS"
        table[mode] = row
        cells = [mode_label(mode), rs[0].get("lib_mode", "-"),
                 fmt(row["us"], 1e-3) if row["us"] else "-",
                 fmt(row["cl"]) if row["cl"] else "-"]
        for k, d in (("tlb_flushes_per_sync", 1), ("vcpu_kicks_per_sync", 1),
                     ("clears_between_per_gib", 1), ("total_ms", 0),
                     ("downtime_ms", 0), ("syncs", 0)):
            cells.append(fmt(row[k], 1, d) if row[k] else "-")
        cells.append(f"{row['mem']} ({len(rs)})")
        print("# " + " | ".join(cells))
    print("# differences (ratio of medians other/baseline; 'beyond noise' "
          "when the ranges above do not overlap)")
    for a, b in PAIRS:
        if a not in table or b not in table:
            continue
        out = []
        for k, name in (("us", "sync time"), ("cl", "clear ioctls/sync"),
                        ("tlb_flushes_per_sync", "TLB flushes/sync"),
                        ("downtime_ms", "downtime"), ("total_ms", "total time")):
            x, y = table[a][k], table[b][k]
            if not x or not y:
                continue
            ratio = f"{y[1] / x[1]:.2f}x" if x[1] else "n/a"
            if min(table[a]["n_" + k], table[b]["n_" + k]) < 2:
                verdict = "one sample, no spread"
            elif x[2] < y[0] or y[2] < x[0]:
                verdict = "beyond noise"
            else:
                verdict = "within noise"
            out.append(f"{name} {ratio} ({verdict})")
        print(f"#   {mode_label(b)} vs {mode_label(a)}: " + "; ".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qemu", help="QEMU binary for the 7.2 modes "
                    "(default: the 7.2 tree of --qemu-build)")
    ap.add_argument("--qemu-build", default=QEMU_BUILD,
                    help="build.sh's trees (default %(default)s)")
    ap.add_argument("--debian-qemu", default="/usr/bin/qemu-system-x86_64")
    ap.add_argument("--mode", action="append", type=parse_mode,
                    help="TREE:off|fallback|module, off|fallback|module "
                    "(7.2), debian; several allowed")
    ap.add_argument("--smm", choices=["on", "off", "auto"], default="on",
                    help="q35 smm= (default on: two KVM listeners; a KVM "
                    "without SMM, like this host's, needs off)")
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
    modes = args.mode or ["7.2:off", "7.2:fallback", "7.2:module"]

    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        log("SKIP: no /dev/kvm")
        return 4
    work = tempfile.mkdtemp(prefix="dirtybatch-mig-")
    img = build_payload(work)
    results = []
    failed = False
    for mode in modes * args.repeat:
        q = args.debian_qemu if mode == "debian" else qemu_path(args, mode.split(":")[0])
        log(f"{mode}: migrating ({q})")
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
        summarize(modes, ran, args.repeat)
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
