"""Benchmark: the labelling pipeline on Beam's DirectRunner against a plain-Python limit, same machine and images.

Workflow (one run; every measurement is a fresh subprocess, run one after another, never two at once):
1. Build a temp folder: the shared FER2013 faces (../shared/data/fer2013/train/{happy,sad}) hard-linked under
   distinct names (copied if linking fails) up to --images files, plus --large-photos generated 3000x2000 JPEGs;
   one such folder per count in --memory-points and --images.
2. micro: decode+preprocess alone (faces, large photos), model inference alone on a preloaded array, the served
   function's FLOPs per image, and achieved GFLOP/s against the CPU's theoretical peak.
3. Per count: the limit loop (read -> preprocess_image -> load_classifier'd SavedModel in batches), then
   `python -m pipeline.run --faces none` (the same work: no face finding) in-process and with multi_processing
   x2; where the model has an int8 copy (model/lite.py), the loop and the in-process run again with it
   (`--precision int8`); `bench.photos` measures the face-finding modes. Inside throughput comes from the worker's
   own timing (limit) or summary.json's images_labelled / wall_seconds (pipeline); process wall time includes
   interpreter start. Peak RSS of the process tree is polled from /proc every 0.1 s; wait4's ru_maxrss (the
   largest single reaped process) is the cross-check.
4. Print one fixed-width table, write the same figures as JSON (--json), delete the temp folder.

    python -m bench.bench --images 400 --large-photos 4 --memory-points 200,400 --model /tmp/model --json r.json

The module also starts the workers (bench/workers.py): `python -m bench.bench --worker limit|micro ...` prints one
BENCH_RESULT line.
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import argparse
import json
import os
import re
import resource
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.measuring import (FACE_CLASSES, MB, POLL_SECONDS, RESULT_PREFIX, SEED, face_sources, link,
                             measure_and_report, run_measured)
from bench.workers import BATCH_SIZE, has_int8_copy, worker_limit, worker_micro
from model.contract import DEFAULT_MODEL_DIR
from model.lite import PRECISION_FLOAT32, PRECISION_INT8, PRECISIONS

DEFAULT_IMAGES: int = 30_000
DEFAULT_LARGE_PHOTOS: int = 20
DEFAULT_MEMORY_POINT: int = 10_000
LARGE_PHOTO_SIZE: tuple[int, int] = (3000, 2000)
LARGE_PHOTO_QUALITY: int = 90
MULTI_PROCESS_FLAGS: tuple[str, ...] = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
IN_PROCESS_FLAGS: tuple[str, ...] = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
EXIT_USER_ERROR: int = 2


# ---------------------------------------------------------------- parent: images, processes, memory

def make_large_photos(folder: Path, count: int) -> list[Path]:
    """count photo-like 3000x2000 JPEGs: smooth random colour fields with mild noise."""
    folder.mkdir(parents=True)
    rng, (width, height), photos = np.random.default_rng(SEED), LARGE_PHOTO_SIZE, []
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB")
        pixels = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.int16)
        pixels = pixels + rng.integers(-12, 13, pixels.shape, dtype=np.int16)
        photos.append(folder / f"photo_{i:03d}.jpg")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(photos[-1], quality=LARGE_PHOTO_QUALITY)
    return photos


def build_image_set(folder: Path, sources: list[Path], count: int, photos: list[Path]) -> Path:
    """folder/faces/<class>/NNNNNN_<name> (count faces, sources cycled) + folder/large/ (the photos)."""
    for label in FACE_CLASSES:
        (folder / "faces" / label).mkdir(parents=True)
    (folder / "large").mkdir()
    for i in range(count):
        source = sources[i % len(sources)]
        link(source, folder / "faces" / source.parent.name / f"{i:06d}_{source.name}")
    for photo in photos:
        link(photo, folder / "large" / photo.name)
    return folder


def cpu_peak(flops_per_cycle: int | None) -> dict:
    """Theoretical FP32 peak from /proc/cpuinfo: cores x clock x FLOPs/cycle (the assumption is stated)."""
    info = Path("/proc/cpuinfo").read_text()
    field = {key: re.findall(rf"^{key}\s*:\s*(.*)$", info, re.M)
             for key in ("flags", "cpu MHz", "vendor_id", "cpu family", "model name")}
    flags = set(field["flags"][0].split()) if field["flags"] else set()
    mhz = max((float(v) for v in field["cpu MHz"]), default=0.0)
    cores = len(os.sched_getaffinity(0))
    amd_zen4 = "AuthenticAMD" in field["vendor_id"] and field["cpu family"][:1] == ["25"]
    if flops_per_cycle:
        assumption = f"{flops_per_cycle} FP32 FLOPs/cycle (given by --flops-per-cycle)"
    elif "avx512f" in flags and amd_zen4:
        flops_per_cycle, assumption = 32, "AMD family 25 with AVX-512 = Zen 4: 2 x 256-bit FMA pipes x 8 lanes x 2 = 32"
    elif "avx512f" in flags:
        flops_per_cycle, assumption = 64, "AVX-512: 2 FMA units x 16 FP32 lanes x 2 = 64"
    elif {"avx2", "fma"} <= flags:
        flops_per_cycle, assumption = 32, "AVX2+FMA: 2 FMA units x 8 FP32 lanes x 2 = 32"
    else:
        flops_per_cycle, assumption = 8, "SSE: 2 units x 4 FP32 lanes = 8"
    return {"model_name": (field["model name"] or ["?"])[0], "cores": cores, "mhz": mhz,
            "flops_per_cycle": flops_per_cycle, "assumption": assumption,
            "peak_gflops": cores * mhz * 1e6 * flops_per_cycle / 1e9}


# ---------------------------------------------------------------- the runs, the table, the JSON

def measure(args: argparse.Namespace, work: Path) -> dict:
    """Build the image sets, run every measurement one after another, and return all figures."""
    counts = sorted({c for c in args.memory_points if c <= args.images} | {args.images})
    sources, photos = face_sources(), make_large_photos(work / "photos", args.large_photos)
    sets = {count: build_image_set(work / f"set{count}", sources, count, photos) for count in counts}
    logs, python, model = work / "logs", sys.executable, str(args.model)
    logs.mkdir()
    worker = [python, "-m", "bench.bench", "--model", model, "--worker"]
    micro = run_measured("micro", [*worker, "micro", "--input", str(sets[args.images])], logs)
    flops = micro["flops_per_image"]["analytic"]
    runs = []
    for count in counts:
        files = count + len(photos)
        limit = run_measured(f"limit-{count}", [*worker, "limit", "--input", str(sets[count]),
                                                "--output", str(work / f"out-limit-{count}")], logs)
        first = len(runs)
        runs.append({"run": "limit loop", "files": files, **limit})
        pipeline_runs = [("pipeline in-process", "in-process", IN_PROCESS_FLAGS),
                         ("pipeline multi_proc x2", "multi", MULTI_PROCESS_FLAGS)]
        if has_int8_copy(model):  # the model's int8 copy (--precision int8), in the loop and in-process
            runs.append({"run": "limit loop int8", "files": files, "precision": PRECISION_INT8, **run_measured(
                f"limit-int8-{count}", [*worker, "limit", "--precision", PRECISION_INT8, "--input", str(sets[count]),
                                        "--output", str(work / f"out-limit-int8-{count}")], logs)})
            pipeline_runs.append(("pipeline in-process int8", "in-process-int8",
                                  (*IN_PROCESS_FLAGS, "--precision", PRECISION_INT8)))
        for label, name, flags in pipeline_runs:
            output = work / f"out-{name}-{count}"
            result = run_measured(f"{name}-{count}", [
                python, "-m", "pipeline.run", "--input", str(sets[count]), "--output", str(output),
                "--model", model, "--faces", "none", *flags], logs)
            summary = json.loads((output / "summary.json").read_text())
            inside = summary["wall_seconds"]
            runs.append({"run": label, "files": files, **result, "images_labelled": summary["images_labelled"],
                         "images_failed": summary["images_failed"], "inside_seconds": inside,
                         "images_per_second": summary["images_labelled"] / inside,
                         "precision": summary.get("precision", PRECISION_FLOAT32)})
        for run in runs[first + 1:]:
            run["startup_seconds"] = run["process_seconds"] - run["inside_seconds"]
            run["throughput_ratio"] = run["images_per_second"] / limit["images_per_second"]
            run["wall_ratio"] = run["process_seconds"] / limit["process_seconds"]
    peak = cpu_peak(args.flops_per_cycle)
    for row in [micro["inference"], *runs]:
        if row.get("precision", PRECISION_FLOAT32) == PRECISION_FLOAT32:  # against the FP32 peak: float runs only
            row["gflops"] = row["images_per_second"] * flops / 1e9
            row["fraction_of_peak"] = row["gflops"] / peak["peak_gflops"]
    return {"images": args.images, "large_photos": len(photos), "large_photo_size": LARGE_PHOTO_SIZE,
            "model": model, "counts": counts, "cpu": peak, "micro": micro, "runs": runs,
            "ru_maxrss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / MB}


COLUMNS: tuple[tuple[str, str, int, str], ...] = (  # (header, key, width, format)
    ("measurement", "run", 28, "s"), ("files", "files", 6, "d"), ("labelled", "images_labelled", 8, "d"),
    ("img/s", "images_per_second", 8, ".1f"), ("GFLOP/s", "gflops", 7, ".2f"), ("%peak", "fraction_of_peak", 6, ".1%"),
    ("inside s", "inside_seconds", 8, ".2f"), ("proc s", "process_seconds", 7, ".2f"),
    ("start s", "startup_seconds", 7, ".2f"), ("thru/lim", "throughput_ratio", 8, ".3f"),
    ("wall/lim", "wall_ratio", 8, ".2f"), ("RSS MB", "peak_rss_tree_mb", 6, ".0f"),
    ("maxrss", "ru_maxrss_mb", 6, ".0f"), ("procs", "max_processes", 5, "d"))


def format_row(row: dict) -> str:
    """One fixed-width table line; missing figures show as '-'."""
    cells = [str(row["run"])[:COLUMNS[0][2]].ljust(COLUMNS[0][2])]
    cells += [(format(row[key], fmt) if row.get(key) is not None else "-").rjust(width)
              for _, key, width, fmt in COLUMNS[1:]]
    return " ".join(cells)


def format_table(results: dict) -> str:
    """One fixed-width table: micro rows, then the limit and pipeline runs per count, then the notes."""
    micro, cpu, flops = results["micro"], results["cpu"], results["micro"]["flops_per_image"]
    size = "x".join(map(str, results["large_photo_size"]))
    rows = [{**micro["decode_faces"], "run": "decode+preprocess faces"},
            {**micro["decode_large"], "run": f"decode+preprocess {size}"},
            {**micro["inference"], "run": f"inference alone, batch {BATCH_SIZE}"}]
    if "inference_int8" in micro:
        rows.append({**micro["inference_int8"], "run": f"inference alone int8, {BATCH_SIZE}"})
    for row in rows:
        row["files"], row["inside_seconds"] = row.pop("images"), row["seconds"]
    for row in rows[2:]:
        row["files"] = None  # one preloaded batch, called repeatedly
    header = " ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, _, w, _) in enumerate(COLUMNS))
    lines = [f"facelabel benchmark: {results['images']} faces + {results['large_photos']} photos {size}, "
             f"model {micro['model_version']} ({results['model']})", header, "-" * len(header)]
    lines += [format_row(row) for row in rows]
    for row in results["runs"]:
        if row["run"] == "limit loop":
            lines.append(f"-- {row['files']} files ".ljust(len(header), "-"))
        lines.append(format_row(row))
    limit = [row for row in results["runs"] if row["run"] == "limit loop"][-1]
    return "\n".join(lines + [
        "-" * len(header),
        f"FLOPs/image (served function, mirror pass included where the model has one): {flops['analytic'] / 1e6:.2f} MFLOP "
        f"= 2 x conv+dense MACs (used above); tf profiler {flops['profiler'] / 1e6:.2f} MFLOP",
        f"CPU peak: {cpu['cores']} cores x {cpu['mhz']:.0f} MHz x {cpu['flops_per_cycle']} FLOP/cycle = "
        f"{cpu['peak_gflops']:.1f} GFLOP/s FP32 ({cpu['model_name']}; {cpu['assumption']})",
        f"limit n={limit['files']}: load_classifier {limit['load_seconds']:.2f} s; imports {limit['import_seconds']:.2f} "
        f"s (TensorFlow itself starts with the process); model ready {limit['model_ready_after_spawn_seconds']:.2f} s "
        "after spawn",
        "inside s: limit = its loop after the model load, pipeline = summary.json wall_seconds (pipeline "
        "construction to summary); start s = proc s - inside s",
        "thru/lim = img/s over the (float32) limit's, wall/lim = proc s over its (same files); int8 rows: the "
        "model's int8 copy (--precision int8), no FP32 GFLOP/s; RSS MB = peak summed VmRSS of "
        f"the process tree (polled every {POLL_SECONDS} s); maxrss = wait4 ru_maxrss (largest process)"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = console.OneLineParser(
        prog="python -m bench.bench",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="faces in the full set (default %(default)s)")
    parser.add_argument("--large-photos", type=int, default=DEFAULT_LARGE_PHOTOS, help="generated 3000x2000 JPEGs (default %(default)s)")
    parser.add_argument("--memory-points", type=lambda s: [int(v) for v in s.split(",") if v], default=None,
                        help=f"comma-separated face counts also measured (default {DEFAULT_MEMORY_POINT:,})")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="SavedModel folder (default: shipped)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--flops-per-cycle", type=int, default=None, help="override the per-core FP32 peak")
    parser.add_argument("--worker", choices=("limit", "micro"), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, default=PRECISION_FLOAT32, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_points is None:
        args.memory_points = [DEFAULT_MEMORY_POINT]
    if args.images < 1 or args.large_photos < 0:
        parser.error("--images must be >= 1 and --large-photos >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = (worker_limit(args.input, args.model, args.output, args.precision) if args.worker == "limit"
                  else worker_micro(args.input, args.model))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    if not Path(args.model, "saved_model.pb").is_file():
        print(f"error: no SavedModel at {args.model} (run make train, or pass --model)", file=sys.stderr)
        return EXIT_USER_ERROR
    return measure_and_report(measure, args, "facelabel-bench-", format_table)


if __name__ == "__main__":
    sys.exit(main())
