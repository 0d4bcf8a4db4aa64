"""The machine the bench ran on: CPUs, memory, disk, versions, and what the disk charges per operation."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from .common import KB, REPO, version


def machine(work: Path) -> dict:
    def cpu_model():
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor()

    def mem_total():
        try:
            for line in open("/proc/meminfo"):
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) * KB
        except OSError:
            return None

    def disk():
        p = str(work.resolve())
        best = ("", "?", "?")
        try:
            for line in open("/proc/mounts"):
                dev, mnt, fs = line.split()[:3]
                if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(
                    best[1] if best[1] != "?" else ""
                ):
                    best = (dev, mnt, fs)
        except OSError:
            pass
        u = shutil.disk_usage(work)
        return {
            "path": p,
            "device": best[0],
            "mount": best[1],
            "fstype": best[2],
            "total_gb": round(u.total / 1e9, 1),
            "free_gb": round(u.free / 1e9, 1),
        }

    def git(*a):
        try:
            return (
                subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=5).stdout.strip() or None
            )
        except Exception:
            return None

    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "mem_gb": round((mem_total() or 0) / 1e9, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "disk": disk(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "versions": {
            d: version(d)
            for d in (
                "artifact_bus",
                "duckdb",
                "pyarrow",
                "deltalake",
                "pyiceberg",
                "sqlalchemy",
                "duckdb-extension-ducklake",
                "duckdb-extensions",
                "numpy",
            )
        },
    }


def disk_probe(work: Path, n: int = 200) -> dict:
    """What the disk charges for the operations the job protocol uses, in the work folder, now: creating
    an empty file, creating a folder, renaming, and fsyncing a small new file (median of n, in ms)."""
    d = work / "probe"
    d.mkdir()

    def med(fn):
        ts = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i)
            ts.append(time.perf_counter() - t0)
        return round(statistics.median(ts) * 1e3, 3)

    out = {
        "create_file_ms": med(lambda i: os.close(os.open(d / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))),
        "mkdir_ms": med(lambda i: os.mkdir(d / f"d{i}")),
        "rename_ms": med(lambda i: os.rename(d / f"f{i}", d / f"g{i}")),
    }

    def write_sync(i):
        fd = os.open(d / f"s{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)

    out["create_write_fsync_ms"] = med(write_sync)
    shutil.rmtree(d, ignore_errors=True)
    return out
