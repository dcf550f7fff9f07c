"""trainer.evaluate's evidence to look at: the PNG of plots and the HTML page of the most confident mistakes."""

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_face
from trainer import data as datasets
from trainer import evaluate, figures, metrics

CLEAN_PER_CLASS, MISFILED_PER_CLASS = 12, 5
DATA_URI = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


@pytest.fixture(scope="module")
def misfiled_data(tmp_path_factory) -> Path:
    """Bright ("happy") and dark ("sad") faces, plus a few filed under the other class: sure mistakes."""
    root = tmp_path_factory.mktemp("faces")
    for label, bright in (("happy", True), ("sad", False)):
        (root / label).mkdir()
        for i in range(CLEAN_PER_CLASS + MISFILED_PER_CLASS):
            looks_bright = bright if i < CLEAN_PER_CLASS else not bright
            name = f"{label}_{i:02d}.png" if i < CLEAN_PER_CLASS else f"misfiled <{label}> {i:02d}.png"
            synthetic_face(looks_bright, seed=5_000 + i + (0 if bright else 500)).save(root / label / name)
    return root


def sections(page: str) -> dict[str, str]:
    """HTML between each mistakes heading and the next, keyed by the heading's id."""
    found = re.split(r'<h2 id="([^"]+)">', page)
    return dict(zip(found[1::2], found[2::2]))


def test_evaluate_writes_png_and_mistakes_page_beside_the_json(tiny_model_dir, misfiled_data, tmp_path, capsys):
    json_path = tmp_path / "out" / "evaluation.json"
    assert evaluate.main(["--model", str(tiny_model_dir), "--data-dir", str(misfiled_data),
                          "--json", str(json_path), "--top-mistakes", "3"]) == 0
    assert "figures: " in capsys.readouterr().out
    png = tmp_path / "out" / figures.PNG_FILENAME
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (1600, 520)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # something was drawn

    page = (tmp_path / "out" / figures.HTML_FILENAME).read_text(encoding="utf-8")
    assert "image-rendering: pixelated" in page and "tiny-test-model" in page
    parts = sections(page)
    assert list(parts) == ["true-happy-called-sad", "true-sad-called-happy"]
    for kind, html_part in parts.items():
        assert f"{MISFILED_PER_CLASS} mistakes, 3 shown" in html_part
        thumbnails = DATA_URI.findall(html_part)
        assert len(thumbnails) == 3
        for alt, data in thumbnails:
            assert alt.startswith("misfiled &lt;")  # file names are HTML-escaped
            with Image.open(io.BytesIO(base64.b64decode(data))) as face:
                assert face.size == (48, 48) and face.mode == "L"
        scores = [float(s) for s in re.findall(r"p_happy (\d\.\d{3})", html_part)]
        assert len(scores) == 3
        # Most confident first: highest p_happy for sad called happy, lowest for happy called sad.
        assert scores == sorted(scores, reverse=kind.endswith("called-happy"))
    plots = re.search(r'class="plots"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert plots and base64.b64decode(plots.group(1)) == png.read_bytes()


def test_figures_flag_and_no_json_means_no_figures(tiny_model_dir, misfiled_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["--model", str(tiny_model_dir), "--data-dir", str(misfiled_data)]) == 0
    assert not list(tmp_path.iterdir())
    folder = tmp_path / "figs"
    assert evaluate.main(["--model", str(tiny_model_dir), "--data-dir", str(misfiled_data),
                          "--figures", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [figures.PNG_FILENAME, figures.HTML_FILENAME]


def test_the_json_report_is_the_same_whichever_path_names_the_data(tiny_model_dir, misfiled_data, tmp_path):
    # `make evaluate` rewrites the committed model/default/evaluation.json: a user's own path or folder name for
    # the faces the model was trained on must not show up there (nor dirty the checkout).
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    metadata = json.loads((model / "facelabel.json").read_text())
    metadata["trained_on"] = {"data_dir": "train", "data_digest": datasets.listing_digest(
        datasets.list_examples(str(misfiled_data), ("happy", "sad")))}
    (model / "facelabel.json").write_text(json.dumps(metadata))
    link = tmp_path / "elsewhere" / "another name"
    link.parent.mkdir()
    link.symlink_to(misfiled_data, target_is_directory=True)
    reports = []
    for data_dir in (misfiled_data, link):
        reports.append(tmp_path / f"report{len(reports)}.json")
        assert evaluate.main(["--model", str(model), "--data-dir", str(data_dir), "--json", str(reports[-1]),
                              "--figures", str(tmp_path / "figs")]) == 0
    assert reports[0].read_text() == reports[1].read_text()
    assert json.loads(reports[0].read_text())["data_dir"] == "train"
    # Other faces are named by their folder, never by a path.
    other = tmp_path / "other faces"
    for label in ("happy", "sad"):
        shutil.copytree(misfiled_data / label, other / label)
        next((other / label).iterdir()).unlink()
    assert evaluate.main(["--model", str(model), "--data-dir", str(other), "--json", str(reports[0])]) == 0
    assert json.loads(reports[0].read_text())["data_dir"] == "other faces"


def test_figures_on_gcs(gcs, tiny_model_dir, misfiled_data):
    assert evaluate.main(["--model", str(tiny_model_dir), "--data-dir", str(misfiled_data),
                          "--json", gcs.uri("eval/evaluation.json")]) == 0
    assert gcs.list("eval/") == ["eval/evaluation.json", "eval/evaluation.png", "eval/mistakes.html"]
    with Image.open(io.BytesIO(gcs.read("eval/evaluation.png"))) as image:
        assert image.format == "PNG"
    assert len(DATA_URI.findall(gcs.read("eval/mistakes.html").decode("utf-8"))) == 2 * MISFILED_PER_CLASS


def test_reliability_bins_reproduce_the_ece():
    rng = np.random.default_rng(3)
    p_first = rng.random(400)
    probabilities = np.stack([p_first, 1 - p_first], axis=1)
    labels = (rng.random(400) > p_first).astype(int)
    edges, confidence, accuracy, count = metrics.reliability_bins(labels, probabilities)
    assert len(edges) == metrics.ECE_BINS + 1 and count.sum() == 400
    filled = count > 0
    ece = (count[filled] * np.abs(accuracy[filled] - confidence[filled])).sum() / count.sum()
    assert ece == pytest.approx(metrics.expected_calibration_error(labels, probabilities), abs=1e-12)


def test_most_confident_mistakes_order_and_limit():
    labels = np.array([1, 1, 1, 0, 1])
    probabilities = np.array([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.7, 0.3]])
    predicted = np.argmax(probabilities, axis=1)
    assert figures.most_confident_mistakes(labels, probabilities, predicted, true=1, called=0).tolist() == [1, 4, 0]
    assert figures.most_confident_mistakes(labels, probabilities, predicted, 1, 0, top=2).tolist() == [1, 4]
    assert figures.most_confident_mistakes(labels, probabilities, predicted, 0, 1).tolist() == []
