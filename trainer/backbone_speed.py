"""Cost of each network choice as served: parameters, SavedModel size and inference speed, without training.

Each network (the default CNN and every `--backbone`) is built with random weights (nothing is downloaded),
wrapped and exported exactly as the trainer exports it (mirror averaging on), loaded back through
`model.saved.load_classifier`, and timed on random 0..255 input through the serving signature: one warm-up
batch, then `--repeats` timed runs of `--batches` batches of `--batch-size` images; the median run gives
images/s. Accuracy is not measured here (that needs training).

    python -m trainer.backbone_speed [--networks none,mobilenetv3small] [--json FILE]
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from model.contract import INPUT_SHAPE
from model.metadata import ModelMetadata
from model.network import BACKBONE_CHOICES, BACKBONE_NONE, BACKBONES, build_network
from model.saved import load_classifier
from trainer.export import ServingModule, export_model


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = console.OneLineParser(
        prog="python -m trainer.backbone_speed",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--networks", default=",".join(BACKBONE_CHOICES),
                        help=f"comma-separated, from: {', '.join(BACKBONE_CHOICES)}")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=1, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.networks = [name.strip() for name in args.networks.split(",") if name.strip()]
    unknown = [name for name in args.networks if name not in BACKBONE_CHOICES]
    if unknown:
        parser.error(f"unknown network(s) {', '.join(unknown)}; choose from {', '.join(BACKBONE_CHOICES)}")
    return args


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def measure(name: str, batch_size: int, batches: int, repeats: int) -> dict:
    """Parameters, SavedModel size and median images/s of one network exported with random weights."""
    keras.utils.set_random_seed(0)
    network = build_network(backbone=name, weights=None)
    images = np.random.default_rng(0).uniform(0, 255, (batch_size, *INPUT_SHAPE)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="facelabel-speed-") as folder:
        export_model(ServingModule(network), ModelMetadata(model_version=f"speed-{name}"), folder)
        size = folder_bytes(Path(folder))
        classifier = load_classifier(folder)
        classifier(images)  # warm-up: first call traces and allocates
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(batches):
                classifier(images)
            seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return {
        "network": name,
        "input_size": BACKBONES[name].input_size if name != BACKBONE_NONE else INPUT_SHAPE[0],
        "parameters": int(network.count_params()),
        "saved_model_mb": round(size / 1e6, 1),
        "images_per_second": round(batch_size * batches / median, 1),
        "seconds_per_run": [round(s, 3) for s in seconds],
    }


def markdown_table(rows: list[dict]) -> str:
    baseline = next((row for row in rows if row["network"] == BACKBONE_NONE), None)
    lines = ["| network | input side | parameters | SavedModel | images/s (median of runs) | vs default |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        relative = (f"{row['images_per_second'] / baseline['images_per_second']:.2f}x"
                    if baseline and baseline["images_per_second"] else "")
        lines.append(f"| {row['network']} | {row['input_size']} | {row['parameters'] / 1e6:.2f} M | "
                     f"{row['saved_model_mb']:.1f} MB | {row['images_per_second']:,.0f} | {relative} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    for name in args.networks:
        rows.append(measure(name, args.batch_size, args.batches, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    print(markdown_table(rows))
    results = {"batch_size": args.batch_size, "batches_per_run": args.batches, "repeats": args.repeats,
               "cpu_count": os.cpu_count(), "load_average_before": round(load_before, 2),
               "load_average_after": round(os.getloadavg()[0], 2), "networks": rows}
    print(f"cpus {results['cpu_count']}, 1-minute load average {results['load_average_before']} before, "
          f"{results['load_average_after']} after")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
