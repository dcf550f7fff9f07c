"""Knowledge distillation: train a network on the blended answers of already trained models (its teachers).

Offline distillation (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015): each
happy/sad training face's target is a blend of its one-hot label and the teachers' mean calibrated probabilities
for it, computed once on the face as it is (each teacher served as exported: its own temperature and mirror
averaging). The student then learns how sure the teachers are about each face, not only which side it is on, so
a cheaper student can come closer to a better (or several averaged) teacher than training on labels alone. Faces
of other expressions (`--extra-data-dir`) keep their one-hot targets: the teachers only answer happy or sad.

A teacher that was trained on faces the student holds out would leak them into the student, so
`check_teachers` refuses a teacher that trained on the student's test faces (or, without a test split, its
validation faces) and names the folder a teacher was trained on when it is not the student's.
"""

import logging

import numpy as np

from model.contract import CLASS_NAMES
from model.metadata import crop_framing
from model.saved import Classifier, load_classifier
from trainer import data as datasets

# Share of each target taken from the teachers (the rest is the one-hot label), unless --teacher-weight says.
DEFAULT_TEACHER_WEIGHT: float = 0.5

log = logging.getLogger("trainer")


def load_teachers(model_dirs: list[str]) -> list[Classifier]:
    """The exported models named by --teacher. Raises ModelLoadError (one line) for a folder that is not one, and
    ValueError for a model of other classes than CLASS_NAMES."""
    teachers = [load_classifier(model_dir) for model_dir in model_dirs]
    for model_dir, teacher in zip(model_dirs, teachers):
        if tuple(teacher.metadata.class_names) != CLASS_NAMES:
            raise ValueError(f"teacher {model_dir} answers {', '.join(teacher.metadata.class_names)}, not "
                             f"{', '.join(CLASS_NAMES)}")
    return teachers


def check_teachers(teachers: list[Classifier], data_dir_name: str, listed: list[datasets.Example],
                   split: datasets.Split, aligned_crops: bool = False) -> None:
    """Refuse a teacher that saw faces this run holds out for its final figures, or that takes face crops
    otherwise than this run (`ModelMetadata.aligned_crops`: its answers would be for other inputs).

    data_dir_name: `data.folder_name` of --data-dir; listed: every face listed from it (before any per-class cap),
    so each teacher's own split can be carved again from its metadata. Raises ValueError if a teacher was trained
    on another set of faces (its recorded `data_digest` differs; for a model recorded before digests, its folder
    name differs), or on any face of the test split (of the validation split when there is no test split). A
    teacher trained on validation faces when a test split exists is allowed and logged: only the validation
    figures (threshold, early stopping) are then optimistic, the test figures stay honest.
    """
    digest = datasets.listing_digest(listed)
    held_out = split.test or split.validation
    held_out_name = datasets.TEST if split.test else datasets.VALIDATION
    for teacher in teachers:
        meta = teacher.metadata
        if meta.aligned_crops != aligned_crops:
            raise ValueError(f"teacher {meta.model_version} takes face crops {crop_framing(meta.aligned_crops)}, this "
                             f"run {crop_framing(aligned_crops)}: give --align-crops for teachers trained with it only")
        trained_on = meta.trained_on or {}
        recorded = trained_on.get("data_digest")
        if recorded != digest and (recorded is not None or trained_on.get("data_dir") != data_dir_name):
            raise ValueError(f"teacher {meta.model_version} was trained on other faces than --data-dir holds "
                             f"(folder {trained_on.get('data_dir')!r}): cannot check that it never saw this run's "
                             "held-out faces")
        seen = {e.content_hash for e in datasets.split_as_trained(listed, trained_on).train}
        leaked = sum(1 for e in held_out if e.content_hash in seen)
        if leaked:
            raise ValueError(f"teacher {meta.model_version} was trained on {leaked} of this run's {len(held_out)} "
                             f"{held_out_name} faces: its answers would leak them into the student (use "
                             f"--test-fraction and --split-seed that keep them apart)")
        if split.test:
            on_validation = sum(1 for e in split.validation if e.content_hash in seen)
            if on_validation:
                log.info("teacher %s was trained on %d of the %d validation faces: validation figures are "
                         "optimistic; the test split is clean", meta.model_version, on_validation,
                         len(split.validation))


def teacher_probabilities(teachers: list[Classifier], images: np.ndarray) -> np.ndarray:
    """Mean calibrated probabilities of the teachers, float32 [n, len(CLASS_NAMES)], for faces [n, 48, 48, 1]
    of 0..255."""
    return np.mean([teacher.in_batches(images) for teacher in teachers], axis=0, dtype=np.float64).astype(np.float32)


def soft_targets(labels: np.ndarray, teacher_p: np.ndarray, weight: float, num_outputs: int) -> np.ndarray:
    """Targets [n, num_outputs]: (1 - weight) * one-hot(label) + weight * the teachers' probabilities, for the
    first len(teacher_p) faces (the happy/sad ones); one-hot for the rest (other expressions). Rows sum to 1."""
    targets = np.eye(num_outputs, dtype=np.float32)[labels]
    served = len(teacher_p)
    targets[:served] *= 1.0 - weight
    targets[:served, :teacher_p.shape[1]] += weight * teacher_p
    return targets
