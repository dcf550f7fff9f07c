"""Scale benchmark: peak memory and time of the labelling job as the number of images grows.

Workflow (every point is a fresh subprocess, run one after another; peak RSS of its process tree is polled from
/proc, as in `bench.bench`):
1. start-up: `python -m pipeline.run` on a folder of one face: the fixed cost of a run (imports, model check and
   load, runner start, promotion), whole process, and its own split from the log-free timers.
2. real points (--real): `python -m pipeline.run --faces none` end to end on folders of the shared faces (face
   crops), hard-linked under distinct names (cheap at any count).
3. synthetic points (--synthetic): rows of the real format (gs:// paths, about 121 bytes a line, 1% errors, in
   shuffled order) generated inside the job and sent through `WriteOutputs` alone, on the DirectRunner
   in-process: the output step at sizes whose labelling would take hours here.
4. A table, and the growth per million images between the smallest and the largest synthetic point (and a
   least-squares slope over all of them), for memory and time; --json writes the figures.

    python -m bench.scale --real 10000 --synthetic 100000,500000,1000000,2000000 --json scale-results.json

Run it against another checkout's WriteOutputs (e.g. the one before sharding) with PYTHONPATH=<that checkout>:
the worker imports `pipeline.write_outputs.WriteOutputs`, or `pipeline.transforms.WriteOutputs` where it lived.
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

from bench.bench import IN_PROCESS_FLAGS
from bench.measuring import RESULT_PREFIX, face_sources, link, measure_and_report, run_measured

# The real points label face crops: whole images, no face finding (as `bench.bench`'s pipeline runs).
PIPELINE_FLAGS: tuple[str, ...] = ("--faces", "none")

DEFAULT_SYNTHETIC: tuple[int, ...] = (100_000, 500_000, 1_000_000, 2_000_000)
DEFAULT_REAL: tuple[int, ...] = (10_000,)
# Synthetic rows are generated in chunks of this many per element, so the generator itself holds one chunk.
CHUNK_ROWS: int = 10_000
ERROR_EVERY: int = 100            # one synthetic image in 100 fails
MILLION: float = 1e6
SEED: int = 2026
MODEL_VERSION: str = "facelabel-cnn-20261128-fd8c336f"
CLASS_NAMES: tuple[str, ...] = ("happy", "sad")


# ---------------------------------------------------------------- worker: synthetic rows through WriteOutputs

def synthetic_path(number: int) -> str:
    """A gs:// path of the real shape; numbers are permuted so rows arrive unsorted."""
    scrambled = (number * 2_654_435_761 + 12_345) % (1 << 32)
    return f"gs://facelabel/2026-11-30/c{scrambled % 97:02d}/{scrambled:010d}.jpg"  # unique: an odd multiplier


def chunk_rows(chunk: int, rows: int) -> list:
    """(kind, row) for the rows of one chunk: LabelRows, and an ErrorRow for every ERROR_EVERY-th image."""
    from pipeline.rows import ErrorRow, LabelRow
    rng = random.Random(SEED + chunk)
    out = []
    for number in range(chunk * CHUNK_ROWS, min(rows, (chunk + 1) * CHUNK_ROWS)):
        path = synthetic_path(number)
        if number % ERROR_EVERY == 0:
            out.append(("error", ErrorRow(path, "corrupt or truncated image: image file is truncated")))
            continue
        p_happy = round(rng.random(), 6)
        out.append(("label", LabelRow(path, CLASS_NAMES[p_happy < 0.3], (p_happy, round(1 - p_happy, 6)),
                                      MODEL_VERSION, rng.randrange(1_500, 9_000), f"{1_796_000_000 + number}.000000")))
    return out


def worker_synthetic(rows: int, output: Path) -> dict:
    """Generate `rows` images' rows inside a DirectRunner job and write them with WriteOutputs; time it."""
    started = time.perf_counter()
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    try:
        from pipeline.write_outputs import WriteOutputs
    except ImportError:  # a checkout from before WriteOutputs moved
        from pipeline.transforms import WriteOutputs
    imported = time.perf_counter()
    info = {"model_version": MODEL_VERSION, "started_unix": time.time()}
    chunks = (rows + CHUNK_ROWS - 1) // CHUNK_ROWS
    with beam.Pipeline(options=PipelineOptions(list(IN_PROCESS_FLAGS))) as pipeline:
        generated = (pipeline | "Chunks" >> beam.Create(list(range(chunks)))
                     | "Generate" >> beam.FlatMap(chunk_rows, rows))
        labels = generated | "Labels" >> beam.FlatMap(lambda kv: [kv[1]] if kv[0] == "label" else [])
        errors = generated | "Errors" >> beam.FlatMap(lambda kv: [kv[1]] if kv[0] == "error" else [])
        matched = generated | "Matched" >> beam.Map(lambda kv: kv[1].path)
        carried = pipeline | "Carried" >> beam.Create([])
        _ = ({"matched": matched, "labels": labels, "errors": errors, "carried": carried}
             | "WriteOutputs" >> WriteOutputs(str(output), CLASS_NAMES, info))
    finished = time.perf_counter()
    summary = json.loads((output / "summary.json").read_text())
    files = sorted(p.name for p in output.iterdir())
    assert summary["images_matched"] == rows == summary["images_labelled"] + summary["images_failed"], summary
    return {"rows": rows, "job_seconds": finished - imported, "import_seconds": imported - started,
            "files": len(files), "bytes": sum((output / name).stat().st_size for name in files)}


# ---------------------------------------------------------------- parent

def build_faces(folder: Path, count: int) -> Path:
    """count shared faces hard-linked into folder under distinct names."""
    sources = face_sources()
    folder.mkdir(parents=True)
    for i in range(count):
        link(sources[i % len(sources)], folder / f"{i:07d}_{sources[i % len(sources)].name}")
    return folder


def run_job(name: str, input_dir: Path, output: Path, logs: Path) -> dict:
    """`python -m pipeline.run` in-process on input_dir: process wall time, peak RSS, and summary figures."""
    measured = run_measured(name, [sys.executable, "-m", "pipeline.run", "--input", str(input_dir), "--output",
                                   str(output), *PIPELINE_FLAGS, *IN_PROCESS_FLAGS], logs)
    summary = json.loads((output / "summary.json").read_text())
    return {**measured, "rows": summary["images_matched"], "job_seconds": summary["wall_seconds"],
            "startup_seconds": measured["process_seconds"] - summary["wall_seconds"]}


def growth(points: list[dict], key: str) -> dict:
    """Growth of points[key] per million rows: between the end points, and the least-squares slope."""
    if len(points) < 2:
        return {}
    xs, ys = [p["rows"] / MILLION for p in points], [p[key] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    return {"end_points": (ys[-1] - ys[0]) / (xs[-1] - xs[0]), "least_squares": slope}


def measure(args: argparse.Namespace, work: Path) -> dict:
    logs = work / "logs"
    logs.mkdir()
    results: dict = {"real": [], "synthetic": []}
    one = build_faces(work / "faces-1", 1)
    results["startup"] = run_job("startup", one, work / "out-startup", logs)
    for count in args.real:
        results["real"].append({"kind": "real files", **run_job(f"real-{count}", build_faces(
            work / f"faces-{count}", count), work / f"out-real-{count}", logs)})
        shutil.rmtree(work / f"faces-{count}")
    for rows in args.synthetic:
        output = work / f"out-synthetic-{rows}"
        results["synthetic"].append({"kind": "synthetic rows", **run_measured(
            f"synthetic-{rows}", [sys.executable, "-m", "bench.scale", "--worker", "--rows", str(rows),
                                  "--output", str(output)], logs)})
        shutil.rmtree(output)
    points = sorted(results["synthetic"], key=lambda p: p["rows"])
    results["growth_per_million"] = {"peak_rss_mb": growth(points, "peak_rss_tree_mb"),
                                     "output_step_seconds": growth(points, "job_seconds")}
    return results


def format_table(results: dict) -> str:
    """One fixed-width table and the growth lines."""
    header = (f"{'point':<16} {'rows':>10} {'job s':>8} {'process s':>9} {'start-up s':>10} {'peak RSS MB':>11} "
              f"{'files':>5}")
    lines = [header, "-" * len(header)]
    start = results["startup"]
    lines.append(f"{'start-up (1)':<16} {start['rows']:>10,} {start['job_seconds']:>8.2f} "
                 f"{start['process_seconds']:>9.2f} {start['startup_seconds']:>10.2f} "
                 f"{start['peak_rss_tree_mb']:>11.0f} {'':>5}")
    for point in [*results["real"], *results["synthetic"]]:
        lines.append(f"{point['kind']:<16} {point['rows']:>10,} {point['job_seconds']:>8.2f} "
                     f"{point['process_seconds']:>9.2f} {point.get('startup_seconds', float('nan')):>10.2f} "
                     f"{point['peak_rss_tree_mb']:>11.0f} {point.get('files', ''):>5}")
    grown = results["growth_per_million"]
    if grown["peak_rss_mb"]:
        memory, seconds = grown["peak_rss_mb"], grown["output_step_seconds"]
        lines += ["-" * len(header),
                  f"synthetic, per million images: peak RSS +{memory['end_points']:.0f} MB between the end points "
                  f"({memory['least_squares']:.0f} MB least squares); output step +{seconds['end_points']:.1f} s "
                  f"({seconds['least_squares']:.1f} s least squares)"]
    lines.append("job s: summary wall time (real) or the pipeline's run (synthetic); start-up s = process s - job s")
    return "\n".join(lines)


def counts(text: str) -> list[int]:
    return sorted(int(value) for value in text.split(",") if value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = console.OneLineParser(
        prog="python -m bench.scale",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--synthetic", type=counts, default=list(DEFAULT_SYNTHETIC),
                        help="comma-separated row counts sent through WriteOutputs (default %(default)s)")
    parser.add_argument("--real", type=counts, default=list(DEFAULT_REAL),
                        help="comma-separated face counts labelled end to end (default %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker_synthetic(args.rows, args.output)), flush=True)
        return 0
    return measure_and_report(measure, args, "facelabel-scale-", format_table)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
