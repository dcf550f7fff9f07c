"""gs:// end to end against a local Cloud Storage server: the labelling job, its user errors, trainer and evaluate."""

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest

from conftest import encode, synthetic_face, write_synthetic_dataset
from gcs_emulator import MISSING_BUCKET
from pipeline import model_files
from pipeline import run as job
from trainer import evaluate, task

LABELS_HEADER = ["path", "label", "p_happy", "p_sad", "model_version", "file_size", "file_modified",
                 "face", "faces_found", "face_box", "face_score", "face_detector"]
TRAIN_PER_CLASS = 30


def parse_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.fixture(scope="module")
def gcs_model(gcs, tiny_model_dir) -> str:
    return gcs.upload_dir(tiny_model_dir, "models/tiny")


@pytest.fixture(scope="module")
def gcs_faces(gcs) -> tuple[str, dict[str, str], set[str]]:
    """gs://bucket/in/...: faces in nested "folders", one broken image and one non-image file."""
    expected = {}
    for i, name in enumerate(["a.png", "sub/b.png", "sub/deeper/c.PNG", "sub/deeper/d.jpg", "e f.png", "g.png"]):
        image = synthetic_face(i % 2 == 0, seed=700 + i)
        uri = gcs.upload(f"in/{name}", encode(image, "JPEG" if name.endswith(".jpg") else "PNG"))
        expected[uri] = "happy" if i % 2 == 0 else "sad"
    bad = {gcs.upload("in/sub/broken.jpg", b"not an image")}
    gcs.upload("in/notes.txt", b"skipped: not an image name")
    return gcs.uri("in"), expected, bad


def test_pipeline_reads_labels_and_writes_on_gcs(gcs, gcs_model, gcs_faces):
    input_uri, expected, bad = gcs_faces
    summary = job.run(["--input", input_uri + "/", "--output", gcs.uri("out"), "--model", gcs_model])

    assert gcs.list("out/") == ["out/errors.csv", "out/labels.csv", "out/summary.json"]  # write probe removed
    labels = parse_csv(gcs.read("out/labels.csv"))
    assert labels[0] == LABELS_HEADER
    assert {row[0]: row[1] for row in labels[1:]} == expected  # one row per image, paths as gs:// URIs
    assert all(row[4] == "tiny-test-model" for row in labels[1:])
    errors = parse_csv(gcs.read("out/errors.csv"))
    assert errors[0] == ["path", "error"]
    assert {row[0]: row[1] for row in errors[1:]} == {path: "not a recognised image format" for path in bad}
    assert json.loads(gcs.read("out/summary.json")) == summary
    assert summary["images_matched"] == len(expected) + len(bad)
    assert summary["images_labelled"] == len(expected) and summary["images_failed"] == len(bad)


def test_a_staging_folder_left_on_gcs_is_named_not_deleted(gcs, gcs_model, gcs_faces, caplog):
    """On gs:// nothing tells a killed run's staging folder from a running Dataflow job's: one warning names it."""
    leftover = ".facelabel-staging-1764547200-some-host-4242"
    gcs.upload(f"out_left/{leftover}/labels.csv", b"path,label\n")
    with caplog.at_level("WARNING", logger="facelabel"):
        job.run(["--input", gcs_faces[0] + "/", "--output", gcs.uri("out_left"), "--model", gcs_model])
    assert gcs.list("out_left/") == [f"out_left/{leftover}/labels.csv", "out_left/errors.csv",
                                     "out_left/labels.csv", "out_left/summary.json"]
    warned = [r.getMessage() for r in caplog.records if r.name == "facelabel" and r.levelname == "WARNING"]
    assert warned == [f"1 staging folder of other runs in {gcs.uri('out_left')} ({leftover}): if no run is "
                      "writing there, remove it"]


def test_glob_input_on_gcs(gcs, gcs_model, gcs_faces):
    _, expected, _ = gcs_faces
    summary = job.run(["--input", gcs.uri("in/sub/deeper/*"), "--output", gcs.uri("out_glob"), "--model", gcs_model])
    wanted = {uri for uri in expected if "/sub/deeper/" in uri}
    assert {row[0] for row in parse_csv(gcs.read("out_glob/labels.csv"))[1:]} == wanted
    assert summary["images_matched"] == len(wanted)


@pytest.mark.parametrize("flag,value,message", [
    ("--input", f"gs://{MISSING_BUCKET}/in", f"error: cannot list input gs://{MISSING_BUCKET}/in (NotFound"),
    ("--input", "gs://facelabel-test/no/such/prefix", "error: input not found or matches no files"),
    ("--model", f"gs://{MISSING_BUCKET}/model", f"error: cannot list model folder gs://{MISSING_BUCKET}/model"),
    ("--model", "gs://facelabel-test/models/none", "error: model folder not found or empty"),
    ("--output", f"gs://{MISSING_BUCKET}/out", "error: output folder is not writable: cannot reach gs://"),
])
def test_missing_bucket_or_prefix_is_one_line_and_exit_2(gcs, gcs_model, gcs_faces, capsys, flag, value, message):
    args = {"--input": gcs_faces[0], "--output": gcs.uri("out_never"), "--model": gcs_model, flag: value}
    assert job.main([item for pair in args.items() for item in pair]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message), err
    assert "\n" not in err and "Traceback" not in err
    assert gcs.list("out_never/") == []


def test_copies_of_a_remote_model_do_not_outlive_the_process(gcs, gcs_model, tmp_path, monkeypatch):
    """The per-process copy of a gs:// model is removed at exit (nightly runs used to leave one in /tmp each), and
    a copy that fails leaves nothing behind."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model_files.remove_local_copies()
    copy = model_files.localize_model(gcs_model)
    assert copy.startswith(str(tmp_path)) and (Path(copy) / "facelabel.json").is_file()
    assert model_files.localize_model(gcs_model) == copy  # one copy per process
    with pytest.raises(FileNotFoundError):
        model_files.localize_model("gs://facelabel-test/models/none")
    model_files.remove_local_copies()
    assert list(tmp_path.iterdir()) == []


def test_trainer_and_evaluate_on_gcs(gcs, tmp_path, capsys):
    data_uri = gcs.upload_dir(write_synthetic_dataset(tmp_path / "data", TRAIN_PER_CLASS), "data")
    model_uri = gcs.uri("models/trained")
    assert task.main(["--data-dir", data_uri, "--output-dir", model_uri, "--epochs", "2", "--batch-size", "16",
                      "--block-filters", "4,8", "--validation-fraction", "0.2"]) == 0
    files = gcs.list("models/trained/")
    assert {"models/trained/saved_model.pb", "models/trained/facelabel.json", "models/trained/metrics.json",
            "models/trained/variables/variables.index"} <= set(files)
    metadata = json.loads(gcs.read("models/trained/facelabel.json"))
    assert metadata["trained_on"]["data_dir"] == "data"
    assert metadata["trained_on"]["split"]["validation"] == {"happy": 6, "sad": 6}

    assert evaluate.main(["--model", model_uri, "--data-dir", data_uri, "--split", "validation",
                          "--json", gcs.uri("eval/evaluation.json")]) == 0
    report = json.loads(gcs.read("eval/evaluation.json"))
    assert report["images"] == 12 and report["data_dir"] == "data"
    assert report["model_version"] == metadata["model_version"]
    # Not compared count for count: the trainer's threshold equals one validation score computed in float64,
    # which the float32 SavedModel can land just below (an image on the boundary flips).
    recorded = metadata["validation_metrics"]["confusion_matrix"]["counts"]
    counts = report["confusion_matrix"]["counts"]
    assert sum(abs(a - b) for row, other in zip(counts, recorded) for a, b in zip(row, other)) <= 2
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("main,args,message", [
    (task.main, ["--data-dir", "gs://facelabel-test/no-data", "--output-dir", "gs://facelabel-test/m"],
     "error: data folder not found: gs://facelabel-test/no-data"),
    (task.main, ["--data-dir", "gs://facelabel-test/in", "--output-dir", f"gs://{MISSING_BUCKET}/m"],
     f"error: cannot list gs://{MISSING_BUCKET}/m (NotFound"),
    (evaluate.main, ["--model", f"gs://{MISSING_BUCKET}/m", "--data-dir", "gs://facelabel-test/in"],
     f"error: cannot list gs://{MISSING_BUCKET}/m (NotFound"),
    (evaluate.main, ["--model", "gs://facelabel-test/no-model", "--data-dir", "gs://facelabel-test/in"],
     "error: folder not found or empty: gs://facelabel-test/no-model"),
])
def test_trainer_and_evaluate_refuse_missing_gcs_paths(gcs, capsys, main, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err
