"""The machine a model was trained on, and whether a new training reproduced a shipped model.

Seeded training with TensorFlow's op determinism gives the same weights bit for bit on the same processor, but not
across processors: oneDNN, TensorFlow's CPU kernel library, picks its kernels and their blocking by the processor's
instruction set and caches, so sums are added in another order and the rounding differs; over thousands of steps
the weights then part ways. Measured here (trainer/RESULTS.md, "make train on another processor"): one epoch of the
default recipe gives the same weights three times on one processor, other weights with oneDNN capped at AVX2
(`ONEDNN_MAX_CPU_ISA=AVX2`). So every model records the machine it was trained on, and `make train` says whether
its weights equal the shipped model's and, when they do not, whether the processor explains it.

    python -m trainer.machine NEW_MODEL_DIR SHIPPED_MODEL_DIR
"""

import argparse
import importlib.metadata
import json
import os
import re
import sys
from pathlib import Path

from model.metadata import METADATA_FILENAME, ModelMetadata

CPUINFO = Path("/proc/cpuinfo")
# The instruction-set extensions that decide which kernels oneDNN and Eigen run (Intel's and AMD's flag names as
# Linux prints them in /proc/cpuinfo).
KERNEL_FLAG_PATTERN = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|avx512.*|avx_vnni.*|amx.*)$")
LIBRARIES: tuple[str, ...] = ("tensorflow", "keras", "numpy")
MACHINE_KEY: str = "machine"  # under training_config in facelabel.json
TEST_METRICS_FILENAME: str = "test_metrics.json"  # a model's figures on its test split, beside facelabel.json
# What must match for a seeded training to be expected to give the same weights bit for bit.
SAME_ARITHMETIC_KEYS: tuple[str, ...] = ("processor", "kernel_flags", "cache", "cores", *LIBRARIES)


def describe(cpuinfo: Path = CPUINFO) -> dict:
    """What decides a training's arithmetic on this machine: processor (vendor, family, model, name), the
    instruction-set flags kernels dispatch on, cache size, usable cores and library versions. Values Linux does not
    report (another system) are "unknown"; never raises."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""

    def field(name: str) -> str:
        found = re.search(rf"^{name}\s*:\s*(.*)$", text, re.M)
        return found.group(1).strip() if found else "unknown"

    flags = field("flags").split()
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return {
        "processor": f"{field('vendor_id')} family {field('cpu family')} model {field('model')}: "
                     f"{field('model name')}",
        "kernel_flags": " ".join(sorted(flag for flag in flags if KERNEL_FLAG_PATTERN.match(flag))) or "unknown",
        "cache": field("cache size"),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        **versions,
    }


def differences(trained: dict, this: dict) -> list[str]:
    """The SAME_ARITHMETIC_KEYS on which two machine descriptions differ, as 'key: A -> B' lines."""
    return [f"{key}: {trained.get(key, 'not recorded')} -> {this.get(key, 'not recorded')}"
            for key in SAME_ARITHMETIC_KEYS if trained.get(key) != this.get(key)]


def compare(new_dir: str | Path, shipped_dir: str | Path) -> list[str]:
    """Lines saying whether the model in new_dir has the shipped model's weights (their model versions end in the
    weights' digest) and, if not, what differs: the data, the recipe or the machine. Raises FileNotFoundError or
    ValueError when either folder holds no readable facelabel.json."""
    for folder in (new_dir, shipped_dir):
        if not (Path(folder) / METADATA_FILENAME).is_file():
            raise FileNotFoundError(f"no model in {folder}: it has no {METADATA_FILENAME}")
    new, shipped = ModelMetadata.read(new_dir), ModelMetadata.read(shipped_dir)
    if new.model_version.rsplit("-", 1)[-1] == shipped.model_version.rsplit("-", 1)[-1]:
        return [f"reproduced: {new.model_version} has the same weights as {shipped.model_version}, bit for bit"]
    lines = [f"not reproduced: {new.model_version} has other weights than {shipped.model_version}"]
    if new.trained_on.get("data_digest") != shipped.trained_on.get("data_digest"):
        lines.append("  the training faces differ (data_digest): other data gives other weights")
    config, recorded = new.training_config, shipped.training_config
    recipe = [key for key in sorted((set(config) | set(recorded)) - {MACHINE_KEY, "train_seconds", "max_minutes"})
              if config.get(key) != recorded.get(key)]
    if recipe:
        lines.append(f"  the recipe differs: {', '.join(recipe)}")
    machine = differences(recorded.get(MACHINE_KEY, {}), config.get(MACHINE_KEY, {}))
    if MACHINE_KEY not in recorded:
        lines.append(f"  {shipped.model_version} does not record the machine it was trained on")
    elif machine:
        lines.append("  trained on another machine; bit-for-bit weights need the same processor and libraries:")
        lines.extend(f"    {line}" for line in machine)
    elif not recipe:
        lines.append("  same data, recipe and machine description: unexpected, please report it")
    for label, folder, version in (("new", new_dir, new.model_version), ("shipped", shipped_dir, shipped.model_version)):
        figures = test_figures(folder)
        if figures:
            lines.append(f"  {label} {version}, test split: {figures}")
    lines.append("  trainer/RESULTS.md gives the spread of the recipe's figures from run to run")
    return lines


def test_figures(model_dir: str | Path) -> str:
    """One line of a model's test-split figures from its test_metrics.json ('' when it has none or cannot be
    read): accuracy, ROC AUC, each class's recall and the expected calibration error (ECE)."""
    try:
        report = json.loads((Path(model_dir) / TEST_METRICS_FILENAME).read_text(encoding="utf-8"))
        recalls = ", ".join(f"{name} recall {values['recall']:.2%}" for name, values in report["per_class"].items())
        return (f"{report['images']} faces, accuracy {report['accuracy']:.2%}, ROC AUC {report['roc_auc']:.4f}, "
                f"{recalls}, ECE {report['ece']:.2%}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("new_model", help="folder of the model just trained")
    parser.add_argument("shipped_model", help="folder of the model to compare with (model/default)")
    args = parser.parse_args(argv)
    try:
        lines = compare(args.new_model, args.shipped_model)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
