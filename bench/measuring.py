"""Measuring a benchmark run: the shared faces it builds inputs from, and each measured process's wall time and
peak memory (the summed RSS of its whole process tree, polled from /proc, with wait4's ru_maxrss as the
cross-check); shared by `bench.bench`, `bench.photos` and `bench.scale`.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from model.contract import is_image_path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_FACES = PROJECT_ROOT.parent / "shared" / "data" / "fer2013" / "train"
FACE_CLASSES: tuple[str, ...] = ("happy", "sad")
SEED: int = 2013
POLL_SECONDS: float = 0.1
MB: float = 1024.0                # kB -> MB (VmRSS and ru_maxrss are in kB on Linux)
RESULT_PREFIX: str = "BENCH_RESULT "
T0_ENV: str = "FACELABEL_BENCH_T0"  # the parent's time.time() just before spawning the worker


def face_sources() -> list[Path]:
    """The shared faces of both classes in a fixed shuffled order (so any prefix mixes the classes)."""
    sources = [p for c in FACE_CLASSES for p in sorted((SHARED_FACES / c).iterdir()) if is_image_path(p.name)]
    if not sources:
        raise SystemExit(f"error: no faces found under {SHARED_FACES}")
    random.Random(SEED).shuffle(sources)
    return sources


def link(source: Path, target: Path) -> None:
    """Hard-link target to source (same bytes, distinct name); copy if the file system refuses."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def tree_rss_kb(root: int) -> tuple[int, int]:
    """(sum of VmRSS in kB, number of processes) over root and all its descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                ppid = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    total, todo, seen = 0, [root], 0
    while todo:
        pid = todo.pop()
        seen += 1
        todo.extend(children.get(pid, []))
        try:
            total += next((int(line.split()[1]) for line in open(f"/proc/{pid}/status")
                           if line.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total, seen


class RssPoller(threading.Thread):
    """Polls the process tree's summed RSS every POLL_SECONDS until stopped; keeps the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.max_processes, self.done = pid, 0, 0, threading.Event()

    def run(self) -> None:
        while True:
            rss, processes = tree_rss_kb(self.pid)
            self.peak_kb, self.max_processes = max(self.peak_kb, rss), max(self.max_processes, processes)
            if self.done.wait(POLL_SECONDS):
                return


def run_measured(name: str, command: list[str], log_dir: Path) -> dict:
    """Run command from the project root; its wall time, peak tree RSS, wait4 ru_maxrss, and BENCH_RESULT."""
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1", T0_ENV: repr(time.time())}
    print(f"running {name} ...", file=sys.stderr, flush=True)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err)
        poller = RssPoller(process.pid)
        poller.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        poller.done.set(), poller.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"{name} exited with {process.returncode}:\n" + "\n".join(tail))
    lines = [l for l in out_path.read_text().splitlines() if l.startswith(RESULT_PREFIX)]
    return {"process_seconds": wall, "peak_rss_tree_mb": poller.peak_kb / MB, "max_processes": poller.max_processes,
            "ru_maxrss_mb": usage.ru_maxrss / MB, **(json.loads(lines[-1][len(RESULT_PREFIX):]) if lines else {})}


def measure_and_report(measure, args: argparse.Namespace, prefix: str, table) -> int:
    """Run measure(args, work) in a fresh temp folder (always deleted), write its results as JSON to args.json
    if given, print table(results); the shared ending of the benchmarks' main()."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        results = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0
