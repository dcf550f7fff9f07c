"""Measure the memory one image costs while `model.preprocess.decode_image` decodes it, against the estimate
that the decode-memory guard checks (`model.image_formats.decode_memory_bytes`).

Each case is written to a temporary file, then decoded in a fresh Python process that resets its peak resident
memory (Linux: /proc/self/clear_refs) and reports the peak during decoding less the resident size before it:
what the image cost. Prints one table.

    .venv/bin/python -m bench.decode_memory [--megapixels 12] [--cases jpeg,progressive,...] [--colour]
    .venv/bin/python -m bench.decode_memory --near-limit   # each kind at the largest size the guard accepts
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from model.image_formats import MAX_DECODE_BYTES, decode_memory_bytes

MEGABYTE = 1024 * 1024
MEGAPIXEL = 1_000_000
ASPECT = (4, 3)
# --near-limit: sizes just under the guard's limit (this share of it), at most this many megapixels (baseline
# JPEGs decode at 1/8 scale, so any size fits; 100 MP shows it without a huge test file).
NEAR_LIMIT_SHARE = 0.97
MAX_NEAR_LIMIT_MEGAPIXELS = 100.0
NEAR_LIMIT_CASES = ("jpeg:rgb", "progressive444", "progressive", "png-rgba:rgb", "png-rgb", "tiff-float:rgb",
                    "webp", "avif")

CHILD = """
import json, sys
from model.preprocess import decode_image

def status(field):  # kB, from the kernel's own accounting of this process
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0])

data = open(sys.argv[1], "rb").read()
colour = sys.argv[2] == "rgb"
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
try:
    result = decode_image(data, colour=colour)
    outcome = f"{result.image.size[0]}x{result.image.size[1]}"
except Exception as err:
    outcome = str(err)[:60]
print(json.dumps({"kilobytes": status("VmHWM") - before, "outcome": outcome}))
"""


def photo(megapixels: float, mode: str = "RGB") -> Image.Image:
    """A photo-like image (smooth gradients plus noise, so codecs do real work) of about this many megapixels."""
    unit = (megapixels * MEGAPIXEL / (ASPECT[0] * ASPECT[1])) ** 0.5
    width, height = int(unit * ASPECT[0]), int(unit * ASPECT[1])
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    grey = (x * 0.5 + y * 0.5 + rng.normal(0, 8, (height, width)).astype(np.float32)).clip(0, 255)
    if mode == "F":
        return Image.fromarray(grey / 255.0, "F")
    base = Image.fromarray(grey.astype(np.uint8), "L")
    return base if mode == "L" else Image.merge("RGB", (base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                                        base)).convert(mode)


CASES = {
    "jpeg": lambda mp: (photo(mp), "JPEG", {"quality": 90}),
    "mpo": lambda mp: (photo(mp), "MPO", {"quality": 90, "save_all": True,
                                          "append_images": [Image.new("RGB", (1920, 1440))]}),
    "progressive": lambda mp: (photo(mp), "JPEG", {"quality": 90, "progressive": True}),
    "progressive444": lambda mp: (photo(mp), "JPEG", {"quality": 90, "progressive": True, "subsampling": 0}),
    "png-rgba": lambda mp: (photo(mp, "RGBA"), "PNG", {"compress_level": 1}),
    "png-rgb": lambda mp: (photo(mp), "PNG", {"compress_level": 1}),
    "tiff-float": lambda mp: (photo(mp, "F"), "TIFF", {}),
    "webp": lambda mp: (photo(mp), "WEBP", {"quality": 80}),
    "heif": lambda mp: (photo(mp), "HEIF", {"quality": 80}),
    "avif": lambda mp: (photo(mp), "AVIF", {"quality": 60, "speed": 10}),
}


def estimate_for(path: Path, colour: bool) -> int:
    """The guard's estimate for the file at path, as decode_image computes it."""
    opened = Image.open(path)
    full_size = opened.size
    if opened.format in ("JPEG", "MPO"):
        opened.draft("RGB" if colour else "L", (48, 48))
    return decode_memory_bytes(opened, full_size, colour)


def largest_accepted(case: str, colour: bool, folder: Path) -> float:
    """Megapixels of the largest image of this kind the guard accepts (its estimate is linear in pixels), at
    most MAX_NEAR_LIMIT_MEGAPIXELS."""
    estimates = []
    for megapixels in (1.0, 2.0):
        image, fmt, save_args = CASES[case](megapixels)
        image.save(folder / "probe.img", fmt, **save_args)
        estimates.append(estimate_for(folder / "probe.img", colour))
    per_megapixel = max(estimates[1] - estimates[0], 1)
    fits = (MAX_DECODE_BYTES - (estimates[0] - per_megapixel)) / per_megapixel
    return min(fits * NEAR_LIMIT_SHARE, MAX_NEAR_LIMIT_MEGAPIXELS)


def measure(case: str, megapixels: float, colour: bool, folder: Path) -> dict:
    image, fmt, save_args = CASES[case](megapixels)
    path = folder / f"{case}.img"
    image.save(path, fmt, **save_args)
    size = image.size
    del image
    estimate = estimate_for(path, colour)
    child = subprocess.run([sys.executable, "-c", CHILD, str(path), "rgb" if colour else "grey"],
                           capture_output=True, text=True, check=True)
    result = json.loads(child.stdout)
    return {"case": case, "size": f"{size[0]}x{size[1]}", "target": "RGB" if colour else "L",
            "measured_mb": result["kilobytes"] / 1024, "estimate_mb": estimate / MEGABYTE,
            "outcome": result["outcome"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--colour", action="store_true", help="decode to RGB (as the face detector does)")
    parser.add_argument("--near-limit", action="store_true",
                        help="each kind at the largest size the guard accepts (grey, or RGB where marked :rgb)")
    args = parser.parse_args(argv)
    print(f"limit (MAX_DECODE_BYTES): {MAX_DECODE_BYTES / MEGABYTE:.0f} MB")
    print(f"{'case':16} {'size':>11} {'to':>3} {'measured MB':>12} {'estimate MB':>12}  outcome")
    with tempfile.TemporaryDirectory() as folder:
        for spec in (NEAR_LIMIT_CASES if args.near_limit else args.cases.split(",")):
            case, _, target = spec.partition(":")
            colour = args.colour or target == "rgb"
            megapixels = largest_accepted(case, colour, Path(folder)) if args.near_limit else args.megapixels
            row = measure(case, megapixels, colour, Path(folder))
            print(f"{row['case']:16} {row['size']:>11} {row['target']:>3} {row['measured_mb']:12.1f} "
                  f"{row['estimate_mb']:12.1f}  {row['outcome']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
