"""The field cases of ../shared/data/field/README.md, each built here and run through `pipeline.run` end to end,
asserting what the README says a user expects; every run keeps the accounting invariant (matched = labelled +
failed, no file in both outputs). The tiny test model labels bright faces happy and dark faces sad.
(The blank-and-non-face case belongs to the face-detection work and is not here.)"""

import csv
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DARK_MEAN, PROJECT_ROOT, encode, synthetic_face
from pipeline import run as job

FIELD = PROJECT_ROOT.parent / "shared" / "data" / "field"


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def label_run(model, input_text, out, *flags):
    """Run the job; return (summary, {path: label row}, {path: reason}) after checking the accounting (one row
    per image: labelled, no face, or failed)."""
    summary = job.run(["--input", input_text, "--output", str(out), "--model", str(model), *flags])
    labels = {row[0]: row for row in read_csv(out / "labels.csv")}
    errors = {row[0]: row[1] for row in read_csv(out / "errors.csv")}
    assert not set(labels) & set(errors)
    no_face = summary.get("images_no_face", 0)
    assert summary["images_matched"] == summary["images_labelled"] + no_face + summary["images_failed"]
    assert (summary["images_labelled"] + no_face, summary["images_failed"]) == (len(labels), len(errors))
    assert json.loads((out / "summary.json").read_text()) == summary
    return summary, labels, errors


def face(path, bright, seed, fmt=None, **save_args):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = synthetic_face(bright, seed)
    path.write_bytes(encode(image if fmt not in ("JPEG", "HEIF", "AVIF") else image.convert("RGB"),
                            fmt or "PNG", **save_args))
    return str(path)


def test_bracket_folder_is_walked_and_replaces_last_nights_outputs(tiny_model_dir, tmp_path):
    folder = tmp_path / "faces [party] {2024} *best*?"
    expected = {face(folder / "happy_1.jpg", True, 1, "JPEG", quality=95): "happy",
                face(folder / "sad_1.jpg", False, 2, "JPEG", quality=95): "sad"}
    out = tmp_path / "out"
    last_night = face(tmp_path / "last-night" / "old.png", True, 3)
    label_run(tiny_model_dir, last_night, out)
    summary, labels, _ = label_run(tiny_model_dir, str(folder), out)
    assert {path: row[1] for path, row in labels.items()} == expected  # not empty: last night's files replaced
    assert summary["input_kind"] == "folder"


def test_names_that_are_not_utf8_never_crash_a_run(tiny_model_dir, tmp_path):
    root = os.fsencode(str(tmp_path / "in"))
    os.makedirs(os.path.join(root, b"\xff-dir"))
    good = encode(synthetic_face(True, seed=5))
    for name, data in {b"normal.png": good, b"caf\xe9.png": good, b"\xff-dir/\x93quoted\x94.png": good,
                       b"empty\xe9.jpg": b""}.items():
        with open(os.path.join(root, name), "wb") as handle:
            handle.write(data)
    out = tmp_path / "out"
    shown = str(tmp_path / "in")
    _, labels, errors = label_run(tiny_model_dir, shown, out)
    assert set(labels) == {f"{shown}/normal.png", f"{shown}/caf\\xe9.png", f"{shown}/\\xff-dir/\\x93quoted\\x94.png"}
    assert all(row[1] == "happy" for row in labels.values())
    assert errors == {f"{shown}/empty\\xe9.jpg": "empty file (0 bytes)"}
    # An incremental rerun finds the same files by the same written names and carries their rows over.
    summary, again, _ = label_run(tiny_model_dir, shown, out, "--incremental")
    assert summary["images_carried_over"] == 3 and set(again) == set(labels)


def test_one_existing_file_is_labelled(tiny_model_dir, tmp_path, monkeypatch):
    path = face(tmp_path / "photos" / "me.jpg", False, 8, "JPEG", quality=95)
    face(tmp_path / "photos" / "you.jpg", True, 9, "JPEG")
    summary, labels, _ = label_run(tiny_model_dir, path, tmp_path / "out")
    assert list(labels) == [path] and labels[path][1] == "sad" and summary["input_kind"] == "file"
    monkeypatch.chdir(tmp_path)
    _, labels, _ = label_run(tiny_model_dir, "photos/me.jpg", tmp_path / "out2")
    assert list(labels) == ["photos/me.jpg"]


def test_one_existing_file_that_is_not_an_image_is_an_error_row(tiny_model_dir, tmp_path):
    path = tmp_path / "notes [draft].jpg"
    path.write_text("not a photo")
    _, labels, errors = label_run(tiny_model_dir, str(path), tmp_path / "out")
    assert not labels and errors == {str(path): "not a recognised image format"}


@pytest.fixture
def camera_names(tmp_path):
    root = tmp_path / "cam"
    return root, {face(root / "IMG_0001.JPG", True, 11, "JPEG"), face(root / "2026-05" / "IMG_0002.JPG", False, 12, "JPEG"),
                  face(root / "a.jpg", True, 13, "JPEG"), face(root / "2026-05" / "b.jpg", False, 14, "JPEG")}


def test_globstar_pattern_takes_every_folder_level_and_extension_case(tiny_model_dir, camera_names, tmp_path):
    root, every = camera_names
    _, labels, _ = label_run(tiny_model_dir, f"{root}/**/*.jpg", tmp_path / "out")
    assert set(labels) == every
    _, labels, _ = label_run(tiny_model_dir, f"{root}/2026-*/*.jpg", tmp_path / "out2")
    assert set(labels) == {p for p in every if "/2026-05/" in p}


def test_files_a_pattern_misses_by_case_are_named_on_screen(tiny_model_dir, camera_names, tmp_path, caplog):
    root, _ = camera_names
    face(root / "img_9.jpg", True, 15)
    status = job.main(["--input", f"{root}/**/img_*.jpg", "--output", str(tmp_path / "out"),
                       "--model", str(tiny_model_dir)])
    assert status == 0
    warning = [r.getMessage() for r in caplog.records if "differ from the pattern" in r.getMessage()]
    assert len(warning) == 1 and "2 image files" in warning[0] and "IMG_0001.JPG" in warning[0]


def test_phone_and_browser_formats_are_labelled_and_skipped_files_counted(tiny_model_dir, tmp_path, capsys):
    root = tmp_path / "phone"
    kinds = [("a.jpg", "JPEG"), ("b.avif", "AVIF"), ("c.jfif", "JPEG"), ("d.heic", "HEIF"), ("e.HEIF", "HEIF"),
             ("f.webp", "WEBP"), ("g.JFIF", "JPEG"), ("h.mpo", "MPO")]
    expected = {face(root / name, i % 2 == 0, 20 + i, fmt, quality=95): "happy" if i % 2 == 0 else "sad"
                for i, (name, fmt) in enumerate(kinds)}
    for name in ["._a.jpg", ".DS_Store", "IMG_1.MOV", "IMG_1.AAE", "notes.txt", "@eaDir/a.jpg/thumb.jpg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    status = job.main(["--input", str(root), "--output", str(tmp_path / "out"), "--model", str(tiny_model_dir)])
    assert status == 0
    labels = {row[0]: row[1] for row in read_csv(tmp_path / "out" / "labels.csv")}
    assert labels == expected
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["files_skipped"] == {"system file": 2, "not an image by name": 1, "sidecar": 1,
                                        "system folder": 1, "video": 1}
    assert summary["images_matched"] == len(expected)
    screen = capsys.readouterr().out
    assert re.search(r"skipped: .*2 system file", screen) and "1 video" in screen


def deny_listing(monkeypatch, folder) -> None:
    """Make listing `folder` fail as a permission-denied folder does (root reads any folder, so chmod cannot)."""
    real_scandir = os.scandir

    def scandir(path="."):
        if isinstance(path, str) and path == str(folder):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", scandir)


def test_a_subfolder_that_cannot_be_listed_is_reported(tiny_model_dir, tmp_path, monkeypatch):
    # Root reads any folder, so the listing is made to fail as a permission-denied folder does (see test_inputs).
    root = tmp_path / "in"
    keep = face(root / "a.png", True, 30)
    face(root / "private" / "b.png", False, 31)
    deny_listing(monkeypatch, root / "private")
    summary, labels, errors = label_run(tiny_model_dir, str(root), tmp_path / "out")
    assert list(labels) == [keep]
    assert errors == {str(root / "private"): "folder cannot be listed: Permission denied"}
    assert summary["errors_by_reason"] == {"folder cannot be listed": 1}


def test_an_input_folder_that_cannot_be_listed_is_one_error_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    face(tmp_path / "in" / "a.png", True, 32)
    deny_listing(monkeypatch, tmp_path / "in")
    status = job.main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                       "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err == f"error: cannot list input {tmp_path / 'in'} (Permission denied)"


def test_48_megapixel_mpo_phone_photo_is_labelled_like_the_plain_jpeg(tiny_model_dir, tmp_path):
    # The face in the middle of a 4:3 frame of its own dark grey, so the whole image's centre square is the face.
    frame = Image.new("L", (64, 48), int(DARK_MEAN))
    frame.paste(synthetic_face(False, seed=40), (8, 0))
    photo = frame.resize((8064, 6048), Image.Resampling.NEAREST).convert("RGB")
    root = tmp_path / "phone"
    root.mkdir()
    (root / "IMG_0001.JPG").write_bytes(encode(photo, "MPO", quality=90, save_all=True,
                                               append_images=[photo.resize((1920, 1440))]))
    (root / "IMG_0001_plain.JPG").write_bytes(encode(photo, "JPEG", quality=90))
    del photo
    # --faces none: the whole photo is the face, so the test model's label shows how the pixels were read.
    _, labels, errors = label_run(tiny_model_dir, str(root), tmp_path / "out", "--faces", "none")
    assert not errors
    mpo, plain = labels[str(root / "IMG_0001.JPG")], labels[str(root / "IMG_0001_plain.JPG")]
    assert mpo[1] == plain[1] == "sad" and mpo[2:4] == plain[2:4]


def test_float_tiffs_are_read_by_value_range_and_get_the_pngs_labels(tiny_model_dir, tmp_path):
    root = tmp_path / "scans"
    for i in range(6):
        image = synthetic_face(i % 2 == 0, seed=50 + i)
        face(root / "png_8bit" / f"face_{i}.png", i % 2 == 0, 50 + i)
        (root / "float_tiff").mkdir(exist_ok=True)
        Image.fromarray(np.asarray(image, np.float32) / 255.0, "F").save(root / "float_tiff" / f"face_{i}.tif")
    signed = np.linspace(-1, 1, 48 * 48, dtype=np.float32).reshape(48, 48)
    Image.fromarray(signed, "F").save(root / "float_tiff" / "signed.tif")
    _, labels, errors = label_run(tiny_model_dir, str(root), tmp_path / "out")
    for i in range(6):
        tif, png = labels[str(root / "float_tiff" / f"face_{i}.tif")], labels[str(root / "png_8bit" / f"face_{i}.png")]
        assert tif[1] == png[1] == ("happy" if i % 2 == 0 else "sad")
        assert abs(float(tif[2]) - float(png[2])) < 0.02
    assert errors == {str(root / "float_tiff" / "signed.tif"):
                      "unsupported: F samples from -1 to 1 (negative values have no known brightness)"}


@pytest.fixture(scope="module")
def field_data():
    """The shared field inputs; missing data fails loudly in CI and skips elsewhere."""
    if not (FIELD / "float-tiff" / "float_tiff").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared field data not found at {FIELD} (required in CI)")
        pytest.skip(f"shared field data not found at {FIELD}")
    return FIELD


def test_shared_float_tiffs_get_the_labels_of_the_same_faces_as_pngs(field_data, tmp_path):
    _, labels, errors = label_run(PROJECT_ROOT / "model" / "default", str(field_data / "float-tiff"), tmp_path / "o")
    assert not errors
    tifs = {Path(p).stem: row for p, row in labels.items() if p.endswith(".tif")}
    pngs = {Path(p).stem: row for p, row in labels.items() if p.endswith(".png")}
    assert tifs and set(tifs) == set(pngs)
    for stem, row in tifs.items():
        assert row[1] == pngs[stem][1] and abs(float(row[2]) - float(pngs[stem][2])) < 0.02, stem


OUR_LINES = [
    r"\S*python\S* -m pipeline\.run ",  # make's echo of the command it runs
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) (labelling |progress: )",
    r"facelabel: \d",
    r"  (labels|skipped|failed|time|model|outputs): ",
]


def test_make_label_prints_only_our_lines(tiny_model_dir, tmp_path):
    for i in range(4):
        face(tmp_path / "faces" / f"face_{i}.png", i % 2 == 0, 60 + i)
    done = subprocess.run(["make", "--no-print-directory", "label", f"INPUT={tmp_path / 'faces'}",
                           f"OUTPUT={tmp_path / 'out'}", f"MODEL={tiny_model_dir}", f"PYTHON={sys.executable}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert done.returncode == 0, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    noise = [line for line in lines if not any(re.match(pattern, line) for pattern in OUR_LINES)]
    assert not noise, "\n".join(noise)
    assert any(line.startswith("facelabel: 4 images matched") for line in lines)
