"""Folder-per-class datasets: listing, the deterministic validation split, and decoding into arrays.

The split is by image *content*, not by file name: FER2013 holds exact duplicates, and a duplicate on both sides
of the split would leak validation faces into training. Each distinct content gets a key derived from its hash
and a seed; within each class the contents with the smallest keys form the validation split, so the split is
stratified, does not depend on file order or file system, and never separates two copies of one image.
A content filed under two different classes has no trustworthy label and is left out of both splits.
"""

import dataclasses
import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from model.contract import CLASS_NAMES, INPUT_SHAPE, is_image_path
from model.preprocess import preprocess_image

DEFAULT_VALIDATION_FRACTION: float = 0.15
DEFAULT_SPLIT_SEED: int = 2013
TRAIN: str = "train"
VALIDATION: str = "validation"


@dataclasses.dataclass(frozen=True)
class Example:
    path: str
    label: int
    content_hash: str


@dataclasses.dataclass
class Split:
    train: list[Example]
    validation: list[Example]
    conflicting: list[Example]  # same content under more than one class: excluded

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each part, as recorded in the model metadata."""
        def per_class(examples: list[Example]) -> dict[str, int]:
            return {name: sum(1 for e in examples if e.label == i) for i, name in enumerate(CLASS_NAMES)}

        return {TRAIN: per_class(self.train), VALIDATION: per_class(self.validation),
                "excluded_conflicting_labels": len(self.conflicting)}


def list_examples(data_dir: str | Path, class_names: tuple[str, ...] = CLASS_NAMES) -> list[Example]:
    """All images under data_dir/<class>/ (recursively), sorted by path, with their content hashes."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder not found: {data_dir}")
    examples = []
    for label, name in enumerate(class_names):
        class_dir = data_dir / name
        if not class_dir.is_dir():
            raise FileNotFoundError(f"class folder not found: {class_dir} (expected one folder per class: "
                                    f"{', '.join(class_names)})")
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and is_image_path(p.name)):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            examples.append(Example(str(path), label, digest))
    return examples


def split_examples(
    examples: list[Example],
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
) -> Split:
    """Deterministic, stratified, duplicate-aware train/validation split (see module docstring)."""
    labels_of_content: dict[str, set[int]] = defaultdict(set)
    for example in examples:
        labels_of_content[example.content_hash].add(example.label)
    conflicting = [e for e in examples if len(labels_of_content[e.content_hash]) > 1]

    def key(content_hash: str) -> str:
        return hashlib.sha256(f"{seed}:{content_hash}".encode()).hexdigest()

    validation_contents: set[str] = set()
    for label in sorted({e.label for e in examples}):
        contents = sorted({e.content_hash for e in examples
                           if e.label == label and len(labels_of_content[e.content_hash]) == 1}, key=key)
        validation_contents.update(contents[: round(len(contents) * validation_fraction)])
    clean = [e for e in examples if len(labels_of_content[e.content_hash]) == 1]
    return Split(
        train=[e for e in clean if e.content_hash not in validation_contents],
        validation=[e for e in clean if e.content_hash in validation_contents],
        conflicting=conflicting,
    )


def load_arrays(examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
    """Decode examples with the shared preprocessing: images float32 [n, 48, 48, 1] and int labels [n]."""
    images = np.zeros((len(examples), *INPUT_SHAPE), np.float32)
    for i, example in enumerate(examples):
        images[i] = preprocess_image(Path(example.path).read_bytes())
    labels = np.array([e.label for e in examples], dtype=np.int64)
    return images, labels
