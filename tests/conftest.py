"""Shared fixtures: images made with Pillow, a tiny real model fitted in a temp folder, and the shared faces."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

pytest_plugins = ["gcs_emulator"]  # the `gcs` fixture: a local Cloud Storage server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_FACES = PROJECT_ROOT.parent / "shared" / "data" / "fer2013" / "train"
# Synthetic classes the tiny model can learn: "happy" faces are bright, "sad" faces are dark.
BRIGHT_MEAN, DARK_MEAN, NOISE = 190.0, 60.0, 25.0
CORNER_BLOCK_SHARE = 12


def encode(image: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def synthetic_face(bright: bool, seed: int, size: int = 48) -> Image.Image:
    """A size x size greyscale noise "face", bright or dark, with a black and a white corner block (a twelfth of its
    side): it spans the full grey range as FER2013's faces do, so the job's stretch to that range
    (model.preprocess.full_grey_range) keeps bright faces bright and dark ones dark."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(BRIGHT_MEAN if bright else DARK_MEAN, NOISE, (size, size)), 0, 255)
    block = max(1, size // CORNER_BLOCK_SHARE)
    pixels[:block, :block], pixels[:block, -block:] = 0, 255
    return Image.fromarray(pixels.astype(np.uint8), mode="L")


def synthetic_face_folder(folder: Path, count: int, seed: int) -> Path:
    """folder (created) with count synthetic faces face_NN.png, bright (happy) and dark (sad) in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        synthetic_face(i % 2 == 0, seed=seed + i).save(folder / f"face_{i:02d}.png")
    return folder


def assert_a_changed_setting_relabels(args: list[str], setting: list[str], images: int) -> None:
    """An --incremental run (args) relabels every image when setting (flags that change the served model version)
    is added, carries all images over when it is kept, and relabels them all again when it is dropped."""
    from pipeline import run as job

    job.run(args)
    assert job.run([*args, *setting])["images_carried_over"] == 0
    assert job.run([*args, *setting])["images_carried_over"] == images
    assert job.run(args)["images_carried_over"] == 0


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV written by the job (labels.csv, errors.csv), as dictionaries by column name."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_synthetic_dataset(root: Path, per_class: int) -> Path:
    """root/happy/*.png (bright) and root/sad/*.png (dark)."""
    for label, bright in (("happy", True), ("sad", False)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            synthetic_face(bright, seed=i + (0 if bright else 10_000)).save(root / label / f"{label}_{i:03d}.png")
    return root


def train_small_model(root: Path, per_class: int, *flags: str) -> tuple[Path, Path]:
    """Synthetic faces in root/data and a model trained on them by `trainer.task` (with `flags`) in root/model."""
    from trainer import task

    data_dir = write_synthetic_dataset(root / "data", per_class)
    output_dir = root / "model"
    assert task.main(["--data-dir", str(data_dir), "--output-dir", str(output_dir), *flags]) == 0
    return data_dir, output_dir


@pytest.fixture(scope="session")
def tiny_network():
    """A real, tiny Keras network fitted on synthetic bright (happy) and dark (sad) faces."""
    import keras

    from model.network import build_network

    keras.utils.set_random_seed(0)
    images = np.stack([np.asarray(synthetic_face(i % 2 == 0, seed=i), np.float32)[..., None] for i in range(128)])
    labels = np.array([0 if i % 2 == 0 else 1 for i in range(128)])
    network = build_network(2, block_filters=(4, 8), dropout=0.0)
    network.compile(optimizer=keras.optimizers.Adam(1e-2),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    network.fit(images, labels, epochs=30, batch_size=16, verbose=0)
    return network


def export_tiny(network, folder: Path, mirror_average: bool, version: str) -> Path:
    """network exported as the trainer exports it, with or without mirror averaging inside (its metadata says)."""
    from model.metadata import RULE_THRESHOLD, ModelMetadata
    from trainer.export import ServingModule, export_model

    metadata = ModelMetadata(model_version=version, decision_rule=RULE_THRESHOLD, threshold=0.5,
                             trained_on={"synthetic": 128}, training_config={"mirror_average": mirror_average})
    return export_model(ServingModule(network, mirror_average=mirror_average), metadata, folder)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_network, tmp_path_factory) -> Path:
    """tiny_network exported like the shipped models before 2026-12-01: mirror averaging inside the network."""
    return export_tiny(tiny_network, tmp_path_factory.mktemp("tiny_model"), True, "tiny-test-model")


@pytest.fixture(scope="session")
def tiny_single_view_model_dir(tiny_network, tmp_path_factory) -> Path:
    """tiny_network exported like the shipped model: one pass per face (`--no-mirror-average`)."""
    return export_tiny(tiny_network, tmp_path_factory.mktemp("tiny_single_view"), False, "tiny-single-view")


def with_int8_copy(source: Path, folder: Path) -> Path:
    """A copy of the model at source in folder, with an int8 copy beside it (model.lite), calibrated on other
    synthetic faces."""
    import dataclasses
    import shutil

    from model.lite import INT8_FILENAME, flatbuffer_digest
    from model.metadata import ModelMetadata
    from trainer.quantize import convert

    shutil.copytree(source, folder)
    representative = np.stack([np.asarray(synthetic_face(i % 2 == 0, seed=5000 + i), np.float32)[..., None]
                               for i in range(32)])
    flatbuffer = convert(str(folder), "int8", representative)
    (folder / INT8_FILENAME).write_bytes(flatbuffer)
    metadata = ModelMetadata.read(folder)
    dataclasses.replace(metadata, int8={"file": INT8_FILENAME, "sha256": flatbuffer_digest(flatbuffer)}).write(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_int8_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """tiny_model_dir with an int8 copy beside it."""
    return with_int8_copy(tiny_model_dir, tmp_path_factory.mktemp("tiny_int8") / "model")


@pytest.fixture(scope="session")
def tiny_single_view_int8_model_dir(tiny_single_view_model_dir, tmp_path_factory) -> Path:
    """tiny_single_view_model_dir with an int8 copy beside it."""
    return with_int8_copy(tiny_single_view_model_dir, tmp_path_factory.mktemp("tiny_single_view_int8") / "model")


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    """The shared FER2013 faces; missing data fails loudly in CI and skips elsewhere."""
    if not (SHARED_FACES / "happy").is_dir() or not (SHARED_FACES / "sad").is_dir():
        message = f"shared faces not found at {SHARED_FACES}"
        if os.environ.get("CI"):
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    return SHARED_FACES


def scene(size: tuple[int, int] = (640, 480), seed: int = 0) -> Image.Image:
    """A colour background without faces: smooth random blotches (low-resolution noise enlarged)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 220, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse, mode="RGB").resize(size, Image.Resampling.BICUBIC)


def paste_face(background: Image.Image, face: Image.Image, centre: tuple[int, int], height: int,
               angle: float = 0.0) -> tuple[int, int, int, int]:
    """Paste a face crop (enlarged to `height` pixels, turned `angle` degrees anticlockwise) centred at `centre`;
    returns the pasted face's upright box (x, y, width, height) before turning."""
    width = round(face.size[0] * height / face.size[1])
    resized = face.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    mask = Image.new("L", resized.size, 255)
    turned, turned_mask = (resized.rotate(angle, Image.Resampling.BICUBIC, expand=True),
                           mask.rotate(angle, Image.Resampling.BICUBIC, expand=True))
    x, y = centre[0] - turned.size[0] // 2, centre[1] - turned.size[1] // 2
    background.paste(turned, (x, y), turned_mask)
    return centre[0] - width // 2, centre[1] - height // 2, width, height


def box_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0.0, min(ax2, bx2) - max(a[0], b[0])) * max(0.0, min(ay2, by2) - max(a[1], b[1]))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def shared_face_files(shared_faces: Path, label: str, count: int, start: int = 0) -> list[Path]:
    """`count` shared FER2013 faces of a class, from the `start`-th in name order, that MTCNN, the first face
    detector, finds when pasted large into a scene (about 1 in 11 FER2013 crops is not found by it: tests of the
    job's mechanics should not depend on those or on the second detector)."""
    from model.faces import MTCNN

    finder = _finder()
    chosen = []
    for path in sorted((shared_faces / label).iterdir())[start:]:
        photo = scene(seed=len(chosen))
        paste_face(photo, Image.open(path), (320, 240), 160)
        if any(face.detector == MTCNN for face in finder.find([photo])[0]):
            chosen.append(path)
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"fewer than {count} findable faces in {shared_faces / label}")


_FINDER = []


def _finder():
    """One face detector for the whole test session (building one takes about a second)."""
    from model.faces import FaceFinder

    if not _FINDER:
        _FINDER.append(FaceFinder())
    return _FINDER[0]
