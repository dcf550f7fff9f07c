"""Folder-per-class datasets: listing, the deterministic validation split, and decoding into arrays.

The split is by image *content*, not by file name: FER2013 holds exact duplicates, and a duplicate on both sides
of the split would leak validation faces into training. Each distinct content gets a key derived from its hash
and a seed; within each class the contents with the smallest keys form the validation split, so the split is
stratified, does not depend on file order or file system, and never separates two copies of one image.
A content filed under two different classes has no trustworthy label and is left out of both splits.

With a test fraction (`split_examples(..., test_fraction=...)`) a third part is carved first, the same way with
the same seed, and the validation split is then carved from the rest with the next seed. The test split is for
stating final figures only: nothing (early stopping, temperature, threshold, recipe) is chosen on it. With the
default fraction and seed (0.15, 2013) the test split is exactly the validation split of models trained without
one, such as the model shipped before 2026-11-30, so both can be scored on faces neither was trained on.

The data folder may be local or on any Beam file system (gs://): files are listed and read through
`trainer.files`, and sorted as paths, so a local folder yields the same examples in the same order as before.
"""

import dataclasses
import hashlib
import os
from collections import defaultdict
from pathlib import Path, PurePath

import numpy as np
from apache_beam.io.filesystems import FileSystems

from model.contract import CLASS_NAMES, INPUT_SHAPE, is_image_path
from model.align import crop_inputs
from model.faces import FaceFinder, decode_for_faces
from model.preprocess import preprocess_image
from trainer.files import is_folder, list_files, read_bytes

DEFAULT_VALIDATION_FRACTION: float = 0.15
DEFAULT_SPLIT_SEED: int = 2013
TRAIN: str = "train"
VALIDATION: str = "validation"
TEST: str = "test"
# Key in a model's trained_on naming the validation run whose choices a refit kept (trainer/refit.py): the model
# trained on that run's validation faces too.
REFIT_KEY: str = "refit_of"


@dataclasses.dataclass(frozen=True)
class Example:
    path: str
    label: int
    content_hash: str
    # The file's bytes, kept from hashing so decoding does not read the file again (one request per image on
    # gs://). Far smaller than the decoded float32 arrays the trainer holds anyway.
    content: bytes = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass
class Split:
    train: list[Example]
    validation: list[Example]
    conflicting: list[Example]  # same content under more than one class: excluded
    test: list[Example] = dataclasses.field(default_factory=list)  # empty unless a test fraction was asked for

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each part, as recorded in the model metadata."""
        def per_class(examples: list[Example]) -> dict[str, int]:
            return {name: sum(1 for e in examples if e.label == i) for i, name in enumerate(CLASS_NAMES)}

        parts = {TRAIN: per_class(self.train), VALIDATION: per_class(self.validation)}
        if self.test:
            parts[TEST] = per_class(self.test)
        return {**parts, "excluded_conflicting_labels": len(self.conflicting)}

    def part(self, name: str) -> list[Example]:
        """The examples of one part by name (TRAIN, VALIDATION or TEST)."""
        return {TRAIN: self.train, VALIDATION: self.validation, TEST: self.test}[name]


def list_examples(data_dir: str | os.PathLike, class_names: tuple[str, ...] = CLASS_NAMES) -> list[Example]:
    """All images under data_dir/<class>/ (recursively), sorted by path, with their content hashes."""
    data_dir = os.fspath(data_dir)
    if FileSystems.get_scheme(data_dir) is None:
        data_dir = str(PurePath(data_dir))  # recorded paths stay as pathlib wrote them ("./a/" -> "a")
    if not is_folder(data_dir):
        raise FileNotFoundError(f"data folder not found: {data_dir}")
    examples = []
    for label, name in enumerate(class_names):
        class_dir = FileSystems.join(data_dir, name)
        if not is_folder(class_dir):
            raise FileNotFoundError(f"class folder not found: {class_dir} (expected one folder per class: "
                                    f"{', '.join(class_names)})")
        for path in (p for p in list_files(class_dir) if is_image_path(p)):
            content = read_bytes(path)
            examples.append(Example(path, label, hashlib.sha256(content).hexdigest(), content))
    return examples


def split_examples(
    examples: list[Example],
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
    test_fraction: float = 0.0,
) -> Split:
    """Deterministic, stratified, duplicate-aware train/validation(/test) split (see module docstring).

    Fractions are of each class's distinct contents: the test split takes test_fraction of them (seed), the
    validation split validation_fraction of what is left (seed + 1); with test_fraction 0, validation_fraction of
    all (seed), as before test splits existed.
    """
    labels_of_content: dict[str, set[int]] = defaultdict(set)
    for example in examples:
        labels_of_content[example.content_hash].add(example.label)
    conflicting = [e for e in examples if len(labels_of_content[e.content_hash]) > 1]
    clean = [e for e in examples if len(labels_of_content[e.content_hash]) == 1]
    test_contents: set[str] = set()
    if test_fraction > 0:
        test_contents = _carve(clean, test_fraction, seed)
        clean = [e for e in clean if e.content_hash not in test_contents]
        seed += 1
    validation_contents = _carve(clean, validation_fraction, seed)
    return Split(
        train=[e for e in clean if e.content_hash not in validation_contents],
        validation=[e for e in clean if e.content_hash in validation_contents],
        conflicting=conflicting,
        test=[e for e in examples if e.content_hash in test_contents],
    )


def _carve(examples: list[Example], fraction: float, seed: int) -> set[str]:
    """The contents of `fraction` of each class's distinct contents, those with the smallest seeded keys."""
    def key(content_hash: str) -> str:
        return hashlib.sha256(f"{seed}:{content_hash}".encode()).hexdigest()

    carved: set[str] = set()
    for label in sorted({e.label for e in examples}):
        contents = sorted({e.content_hash for e in examples if e.label == label}, key=key)
        carved.update(contents[: round(len(contents) * fraction)])
    return carved


def first_per_class(examples: list[Example], limit: int) -> list[Example]:
    """At most `limit` examples of each label, in listing order (limit 0: all); for quick smoke runs."""
    if not limit:
        return examples
    return [e for label in sorted({e.label for e in examples})
            for e in [e for e in examples if e.label == label][:limit]]


def listing_digest(examples: list[Example]) -> str:
    """SHA-256 (hex) over the sorted content hashes of every listed face: which faces a data folder held, whatever
    its path or name; recorded in a model's metadata so a later run can tell whether it sees the same faces."""
    return hashlib.sha256("\n".join(sorted(e.content_hash for e in examples)).encode()).hexdigest()


def folder_name(data_dir: str) -> str:
    """The last part of a data folder's path as recorded in metadata (no machine-specific path): "train" for
    "../data/train/" and for "." run inside it."""
    if FileSystems.get_scheme(data_dir) is None:
        return Path(os.path.abspath(data_dir)).name
    return PurePath(data_dir.rstrip("/")).name


def merged_for_refit(split: Split) -> Split:
    """The split a refit (trainer/refit.py) trains on: training and validation faces together, no validation
    faces, the same test faces."""
    return dataclasses.replace(split, train=split.train + split.validation, validation=[])


def split_as_trained(examples: list[Example], trained_on: dict) -> Split:
    """The split a model's trainer carved, from the fraction, seed and per-class cap in its metadata's
    `trained_on`; examples: every face listed from the data folder (before any per-class cap).

    Raises ValueError when the examples are not the faces the model was trained on, so that a "validation" or
    "test" split of some other folder is never scored as if the model had not seen it: told by the recorded
    `data_digest` (see `listing_digest`) or, for models recorded before digests, by the recorded images per class
    in each part. Metadata that records neither is trusted."""
    recorded_digest = trained_on.get("data_digest")
    if recorded_digest is not None and listing_digest(examples) != recorded_digest:
        raise ValueError(f"these are not the faces the model was trained on (folder {trained_on.get('data_dir')!r}, "
                         "by content): its split cannot be carved from them; score every image instead")
    capped = first_per_class(examples, trained_on.get("max_images_per_class", 0))
    split = split_examples(capped, trained_on.get("validation_fraction", DEFAULT_VALIDATION_FRACTION),
                           trained_on.get("split_seed", DEFAULT_SPLIT_SEED), trained_on.get("test_fraction", 0.0))
    if trained_on.get(REFIT_KEY):
        split = merged_for_refit(split)
    recorded_counts = trained_on.get("split")
    if recorded_digest is None and recorded_counts and recorded_counts != split.counts():
        raise ValueError(f"these are not the faces the model was trained on (folder {trained_on.get('data_dir')!r}: "
                         "its split's counts differ): its split cannot be carved from them; score every image instead")
    return split


# Crops searched for faces per detector call when crops are aligned (one MTCNN call per batch of equal sizes).
ALIGN_BATCH: int = 256


def load_arrays(examples: list[Example], aligned_crops: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decode examples with the shared preprocessing: images float32 [n, 48, 48, 1] and int labels [n].

    aligned_crops False: each image taken whole (`model.preprocess.preprocess_image`); True: each crop's face
    found and aligned as the labelling job does it for a model trained this way (`model.align.crop_inputs`;
    about 2 ms a 48x48 crop on 2 cores). Raises ImageDecodeError for an image that cannot be decoded."""
    images = np.zeros((len(examples), *INPUT_SHAPE), np.float32)
    if aligned_crops:
        finder = FaceFinder()
        for start in range(0, len(examples), ALIGN_BATCH):
            batch = [decode_for_faces(e.content).image for e in examples[start:start + ALIGN_BATCH]]
            images[start:start + len(batch)] = crop_inputs(finder, batch, aligned_crops=True)
    else:
        for i, example in enumerate(examples):
            images[i] = preprocess_image(example.content)
    labels = np.array([e.label for e in examples], dtype=np.int64)
    return images, labels
