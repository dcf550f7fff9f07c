"""Nightly-run safety: reruns replace results whole, failures leave the last good results, error-rate alarms,
files that vanish between matching and reading, and a large mixed folder where every file is accounted for."""

import csv
import errno
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.io.filesystem import FileMetadata
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from conftest import encode, synthetic_face
from model.metadata import ModelMetadata
from pipeline import outputs, stopping
from pipeline import run as job
from pipeline.rows import ErrorRow
from pipeline.transforms import ReadFiles

REAL_FACES = 1000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOP_AFTER_SECONDS = 3.0
# A run that a stop must catch midway: about 5 s per 1,000 of these faces on 2 cores after its start-up line, so
# it is still labelling when the stop comes (with 400 it finished first once, on a fast CI machine).
STOPPED_RUN_FACES = 4000
STOP_MIDWAY_SECONDS = 1.5
# Well inside the import of TensorFlow and Beam (about 3 s on 2 cores), after Python itself has started.
STOP_WHILE_STARTING_SECONDS = 0.8


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


def faces_folder(root, count, seed):
    root.mkdir(parents=True)
    for i in range(count):
        synthetic_face(i % 2 == 0, seed=seed + i).save(root / f"face_{i}.png")
    return root


def test_rerun_replaces_results_as_a_whole(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    first = faces_folder(tmp_path / "first", 4, seed=10)
    second = faces_folder(tmp_path / "second", 2, seed=20)
    job.run(["--input", str(first), "--output", str(out), "--model", str(tiny_model_dir), "--report"])
    assert (out / "report.html").is_file()
    job.run(["--input", str(second), "--output", str(out), "--model", str(tiny_model_dir)])  # no new report
    assert {row[0] for row in read_rows(out / "labels.csv")} == {str(p) for p in second.iterdir()}
    assert sorted(p.name for p in out.iterdir()) == ["errors.csv", "labels.csv", "summary.json"]


@pytest.fixture
def failing_model_dir(tmp_path):
    """A model that loads and has the right signature, but fails whenever it is called."""
    class Failing(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 48, 48, 1], tf.float32, name="images")])
        def serve(self, images):
            tf.debugging.assert_less(tf.shape(images)[0], 0, message="deliberate failure")
            return {"probabilities": tf.zeros([tf.shape(images)[0], 2])}

    module, path = Failing(), tmp_path / "failing_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    ModelMetadata(model_version="failing").write(path)
    return path


def test_failed_run_leaves_previous_results_untouched(tiny_model_dir, failing_model_dir, tmp_path):
    out = tmp_path / "out"
    folder = faces_folder(tmp_path / "in", 3, seed=30)
    job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    before = {name: (out / name).read_bytes() for name in ("labels.csv", "errors.csv", "summary.json")}
    with pytest.raises(Exception, match="deliberate failure"):
        job.run(["--input", str(folder), "--output", str(out), "--model", str(failing_model_dir)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # same files, same bytes, no staging left


@pytest.mark.parametrize("limit,status", [("0.2", 3), ("0.5", 0)])
def test_max_error_rate_sets_exit_status_after_writing_outputs(tiny_model_dir, tmp_path, capsys, limit, status):
    folder = faces_folder(tmp_path / "in", 3, seed=40)
    (folder / "broken.png").write_bytes(b"broken")  # 1 of 4 failed = 25%
    out = tmp_path / "out"
    assert job.main(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir),
                     "--max-error-rate", limit]) == status
    assert len(read_rows(out / "errors.csv")) == 1 and len(read_rows(out / "labels.csv")) == 3
    captured = capsys.readouterr()
    assert "4 images matched: 3 labelled, 0 without a face, 1 failed (25.0%)" in captured.out
    assert ("more than --max-error-rate" in captured.err) == (status != 0)


def test_bad_max_error_rate_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        job.main(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--max-error-rate", "5"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --max-error-rate: must be a fraction")


def test_a_file_this_user_cannot_read_is_an_error_row_saying_so(tmp_path, monkeypatch):
    """Its row said "PermissionError: [Errno 13] Permission denied: '/…'" (root reads any file, so io.open is
    made to fail as it does for other users)."""
    locked = tmp_path / "locked.png"
    locked.write_bytes(encode(synthetic_face(True, seed=2)))
    real_open = io.open

    def open_file(file, *args, **kwargs):
        if os.fspath(file) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", open_file)
    with TestPipeline() as p:
        read = p | beam.Create([FileMetadata(str(locked), locked.stat().st_size)]) | ReadFiles()
        assert_that(read["errors"], equal_to([ErrorRow(str(locked), "permission denied (this user cannot read the "
                                                                    "file)")]))


def test_file_vanished_after_matching_is_an_error_row(tmp_path):
    present = tmp_path / "present.png"
    present.write_bytes(encode(synthetic_face(True, seed=1)))
    gone = tmp_path / "gone.png"
    with TestPipeline() as p:
        read = p | beam.Create([FileMetadata(str(present), present.stat().st_size),
                                FileMetadata(str(gone), 1234)]) | ReadFiles()
        assert_that(read["images"] | beam.Map(lambda item: item[0].path), equal_to([str(present)]), label="Images")
        assert_that(read["errors"] | beam.Map(lambda row: (row.path, row.error.split(":")[0])),
                    equal_to([(str(gone), "FileNotFoundError")]), label="Errors")


def every_kind_of_bad_file(folder):
    """Files a nightly folder really gets; returns {file name: expected start of its error reason}."""
    jpeg = encode(Image.new("RGB", (300, 300), (120, 80, 60)), "JPEG")
    png = encode(Image.new("L", (300, 300), 90), "PNG")
    # A decompression bomb: a small PNG whose header claims 60000x60000 pixels (CRC fixed, so it is well formed).
    bomb = bytearray(encode(Image.new("1", (8, 8), 0), "PNG"))
    bomb[16:24] = (60_000).to_bytes(4, "big") * 2
    bomb[29:33] = zlib.crc32(bytes(bomb[12:29])).to_bytes(4, "big")
    bomb = bytes(bomb)
    bad = {
        "zero.jpg": (b"", "empty file"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt or truncated image"),
        "truncated.png": (png[: len(png) // 2], "corrupt or truncated image"),
        "notes.JPG": (b"shopping list: milk, eggs", "not a recognised image format"),
        "page.png": (b"<html><body>404</body></html>", "not a recognised image format"),
        "bomb.png": (bomb, "image too large"),
    }
    for name, (data, _) in bad.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in bad.items()}


def every_kind_of_odd_good_file(folder):
    """Unusual but valid images, which must be labelled."""
    big = Image.new("RGB", (6000, 4000), (200, 180, 170))
    exif = Image.Exif()
    exif[0x0112] = 6
    files = {
        "large photo.jpg": encode(big, "JPEG", quality=80),
        "cmyk.jpg": encode(Image.new("CMYK", (64, 64), (10, 20, 30, 40)), "JPEG"),
        "sixteen-bit.png": encode(Image.new("I;16", (64, 64), 30000), "PNG"),
        "palette.gif": encode(Image.new("P", (64, 64), 3), "GIF"),
        "alpha.png": encode(Image.new("RGBA", (64, 64), (90, 90, 90, 128)), "PNG"),
        "rotated.jpg": encode(Image.new("L", (80, 48), 100), "JPEG", exif=exif),
        "naïve, \"quoted\"\nname.webp": encode(Image.new("L", (48, 48), 70), "WEBP"),
        "photo.TIFF": encode(Image.new("L", (48, 48), 60), "TIFF"),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return set(files)


def test_real_faces_mixed_with_bad_files_are_each_accounted_for_once(shared_faces, tmp_path):
    folder = tmp_path / "nightly"
    faces = sorted((shared_faces / "happy").iterdir())[: REAL_FACES // 2] + \
        sorted((shared_faces / "sad").iterdir())[: REAL_FACES // 2]
    for i, face in enumerate(faces):
        target = folder / f"batch{i % 7}" / face.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(face, target)
    bad = every_kind_of_bad_file(folder)
    odd = every_kind_of_odd_good_file(folder)
    (folder / "batch0" / "linked.jpg").symlink_to(folder / "batch0" / faces[0].name)
    (folder / "README.md").write_text("not an image: not matched")

    out = tmp_path / "out"
    summary = job.run(["--input", str(folder), "--output", str(out)])
    labelled = [row[0] for row in read_rows(out / "labels.csv")]
    failed = {row[0]: row[1] for row in read_rows(out / "errors.csv")}
    every_image = {str(p) for p in folder.rglob("*") if p.is_file() and p.name != "README.md"}
    assert len(labelled) == len(set(labelled))
    assert sorted(labelled + list(failed)) == sorted(every_image)
    assert {str(folder / name) for name in odd} <= set(labelled)
    for name, reason in bad.items():
        assert failed[str(folder / name)].startswith(reason), (name, failed[str(folder / name)])
    assert summary["images_matched"] == REAL_FACES + len(odd) + 1 + len(bad)
    assert summary["images_matched"] == summary["images_labelled"] + summary["images_no_face"] + \
        summary["images_failed"]
    assert summary["images_failed"] == len(bad)
    # The odd files are read correctly but are flat frames: none is given a happy or sad label.
    labels = {row[0]: row[1] for row in read_rows(out / "labels.csv")}
    assert {labels[str(folder / name)] for name in odd} == {"no_face"}


def test_incremental_run_labels_only_new_and_changed_files(tiny_model_dir, tmp_path):
    folder = faces_folder(tmp_path / "in", 4, seed=60)
    out = tmp_path / "out"
    first = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    assert first["images_carried_over"] == 0
    rows_before = {row[0]: row for row in read_rows(out / "labels.csv")}

    # Overnight: one face replaced by the opposite class (different size), one new, one deleted, one broken.
    synthetic_face(False, seed=999, size=64).save(folder / "face_0.png")
    synthetic_face(True, seed=998).save(folder / "face_new.png")
    (folder / "face_3.png").unlink()
    (folder / "broken.png").write_bytes(b"nope")

    second = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir), "--incremental"])
    rows_after = {row[0]: row for row in read_rows(out / "labels.csv")}
    assert set(rows_after) == {str(folder / name) for name in ("face_0.png", "face_1.png", "face_2.png",
                                                               "face_new.png")}
    assert rows_after[str(folder / "face_1.png")] == rows_before[str(folder / "face_1.png")]
    assert rows_after[str(folder / "face_2.png")] == rows_before[str(folder / "face_2.png")]
    assert rows_before[str(folder / "face_0.png")][1] == "happy" and rows_after[str(folder / "face_0.png")][1] == "sad"
    assert [row[0] for row in read_rows(out / "errors.csv")] == [str(folder / "broken.png")]
    assert second["images_carried_over"] == 2
    assert second["images_matched"] == 5 == second["images_labelled"] + second["images_failed"]


def test_incremental_run_relabels_rows_of_another_model_version(tiny_model_dir, tmp_path, caplog):
    folder = faces_folder(tmp_path / "in", 3, seed=70)
    out = tmp_path / "out"
    job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    labels = out / "labels.csv"
    labels.write_text(labels.read_text(encoding="utf-8").replace("tiny-test-model", "older-model"), encoding="utf-8")
    with caplog.at_level("INFO", logger="facelabel"):
        summary = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir),
                           "--incremental"])
    assert summary["images_carried_over"] == 0
    assert "the earlier labels are by model older-model, this run's is tiny-test-model" in caplog.text
    assert {row[4] for row in read_rows(labels)} == {"tiny-test-model"}


def test_incremental_run_relabels_only_the_images_of_damaged_earlier_rows(tiny_model_dir, tmp_path, caplog):
    """A row cut short or edited by hand costs its own image a new label, not the run (it raised before)."""
    folder = faces_folder(tmp_path / "in", 4, seed=75)
    out = tmp_path / "out"
    job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    labels = out / "labels.csv"
    rows_before = {row[0]: row for row in read_rows(labels)}
    header, first, second, *rest = labels.read_text(encoding="utf-8").split("\n")
    cut = first[: first.index(",", first.index(",") + 1)]  # path and label only
    edited = second.replace(",happy,", ",maybe,").replace(",sad,", ",maybe,")
    labels.write_text("\n".join([header, cut, edited, *rest]), encoding="utf-8")

    with caplog.at_level("WARNING", logger="facelabel"):
        summary = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir),
                           "--incremental"])
    assert summary["images_carried_over"] == 2 and summary["images_labelled"] == 4
    assert {row[0]: row for row in read_rows(labels)} == rows_before  # relabelled alike, carried over intact
    assert "2 rows could not be read or were cut short (record 2, 3)" in caplog.text


def test_incremental_run_counts_the_rows_lost_from_a_labels_file_cut_short(tiny_model_dir, tmp_path, caplog):
    """A labels.csv cut between rows parses cleanly; the summary's row count tells the loss (it went unsaid)."""
    folder = faces_folder(tmp_path / "in", 5, seed=78)
    out = tmp_path / "out"
    first = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    assert first["label_rows"] == 5
    labels = out / "labels.csv"
    rows_before = {row[0]: row for row in read_rows(labels)}
    lines = labels.read_text(encoding="utf-8").splitlines(keepends=True)
    labels.write_text("".join(lines[:3]), encoding="utf-8")  # header and 2 whole rows

    with caplog.at_level("WARNING", logger="facelabel"):
        summary = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir),
                           "--incremental"])
    assert summary["images_carried_over"] == 2 and summary["images_labelled"] == 5 == summary["label_rows"]
    assert {row[0]: row for row in read_rows(labels)} == rows_before
    warned = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    assert len(warned) == 1 and "3 rows fewer than its run wrote (5" in warned[0], caplog.text

    caplog.clear()
    with caplog.at_level("WARNING", logger="facelabel"):  # whole again: nothing to say
        job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir), "--incremental"])
    assert "cut short" not in caplog.text


def test_incremental_run_relabels_a_last_row_without_its_line_end(tiny_model_dir, tmp_path, caplog):
    """A file cut inside its last field ('...,0.9991' to '...,0.9') still parses, and was carried over with the
    number cut short; every row is written with a line end, so its absence tells the cut."""
    folder = faces_folder(tmp_path / "in", 3, seed=82)
    out = tmp_path / "out"
    job.run(["--input", str(folder), "--output", str(out), "--faces", "none", "--model", str(tiny_model_dir)])
    labels = out / "labels.csv"
    rows_before = {row[0]: row for row in read_rows(labels)}
    text = labels.read_text(encoding="utf-8")
    labels.write_text(text.rstrip("\n"), encoding="utf-8")  # its last field is empty with --faces none

    with caplog.at_level("WARNING", logger="facelabel"):
        summary = job.run(["--input", str(folder), "--output", str(out), "--faces", "none",
                           "--model", str(tiny_model_dir), "--incremental"])
    assert summary["images_carried_over"] == 2 and summary["images_labelled"] == 3
    assert {row[0]: row for row in read_rows(labels)} == rows_before
    warned = [r.getMessage() for r in caplog.records if r.name == "facelabel" and r.levelname == "WARNING"]
    assert len(warned) == 1 and "1 row could not be read or was cut short (record 4)" in warned[0], warned


def test_incremental_run_relabels_images_whose_earlier_rows_disagree_with_themselves(tiny_model_dir, tmp_path,
                                                                                     caplog):
    """Rows that parse but were duplicated, or whose label or probabilities were edited, are not carried over:
    a duplicate was carried night after night (matched 4, labelled 5)."""
    folder = faces_folder(tmp_path / "in", 4, seed=76)
    out = tmp_path / "out"
    job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    labels = out / "labels.csv"
    rows_before = {row[0]: row for row in read_rows(labels)}
    header, first, second, third, *rest = labels.read_text(encoding="utf-8").split("\n")
    fields = next(csv.reader([second]))
    fields[1] = "sad" if fields[1] == "happy" else "happy"  # the label flipped, probabilities left
    flipped = ",".join(fields)
    fields = next(csv.reader([third]))
    fields[2] = "0.100000"  # p_happy changed, p_sad left
    edited = ",".join(fields)
    labels.write_text("\n".join([header, first, first, flipped, edited, *rest]), encoding="utf-8")

    with caplog.at_level("WARNING", logger="facelabel"):
        summary = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir),
                           "--incremental"])
    assert summary["images_matched"] == 4 == summary["images_labelled"]
    assert summary["images_carried_over"] == 1
    assert {row[0]: row for row in read_rows(labels)} == rows_before
    warned = [r.getMessage() for r in caplog.records if "do not agree with themselves" in r.getMessage()]
    assert sum(int(message.split("rows of ")[1].split()[0]) for message in warned) == 3, warned


def test_incremental_run_warns_when_the_input_is_spelled_differently(tiny_model_dir, tmp_path, caplog, monkeypatch):
    """Rows are matched by path: 'in' tonight against '/abs/in' last night relabelled everything, unsaid."""
    folder = faces_folder(tmp_path / "in", 2, seed=84)
    out = tmp_path / "out"
    job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING", logger="facelabel"):
        summary = job.run(["--input", "in", "--output", str(out), "--model", str(tiny_model_dir), "--incremental"])
    assert summary["images_carried_over"] == 0 and summary["images_matched"] == 2
    assert f"the earlier labels are of --input {folder}, this run's is in: images are matched by" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="facelabel"):
        again = job.run(["--input", "in", "--output", str(out), "--model", str(tiny_model_dir), "--incremental"])
    assert again["images_carried_over"] == 2 and "earlier labels are of --input" not in caplog.text


def test_incremental_run_says_why_earlier_labels_are_not_used(tiny_model_dir, tmp_path, caplog):
    """Earlier labels of another layout relabel everything (safe) and say so in one warning line."""
    folder = faces_folder(tmp_path / "in", 2, seed=77)
    out = tmp_path / "out"
    job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    for foreign, found in (("name;mood\nface_0.png;happy\n", "(1 columns: name;mood)"), ("", "(an empty file)")):
        (out / "labels.csv").write_text(foreign, encoding="utf-8")
        caplog.clear()
        with caplog.at_level("WARNING", logger="facelabel"):
            summary = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir),
                               "--incremental"])
        assert summary["images_carried_over"] == 0 and summary["images_labelled"] == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("earlier labels not used" in w and "does not start with this model's labels header " + found
                   in w for w in warnings), warnings


def test_staging_folders_of_killed_runs_are_removed_and_others_named(tiny_model_dir, tmp_path, caplog):
    """A run killed outright (SIGKILL, out of memory) cannot remove its staging folder: the next run does, when
    the folder's writer was a process of this machine that is gone; others are named, never deleted."""
    folder = faces_folder(tmp_path / "in", 2, seed=79)
    out = tmp_path / "out"
    job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that no longer runs
    host = socket.gethostname()
    killed = out / f".facelabel-staging-1764547200-{host}-{gone.pid}"
    elsewhere = out / f".facelabel-staging-1764547200-another-host-{os.getpid()}"
    alive = out / f".facelabel-staging-1764547200-{host}-{os.getpid()}"  # this process: a run still writing
    for leftover in (killed, elsewhere, alive):
        (leftover / ".facelabel-sort-x").mkdir(parents=True)
        (leftover / "labels.csv").write_text("path,label\n", encoding="utf-8")

    with caplog.at_level("INFO", logger="facelabel"):
        summary = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    assert summary["images_labelled"] == 2
    assert not killed.exists() and elsewhere.is_dir() and alive.is_dir()
    assert f"removing {killed.name}, left by an earlier run that was killed" in caplog.text
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "facelabel"]
    assert len(warned) == 1 and warned[0].startswith("2 staging folders of other runs in"), warned
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "errors.csv", "labels.csv", "summary.json"]


# A run that holds the lock of the output folder argv[1], started at argv[2], until killed.
HOLDER = ("import fcntl, os, socket, sys, time; lock = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
          "fcntl.flock(lock, fcntl.LOCK_EX); os.write(lock, f'{socket.gethostname()}\\t{os.getpid()}\\t{sys.argv[2]}'"
          ".encode()); print('held', flush=True); time.sleep(60)")


def test_a_second_run_into_an_output_that_a_live_run_is_writing_stops_in_one_line(tiny_model_dir, tmp_path,
                                                                                    capsys):
    """Two runs into one folder at once each replaced the other's results without a word."""
    folder = faces_folder(tmp_path / "in", 2, seed=83)
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".facelabel-lock"
    writer = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), "2026-12-01T01:00:00+00:00"],
                              stdout=subprocess.PIPE, text=True)  # a run still writing
    try:
        assert writer.stdout.readline() == "held\n"
        status = job.main(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and err[-1] == (f"error: another run (process {writer.pid}, started "
                                           f"2026-12-01T01:00:00+00:00) is writing into {out}: wait for it to "
                                           f"finish, or give another --output")
        assert sorted(p.name for p in out.iterdir()) == [lock.name]  # nothing of ours left behind
    finally:
        writer.kill()
        writer.wait()
    summary = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])  # gone now
    assert summary["images_labelled"] == 2 and not lock.exists()


def test_of_two_runs_started_together_into_one_output_exactly_one_goes_on(tmp_path):
    folder = faces_folder(tmp_path / "in", STOPPED_RUN_FACES, seed=85)  # long enough to overlap the other
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline.run", "--input", str(folder), "--output", str(out), "--faces", "none"]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(run.wait(timeout=300), run.communicate()[1]) for run in runs]
    assert sorted(status for status, _ in results) == [0, 2], results
    refused = next(err for status, err in results if status == 2)
    assert refused.strip().splitlines()[-1].startswith("error: another run (process ")
    assert sorted(p.name for p in out.iterdir()) == ["errors.csv", "labels.csv", "summary.json"]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_run_stopped_by_a_signal_says_so_in_one_line_and_keeps_the_last_results(tiny_model_dir, tmp_path, stop):
    """A scheduler's or `timeout`'s SIGTERM used to leave the staging folder in the output and print nothing;
    Ctrl-C printed three tracebacks. Now: one line, exit 128 + the signal, outputs as before, no staging left."""
    out = tmp_path / "out"
    job.run(["--input", str(faces_folder(tmp_path / "first", 2, seed=50)), "--output", str(out),
             "--model", str(tiny_model_dir)])
    before = {name: (out / name).read_bytes() for name in ("labels.csv", "errors.csv", "summary.json")}
    many = faces_folder(tmp_path / "many", STOPPED_RUN_FACES, seed=51)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", "--input", str(many), "--output", str(out),
         "--model", str(tiny_model_dir)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:  # wait until the run has started, then let it work a little
        lines.append(line)
        if "INFO labelling" in line:
            break
    time.sleep(STOP_MIDWAY_SECONDS)
    process.send_signal(stop)
    _, rest = process.communicate(timeout=120)
    err = "".join(lines) + rest
    assert process.returncode == 128 + stop, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(f"error: stopped by {stop.name}: the output folder keeps")
    assert "Traceback" not in err, err[-2000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no staging folder left
    assert {name: (out / name).read_bytes() for name in before} == before


@pytest.fixture
def stop_handlers():
    """The job's own stop handlers in this process, and everything they change put back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in stopping.STOP_SIGNALS}
    hook = threading.excepthook
    stopping.install()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    threading.excepthook = hook
    logging.disable(logging.NOTSET)
    stopping.stopped_by.clear()
    stopping.outputs_in_place.clear()


def test_a_stop_while_outputs_are_moved_into_place_waits_until_they_are(stop_handlers):
    """SIGTERM between deleting the previous outputs and moving the new ones in left no labels.csv at all."""
    moved = []
    with pytest.raises(stopping.Interrupted):
        with stopping.held_until_done():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler runs here, in the main thread
            moved.append("all")
    assert moved == ["all"] and stopping.stopped_by == [signal.SIGTERM]
    stopping.outputs_in_place.append(True)
    assert "after this run's outputs were in place" in stopping.stopped_line(signal.SIGTERM)


def test_new_outputs_replace_the_previous_ones_before_anything_is_deleted(tiny_model_dir, tmp_path, monkeypatch):
    """Moving outputs into place never leaves a moment without labels.csv (it deleted first, then renamed)."""
    out = tmp_path / "out"
    job.run(["--input", str(faces_folder(tmp_path / "a", 2, seed=80)), "--output", str(out),
             "--model", str(tiny_model_dir), "--report"])
    deletions = []
    real_delete = outputs.FileSystems.delete

    def watched_delete(paths):
        real_delete(paths)
        deletions.append((list(paths), (out / "labels.csv").is_file()))  # the folder as a stop would leave it
    monkeypatch.setattr(outputs.FileSystems, "delete", watched_delete)
    job.run(["--input", str(faces_folder(tmp_path / "b", 3, seed=81)), "--output", str(out),
             "--model", str(tiny_model_dir)])
    assert [paths for paths, _ in deletions if str(out / "report.html") in paths], deletions  # the old report
    assert all(labels_there for _, labels_there in deletions)
    assert len(read_rows(out / "labels.csv")) == 3


def descendants_running(command_part: str, ancestor: int) -> list[int]:
    """Ids of the running processes below `ancestor` whose command line holds command_part (Linux /proc)."""
    parents, commands = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
                    commands[int(entry)] = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
    def below(pid):
        while pid in parents and pid > 1:
            pid = parents[pid]
            if pid == ancestor:
                return True
        return False
    return [pid for pid, command in commands.items() if command_part in command and below(pid)]


def test_ctrl_c_in_a_terminal_stops_a_multi_process_run_in_one_line(tiny_model_dir, tmp_path):
    """Ctrl-C signals the terminal's whole process group: Beam's worker processes each printed a traceback
    (85 lines measured) before our line. They now run in a group of their own and end with the job."""
    many = faces_folder(tmp_path / "many", STOPPED_RUN_FACES, seed=52)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", "--input", str(many), "--output", str(out), "--faces", "none",
         "--model", str(tiny_model_dir), "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline, workers = time.time() + 120, []
    while not workers and process.poll() is None:
        assert time.time() < deadline, "no Beam worker process started"
        time.sleep(0.2)
        workers = descendants_running("sdk_worker_main", process.pid)
    time.sleep(1.0)  # the workers import Beam and connect
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: the whole foreground group
    try:
        _, err = process.communicate(timeout=120)  # it hung once, in Beam's wait for its workers
    finally:
        if process.poll() is None:  # leave nothing running behind a failed test
            for pid in [process.pid, *workers]:
                os.kill(pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGINT, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("error: stopped by SIGINT: the output folder keeps"), err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    time.sleep(STOP_AFTER_SECONDS)
    assert workers and not [pid for pid in workers if os.path.exists(f"/proc/{pid}")], "workers outlived the job"
    assert not [path for path in (out.iterdir() if out.exists() else []) if path.name.startswith(".facelabel")]


def test_a_stop_while_the_job_is_still_starting_is_one_line(tmp_path):
    """A stop during the first seconds (TensorFlow's import) printed a 36-line traceback, or nothing."""
    process = subprocess.Popen([sys.executable, "-m", "pipeline.run", "--input", str(tmp_path), "--output",
                                str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    time.sleep(STOP_WHILE_STARTING_SECONDS)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert err.strip() == "error: stopped by SIGTERM before the run started", err[-2000:]


def test_symlinks_are_followed_loops_are_not_and_broken_links_are_reported(tiny_model_dir, tmp_path):
    elsewhere = faces_folder(tmp_path / "elsewhere", 2, seed=80)
    folder = faces_folder(tmp_path / "in", 2, seed=90)
    (folder / "linked_folder").symlink_to(elsewhere, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "linked_face.png").symlink_to(folder / "face_0.png")
    (folder / "broken.png").symlink_to(tmp_path / "missing.png")
    out = tmp_path / "out"
    summary = job.run(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir)])
    labelled = sorted(row[0] for row in read_rows(out / "labels.csv"))
    assert labelled == sorted([str(folder / "face_0.png"), str(folder / "face_1.png"), str(folder / "linked_face.png"),
                               str(folder / "linked_folder" / "face_0.png"),
                               str(folder / "linked_folder" / "face_1.png")])
    assert read_rows(out / "errors.csv") == [[str(folder / "broken.png"),
                                              "broken symbolic link (its target does not exist)"]]
    assert summary["images_matched"] == 6 == summary["images_labelled"] + summary["images_failed"]
