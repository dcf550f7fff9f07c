"""Mirror averaging at labelling time (model.mirror): the same answers as a network exported with it inside, in the
pipeline where faces are found (`--mirror-average auto`), in the rows' model version, and in `--incremental`."""

import numpy as np
import pytest

from conftest import assert_a_changed_setting_relabels, read_rows, synthetic_face, synthetic_face_folder
from model.mirror import (MIRROR_AUTO, MIRROR_OFF, MIRROR_ON, MIRROR_VERSION_SUFFIX, MirrorAveraged,
                          average_with_mirror, mirror_wanted, served)
from model.saved import load_classifier
from pipeline import run as job


def lopsided_faces(count: int, seed: int) -> np.ndarray:
    """float32 [count, 48, 48, 1] faces brighter on one side than the other, so a face and its mirror differ."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-60, 60, 48, dtype=np.float32)[None, None, :, None] * rng.uniform(-1, 1, (count, 1, 1, 1))
    base = rng.uniform(60, 190, (count, 1, 1, 1)).astype(np.float32)
    return np.clip(base + ramp + rng.normal(0, 25, (count, 48, 48, 1)), 0, 255).astype(np.float32)


@pytest.fixture
def faces(tmp_path):
    return synthetic_face_folder(tmp_path / "in", 10, seed=900)


def test_averaged_probabilities_are_those_of_the_averaged_logits():
    rng = np.random.default_rng(3)
    logits, mirrored, temperature = rng.normal(0, 4, (50, 3)), rng.normal(0, 4, (50, 3)), 0.8

    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    expected = softmax((logits + mirrored) / 2 / temperature)
    got = average_with_mirror(softmax(logits / temperature), softmax(mirrored / temperature))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_served_with_mirror_answers_as_the_network_exported_with_it(tiny_single_view_model_dir, tiny_model_dir):
    single = load_classifier(tiny_single_view_model_dir)
    inside = load_classifier(tiny_model_dir)  # the same weights, mirror averaging inside the SavedModel
    faces = lopsided_faces(40, seed=1)
    averaged = served(single, True)
    assert isinstance(averaged, MirrorAveraged)
    assert averaged.metadata.model_version == "tiny-single-view" + MIRROR_VERSION_SUFFIX
    assert np.abs(single(faces) - inside(faces)).max() > 1e-3  # the mirror pass changes these faces' answers
    np.testing.assert_allclose(averaged(faces), inside(faces), atol=1e-5)
    assert served(single, False) is single


def test_a_network_that_averages_already_is_served_unchanged(tiny_model_dir):
    inside = load_classifier(tiny_model_dir)
    assert served(inside, True) is inside and inside.metadata.model_version == "tiny-test-model"


@pytest.mark.parametrize("setting, finds_faces, wanted", [
    (MIRROR_AUTO, True, True), (MIRROR_AUTO, False, False), (MIRROR_ON, False, True), (MIRROR_OFF, True, False)])
def test_auto_averages_where_faces_are_found(setting, finds_faces, wanted):
    assert mirror_wanted(setting, finds_faces) is wanted


def test_an_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="must be one of"):
        mirror_wanted("yes", True)


def test_the_job_marks_rows_and_answers_as_the_averaged_classifier(tiny_single_view_model_dir, faces, tmp_path):
    common = ["--input", str(faces), "--model", str(tiny_single_view_model_dir), "--faces", "none"]
    plain = job.run([*common, "--output", str(tmp_path / "plain")])
    averaged = job.run([*common, "--output", str(tmp_path / "mirror"), "--mirror-average", "on"])
    assert plain["model_version"] == "tiny-single-view" and plain["mirror_average"] is False
    assert averaged["model_version"] == "tiny-single-view+mirror" and averaged["mirror_average"] is True
    rows = read_rows(tmp_path / "mirror" / "labels.csv")
    assert len(rows) == 10 and {r["model_version"] for r in rows} == {"tiny-single-view+mirror"}
    assert_rows_answer_as(rows, served(load_classifier(tiny_single_view_model_dir), True))


def test_where_faces_are_found_the_job_averages_by_default(tiny_single_view_model_dir, faces, tmp_path):
    summary = job.run(["--input", str(faces), "--model", str(tiny_single_view_model_dir),
                       "--output", str(tmp_path / "o")])
    assert summary["faces"] == "largest" and summary["mirror_average"] is True
    assert summary["model_version"] == "tiny-single-view" + MIRROR_VERSION_SUFFIX
    rows = read_rows(tmp_path / "o" / "labels.csv")
    assert {r["model_version"] for r in rows} == {summary["model_version"]}
    # The synthetic crops hold no face the detectors find: each is taken whole (face-sized), then averaged.
    whole = [r for r in rows if r["faces_found"] == "0"]
    assert whole
    assert_rows_answer_as(whole, served(load_classifier(tiny_single_view_model_dir), True))


def assert_rows_answer_as(rows: list[dict], classifier) -> None:
    """Each row's p_happy is the classifier's on its whole image."""
    from model.preprocess import preprocess_image

    for row in rows:
        with open(row["path"], "rb") as handle:
            expected = classifier(preprocess_image(handle.read())[None])[0]
        assert abs(float(row["p_happy"]) - expected[0]) < 1e-5


def test_the_int8_copy_is_averaged_too(tiny_single_view_int8_model_dir, tmp_path):
    """Faces between bright and dark and lopsided, so the tiny model is unsure and a face and its mirror differ by
    more than the int8 copy's probability step (it is sure of the synthetic faces to within one step)."""
    from PIL import Image

    from model.lite import load_int8_classifier

    faces = tmp_path / "lopsided"
    faces.mkdir()
    for i, face in enumerate(lopsided_faces(10, seed=77)):
        Image.fromarray(face[..., 0].astype(np.uint8)).save(faces / f"face_{i}.png")
    common = ["--input", str(faces), "--model", str(tiny_single_view_int8_model_dir), "--faces", "none",
              "--precision", "int8"]
    job.run([*common, "--output", str(tmp_path / "plain")])
    summary = job.run([*common, "--output", str(tmp_path / "mirror"), "--mirror-average", "on"])
    assert summary["model_version"] == "tiny-single-view+int8+mirror"
    rows = read_rows(tmp_path / "mirror" / "labels.csv")
    assert {r["model_version"] for r in rows} == {"tiny-single-view+int8+mirror"}
    assert_rows_answer_as(rows, MirrorAveraged(load_int8_classifier(tiny_single_view_int8_model_dir, threads=1)))
    plain = {r["path"]: float(r["p_happy"]) for r in read_rows(tmp_path / "plain" / "labels.csv")}
    assert any(abs(plain[r["path"]] - float(r["p_happy"])) > 1e-3 for r in rows)  # the mirror pass counted


def test_a_model_without_the_recorded_setting_is_taken_to_average_inside(tiny_single_view_model_dir):
    import dataclasses

    single = load_classifier(tiny_single_view_model_dir)
    unrecorded = dataclasses.replace(single.metadata, training_config={})
    assert served(dataclasses.replace(single, metadata=unrecorded), True).metadata is unrecorded


def test_the_page_serves_as_the_default_mode(tiny_single_view_model_dir):
    import io

    from app import server
    from model.preprocess import preprocess_image

    app = server.create_app(str(tiny_single_view_model_dir))
    data = io.BytesIO()
    synthetic_face(True, seed=56).save(data, "PNG")
    response = app.test_client().post("/api/label", data={server.UPLOAD_FIELD: (io.BytesIO(data.getvalue()), "f.png")},
                                      content_type="multipart/form-data")
    answer = response.get_json()
    assert answer["model_version"] == "tiny-single-view" + MIRROR_VERSION_SUFFIX
    expected = served(load_classifier(tiny_single_view_model_dir), True)(preprocess_image(data.getvalue())[None])[0]
    assert list(answer["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-6)


def test_changing_mirror_averaging_relabels_an_incremental_run(tiny_single_view_model_dir, faces, tmp_path):
    args = ["--input", str(faces), "--output", str(tmp_path / "out"), "--model", str(tiny_single_view_model_dir),
            "--faces", "none", "--incremental"]
    assert_a_changed_setting_relabels(args, ["--mirror-average", "on"], images=10)


def test_a_bad_setting_is_one_error_line(faces, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        job.main(["--input", str(faces), "--output", str(tmp_path / "o"), "--mirror-average", "yes"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--mirror-average" in err and err.count("\n") == 1, err


class SaturatedThenUnsure:
    """An int8-like classifier (probabilities in steps of 1/256): sure of happy for the faces (its sad
    probability rounded to 0), leaning sad for their mirror images."""

    probability_step = 1 / 256

    def __init__(self, metadata):
        self.metadata, self.calls = metadata, 0

    def __call__(self, images):
        self.calls += 1
        row = [255 / 256, 0.0] if self.calls == 1 else [0.05, 0.95]
        return np.array([row] * len(images), np.float32)


def test_a_probability_rounded_to_zero_does_not_outweigh_the_other_pass(tiny_single_view_model_dir):
    metadata = load_classifier(tiny_single_view_model_dir).metadata
    averaged = MirrorAveraged(SaturatedThenUnsure(metadata))(lopsided_faces(3, seed=2))
    # Half a step (1/512) for the rounded 0: log-mean of (255/256, 0.05) against (1/512, 0.95), then softmax.
    happy, sad = np.sqrt(255 / 256 * 0.05), np.sqrt(1 / 512 * 0.95)
    np.testing.assert_allclose(averaged[:, 0], happy / (happy + sad), atol=1e-6)
    assert 0.5 < averaged[0, 0] < 0.9  # with a float floor of 1e-30 it came out 1.0 (sad 4e-15)


def test_off_cannot_undo_a_mirror_pass_inside_the_network_and_says_so(tiny_model_dir, faces, tmp_path, caplog):
    summary = job.run(["--input", str(faces), "--model", str(tiny_model_dir), "--output", str(tmp_path / "o"),
                       "--mirror-average", "off"])
    assert "averages each face with its mirror image inside its network" in caplog.text
    assert summary["mirror_average"] is True and summary["model_version"] == "tiny-test-model"


def test_the_evaluation_can_score_the_mirror_pass(tiny_single_view_model_dir, tmp_path):
    import json

    from trainer import evaluate

    for name, seed in (("happy", 300), ("sad", 400)):
        synthetic_face_folder(tmp_path / "data" / name, 6, seed)
    versions = {}
    for setting in ("auto", "on"):
        report = tmp_path / f"{setting}.json"
        assert evaluate.main(["--model", str(tiny_single_view_model_dir), "--data-dir", str(tmp_path / "data"),
                              "--json", str(report), "--bootstrap", "0", "--mirror-average", setting]) == 0
        versions[setting] = json.loads(report.read_text())["model_version"]
    assert versions == {"auto": "tiny-single-view", "on": "tiny-single-view" + MIRROR_VERSION_SUFFIX}
