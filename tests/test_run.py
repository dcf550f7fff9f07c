"""`pipeline.run` end to end on folders made here: accounting, CSV quoting, outputs, and user mistakes."""

import csv
import os
import json
import shutil
import tempfile

import pytest

from conftest import encode, synthetic_face
from pipeline import run as job

LABELS_HEADER = ["path", "label", "p_happy", "p_sad", "model_version", "file_size", "file_modified",
                 "face", "faces_found", "face_box", "face_score", "face_detector"]
WEIRD_NAMES = ["with space.png", "comma,name.png", 'quote"name.png', "new\nline.png", "ünïcødé 笑.png"]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.fixture
def mixed_folder(tmp_path):
    """Good bright/dark faces (some nested, odd names, upper-case endings), bad files and a non-image file."""
    root = tmp_path / "in"
    (root / "nested" / "deeper").mkdir(parents=True)
    expected = {}
    for i in range(10):
        folder = root if i < 5 else root / "nested" / "deeper"
        path = folder / (f"face_{i}.PNG" if i % 3 == 0 else f"face_{i}.png")
        synthetic_face(i % 2 == 0, seed=900 + i).save(path)
        expected[str(path)] = "happy" if i % 2 == 0 else "sad"
    for j, name in enumerate(WEIRD_NAMES):
        synthetic_face(True, seed=950 + j).save(root / "nested" / name)
        expected[str(root / "nested" / name)] = "happy"
    good_jpeg = encode(synthetic_face(False, seed=999, size=200), "JPEG")
    bad = {"empty.jpg": b"", "text.jpeg": b"just some text", "truncated.jpg": good_jpeg[: len(good_jpeg) // 2]}
    for name, data in bad.items():
        (root / name).write_bytes(data)
    (root / "README.txt").write_text("not an image and not matched")
    return root, expected, {str(root / name) for name in bad}


def test_every_image_is_labelled_or_reported_exactly_once(tiny_model_dir, mixed_folder, tmp_path):
    root, expected, bad = mixed_folder
    out = tmp_path / "out"
    summary = job.run(["--input", str(root), "--output", str(out), "--model", str(tiny_model_dir)])

    labels = read_csv(out / "labels.csv")
    assert labels[0] == LABELS_HEADER
    rows = labels[1:]
    assert {row[0]: row[1] for row in rows} == expected  # paths round-trip exactly, weird names included
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    for row in rows:
        assert abs(float(row[2]) + float(row[3]) - 1.0) < 1e-5 and row[4] == "tiny-test-model"
        stat = os.stat(row[0])
        assert int(row[5]) == stat.st_size and abs(float(row[6]) - stat.st_mtime) < 1e-3

    errors = read_csv(out / "errors.csv")
    assert errors[0] == ["path", "error"]
    reasons = {row[0]: row[1] for row in errors[1:]}
    assert set(reasons) == bad
    assert reasons[str(root / "empty.jpg")] == "empty file (0 bytes)"
    assert reasons[str(root / "text.jpeg")] == "not a recognised image format"
    assert reasons[str(root / "truncated.jpg")].startswith("corrupt or truncated image")

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == summary
    assert summary["images_matched"] == len(expected) + len(bad) == summary["images_labelled"] + summary["images_failed"]
    assert summary["images_failed"] == len(bad)
    assert summary["labels"] == {"happy": sum(v == "happy" for v in expected.values()),
                                 "sad": sum(v == "sad" for v in expected.values()), "no_face": 0}
    assert summary["model_version"] == "tiny-test-model" and summary["wall_seconds"] > 0


def test_glob_input_takes_exactly_the_matched_files(tiny_model_dir, mixed_folder, tmp_path):
    root, expected, _ = mixed_folder
    out = tmp_path / "out"
    summary = job.run(["--input", str(root / "nested" / "deeper" / "*.png"), "--output", str(out),
                       "--model", str(tiny_model_dir)])
    # A literal image extension matches in any case, as in folder mode: face_6.PNG and face_9.PNG are taken.
    wanted = {p for p in expected if p.startswith(str(root / "nested" / "deeper")) and p.lower().endswith(".png")}
    assert any(p.endswith(".PNG") for p in wanted)
    assert {row[0] for row in read_csv(out / "labels.csv")[1:]} == wanted
    assert summary["images_matched"] == len(wanted)


def test_empty_folder_writes_header_only_outputs(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    summary = job.run(["--input", str(tmp_path / "empty"), "--output", str(out), "--model", str(tiny_model_dir)])
    assert read_csv(out / "labels.csv") == [LABELS_HEADER]
    assert read_csv(out / "errors.csv") == [["path", "error"]]
    assert summary["images_matched"] == 0 and summary["labels"] == {"happy": 0, "sad": 0, "no_face": 0}


@pytest.mark.parametrize("make_args,message", [
    (lambda d, m: ["--input", str(d / "missing"), "--output", str(d / "o"), "--model", m],
     "error: input not found or matches no files"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", str(d / "no_model")],
     "error: model folder not found"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", str(d)],
     "error: not a SavedModel"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", m, "--batchsize=3"],
     "error: unrecognized argument: --batchsize=3"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", m, "--face", "all"],
     "error: unrecognized argument: --face (did you mean --faces?)"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", str(d / "face.png")],
     "error: model is a file, not a model folder"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "face.png"), "--model", m],
     "error: output is a file, not a folder"),
    (lambda d, m: ["--input", str(d), "--output", "", "--model", m], "error: --output is empty"),
    (lambda d, m: ["--input", " ", "--output", str(d / "o"), "--model", m], "error: --input is empty"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", ""], "error: --model is empty"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", m, "--direct_num_workers=-2"],
     "error: --direct_num_workers must be 0 (one per core) or more, got -2"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", m, "--direct_num_workers=abc"],
     "error: argument --direct_num_workers: invalid int value: 'abc'"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", m, "--direct_running_mode", "bogus"],
     "error: argument --direct_running_mode: invalid choice: 'bogus'"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", m, "--min-batch-size", "500"],
     "error: --min-batch-size 500 is above the default --max-batch-size 256"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", m, "--min-batch-size", "9",
                   "--max-batch-size", "8"], "error: --min-batch-size 9 is above --max-batch-size 8 (see --help)"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", m, "--input=" + str(d / "face.png")],
     "error: --input is given more than once: give one (a folder, a file or a pattern; a pattern such as "
     "'{a,b}/*.jpg' or a parent folder takes several)"),
    (lambda d, m: ["--input", str(d), "--output", str(d / "o"), "--model", m, "--model", m],
     "error: --model is given more than once"),
    (lambda d, m: ["--output", str(d / "o")], "error: the following arguments are required: --input"),
    (lambda d, m: ["--input", str(d), "--outptu", str(d / "o")],  # a misspelt required flag is named as such
     "error: unrecognized argument: --outptu (did you mean --output?)"),
])
def test_user_mistakes_print_one_line_and_exit_2(tiny_model_dir, tmp_path, capsys, monkeypatch, make_args,
                                                 message):
    synthetic_face(True, seed=1).save(tmp_path / "face.png")
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(job.main(make_args(tmp_path, str(tiny_model_dir))))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message), err
    assert "\n" not in err and "Traceback" not in err
    assert list(temp.iterdir()) == []  # Beam's pipeline folder too (one was left in /tmp per mistake)


def test_help_shows_input_and_output_as_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        job.parse_args(["--help"])
    assert exit_info.value.code == 0
    usage = " ".join(capsys.readouterr().out.split("options:")[0].split())
    assert "--input INPUT --output OUTPUT" in usage and "[--input" not in usage


@pytest.mark.parametrize("damage", ["no variables", "truncated variables"])
def test_a_damaged_model_is_one_error_line(tiny_model_dir, tmp_path, capsys, damage):
    """A half-copied model folder passes a look at saved_model.pb; it is loaded up front, as the workers would."""
    synthetic_face(True, seed=1).save(tmp_path / "face.png")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    if damage == "no variables":
        shutil.rmtree(model / "variables")
    else:
        data = next((model / "variables").glob("variables.data-*"))
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    status = job.main(["--input", str(tmp_path / "face.png"), "--output", str(tmp_path / "o"),
                       "--model", str(model)])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot load SavedModel") and "\n" not in err and "Traceback" not in err


def test_unwritable_output_is_refused(tiny_model_dir, tmp_path, capsys):
    synthetic_face(True, seed=1).save(tmp_path / "face.png")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    status = job.main(["--input", str(tmp_path), "--output", str(blocker / "sub"), "--model", str(tiny_model_dir)])
    assert status == 2
    assert capsys.readouterr().err.startswith("error: output folder is not writable")


@pytest.mark.parametrize("flags,expected", [
    ([], 0),
    (["--inference-threads", "3"], 3),
    (["--runner=DataflowRunner"], 1),
    (["--direct_running_mode=multi_processing", f"--direct_num_workers={os.cpu_count() or 1}"], 1),
])
def test_inference_threads_share_the_cores_between_worker_processes(flags, expected):
    from apache_beam.options.pipeline_options import PipelineOptions

    args, pipeline_args = job.parse_args(["--input", "x", "--output", "y", *flags])
    assert job.inference_threads(args, PipelineOptions(pipeline_args)) == expected


def test_a_run_loads_the_model_once(tiny_model_dir, tmp_path, monkeypatch):
    """The up-front check reads the model's signature without loading it; the worker loads it once."""
    import tensorflow as tf

    loads, load = [], tf.saved_model.load
    monkeypatch.setattr(tf.saved_model, "load", lambda *args, **kwargs: loads.append(args) or load(*args, **kwargs))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        synthetic_face(i % 2 == 0, seed=i).save(folder / f"face_{i}.png")
    summary = job.run(["--input", str(folder), "--output", str(tmp_path / "out"), "--model", str(tiny_model_dir)])
    assert summary["images_labelled"] == 3
    assert len(loads) == 1


def test_the_command_exits_with_main_status_after_writing_everything(tiny_model_dir, tmp_path):
    """`python -m pipeline.run` ends without the interpreter's teardown: the status and outputs must survive."""
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        synthetic_face(i % 2 == 0, seed=i).save(folder / f"face_{i}.png")
    (folder / "broken.png").write_bytes(b"broken")
    done = subprocess.run([sys.executable, "-m", "pipeline.run", "--input", str(folder), "--output",
                           str(tmp_path / "out"), "--model", str(tiny_model_dir), "--max-error-rate", "0.2"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 3, done.stderr[-2000:]
    assert all(part in done.stdout for part in ("4 images matched", "3 labelled", "1 failed (25.0%)"))
    assert done.stderr.rstrip().endswith("more than --max-error-rate allows")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["images_labelled"] == 3


def test_the_date_placeholder_in_output_becomes_the_launch_date():
    import datetime

    late = datetime.datetime(2026, 11, 30, 23, 59, tzinfo=datetime.timezone.utc)
    assert job.dated("gs://bucket/labels/{date}/", late) == "gs://bucket/labels/2026-11-30/"
    assert job.dated("out/plain", late) == "out/plain"


def test_the_summary_counts_in_words():
    from pipeline.summary import format_summary

    summary = {"images_matched": 1, "images_failed": 0, "images_labelled": 1, "images_no_face": 0,
               "labels": {"happy": 1, "sad": 0, "no_face": 0}, "errors_by_reason": {}, "wall_seconds": 2.0,
               "model_version": "v", "output": "out", "faces": "none"}
    text = format_summary(summary)
    assert text.startswith("facelabel: 1 image matched: 1 labelled, 0 without a face, 0 failed")
    assert "(images; --faces none)" in text
    assert format_summary({**summary, "images_matched": 2}).startswith("facelabel: 2 images matched")
    assert "(faces; --faces all)" in format_summary({**summary, "faces": "all"})
    # Error kinds: five shown and "N more kinds" after them, but a sixth is shown rather than "1 more kind".
    six = {f"reason {i}": 1 for i in range(6)}
    assert "more kind" not in format_summary({**summary, "errors_by_reason": six})
    assert "reason 5" in format_summary({**summary, "errors_by_reason": six})
    seven = format_summary({**summary, "errors_by_reason": {**six, "reason 6": 1}})
    assert "... 2 more kinds of error" in seven and "reason 5" not in seven


def test_progress_is_counted_while_faces_are_classified(tiny_model_dir, tmp_path, monkeypatch):
    """The progress step sees rows as batches finish, not all at the end of the run (as it did after the Flatten
    of labelled and faceless rows, where the DirectRunner delivers rows only once every image is done)."""
    import time

    from pipeline import model_handler, transforms

    events = []
    classify, progress = model_handler.ClassifierHandler.run_inference, transforms.ReportProgress.process
    monkeypatch.setattr(model_handler.ClassifierHandler, "run_inference",
                        lambda self, *args, **kwargs: events.append(("batch", time.monotonic()))
                        or classify(self, *args, **kwargs))
    monkeypatch.setattr(transforms.ReportProgress, "process",
                        lambda self, row: events.append(("row", time.monotonic())) or progress(self, row))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(12):
        synthetic_face(i % 2 == 0, seed=40 + i).save(folder / f"face_{i:02d}.png")
    job.run(["--input", str(folder), "--output", str(tmp_path / "out"), "--model", str(tiny_model_dir),
             "--faces", "none", "--max-batch-size", "2"])
    kinds = [kind for kind, _ in events]
    assert kinds.count("batch") == 6 and kinds.count("row") == 12
    assert kinds.index("row") < len(kinds) - 1 - kinds[::-1].index("batch")  # a row before the last batch


def test_progress_rate_counts_from_the_first_row_not_from_start_up(monkeypatch, caplog):
    # A worker that spent 60 s loading models before its first row said "1 face labelled (0.0 faces/s)".
    import logging

    from pipeline import transforms

    clock = iter([160.0, 160.5, 171.0])  # rows at 160 s (a minute after start-up), 160.5 s and 171 s
    monkeypatch.setattr(transforms.time, "monotonic", lambda: next(clock))
    step = transforms.ReportProgress()
    step.setup()
    with caplog.at_level(logging.INFO, logger="facelabel"):
        for _ in range(3):
            assert not list(step.process({}))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert lines == ["progress: 3 faces labelled by this worker (0.2 faces/s)"]  # 2 more rows in 11 s


def test_runs_checking_one_output_folder_at_once_do_not_trip_each_other(tmp_path):
    # Two runs started together into one folder each write and delete a probe file: with one shared name, one
    # deleted the other's probe and that run was told "not writable" instead of meeting the output lock.
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.checks import check_output

    out = tmp_path / "out"
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: check_output(str(out)), range(400)))  # raises UserError on a collision
    assert list(out.iterdir()) == []  # no probe left behind
