"""Benchmark: photos and face crops through the labelling job in each --faces mode, on the DirectRunner.

Workflow (every run a fresh `python -m pipeline.run` subprocess, one after another, never two at once):
1. Build temp folders: --photos JPEG photos per size in PHOTO_MEGAPIXELS (a blotchy scene with one shared
   FER2013 face pasted at a third of its height, like a portrait), and --crops shared FER2013 faces (48x48).
2. Label each photo folder in the default mode (largest) and the crops in each mode (largest, all, none); the
   crops and the smallest photos once more in the default mode with `--mirror-average off`, the price of the
   mirror pass (model.mirror).
3. Print a table: images/s inside the run (summary.json's images / wall_seconds), process seconds, faces found,
   peak RSS of the process tree; write the figures as JSON (--json).

    python -m bench.photos --photos 20 --crops 2000 --json photos.json      # part of `make bench`
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.measuring import face_sources, link, measure_and_report, run_measured
from model.contract import DEFAULT_MODEL_DIR

# Photo sizes measured, in megapixels (4:3), and their JPEG quality (a phone's is about this).
PHOTO_MEGAPIXELS: tuple[int, ...] = (1, 3, 6, 12)
ASPECT: tuple[int, int] = (4, 3)
PHOTO_QUALITY: int = 90
FACE_HEIGHT_SHARE: float = 1 / 3
DEFAULT_PHOTOS: int = 20
DEFAULT_CROPS: int = 2_000
SEED: int = 2026
CROP_MODES: tuple[str, ...] = ("largest", "all", "none")
NO_MIRROR: tuple[str, ...] = ("--mirror-average", "off")
COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("measurement", "run", 30, "s"), ("files", "files", 6, "d"), ("faces", "faces", 6, "d"),
    ("no face", "no_face", 7, "d"), ("img/s", "images_per_second", 8, ".1f"), ("inside s", "inside_seconds", 8, ".1f"),
    ("proc s", "process_seconds", 7, ".1f"), ("RSS MB", "peak_rss_tree_mb", 7, ".0f"))


def photo_size(megapixels: int) -> tuple[int, int]:
    unit = (megapixels * 1e6 / (ASPECT[0] * ASPECT[1])) ** 0.5
    return round(unit * ASPECT[0]), round(unit * ASPECT[1])


def make_photos(folder: Path, megapixels: int, count: int, faces: list[Path], rng: np.random.Generator) -> Path:
    """count JPEG portraits of the given size, each with one shared face pasted somewhere."""
    folder.mkdir(parents=True)
    width, height = photo_size(megapixels)
    for i in range(count):
        coarse = rng.integers(30, 230, (6, 8, 3), dtype=np.uint8)
        photo = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BILINEAR)
        side = round(height * FACE_HEIGHT_SHARE)
        face = Image.open(faces[i % len(faces)]).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        photo.paste(face, (int(rng.integers(0, width - side)), int(rng.integers(0, height - side))))
        photo.save(folder / f"photo_{i:04d}.jpg", quality=PHOTO_QUALITY)
    return folder


def label(name: str, folder: Path, mode: str, work: Path, model: str, *flags: str) -> dict:
    output = work / f"out-{name}"
    result = run_measured(name, [sys.executable, "-m", "pipeline.run", "--input", str(folder), "--output",
                                 str(output), "--model", model, "--faces", mode, *flags], work / "logs")
    summary = json.loads((output / "summary.json").read_text())
    inside = summary["wall_seconds"]
    return {**result, "run": name, "files": summary["images_matched"], "faces": summary["faces_labelled"],
            "no_face": summary["images_no_face"], "inside_seconds": inside,
            "images_per_second": summary["images_matched"] / inside}


def measure(args: argparse.Namespace, work: Path) -> list[dict]:
    faces, rng = face_sources(), np.random.default_rng(SEED)
    (work / "logs").mkdir(parents=True)
    crops = work / "crops"
    crops.mkdir()
    for i in range(args.crops):
        link(faces[i % len(faces)], crops / f"{i:06d}_{faces[i % len(faces)].name}")
    rows = [label(f"{mode} mode, {args.crops} crops", crops, mode, work, args.model) for mode in CROP_MODES]
    rows.append(label(f"largest, {args.crops} crops, no mirror", crops, "largest", work, args.model, *NO_MIRROR))
    for megapixels in PHOTO_MEGAPIXELS:
        folder = make_photos(work / f"photos{megapixels}", megapixels, args.photos, faces, rng)
        width, height = photo_size(megapixels)
        rows.append(label(f"largest, {megapixels} MP {width}x{height}", folder, "largest", work, args.model))
        if megapixels == PHOTO_MEGAPIXELS[0]:
            rows.append(label(f"largest, {megapixels} MP, no mirror", folder, "largest", work, args.model,
                              *NO_MIRROR))
    return rows


def format_table(rows: list[dict]) -> str:
    header = " ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, _, w, _) in enumerate(COLUMNS))
    lines = ["facelabel photo benchmark: pipeline.run in-process per --faces mode", header, "-" * len(header)]
    for row in rows:
        cells = [row["run"][:COLUMNS[0][2]].ljust(COLUMNS[0][2])]
        cells += [format(row[key], fmt).rjust(width) for _, key, width, fmt in COLUMNS[1:]]
        lines.append(" ".join(cells))
    return "\n".join(lines + ["img/s = files / summary.json wall_seconds (the run without interpreter start); "
                              "proc s includes it"])


def main(argv: list[str] | None = None) -> int:
    parser = console.OneLineParser(
        prog="python -m bench.photos",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--photos", type=int, default=DEFAULT_PHOTOS, help="photos per size (default %(default)s)")
    parser.add_argument("--crops", type=int, default=DEFAULT_CROPS, help="FER2013 crops (default %(default)s)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="SavedModel folder (default: shipped)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    return measure_and_report(measure, parser.parse_args(argv), "facelabel-bench-photos-", format_table)


if __name__ == "__main__":
    sys.exit(main())
