"""The pipeline's composite transforms under TestPipeline, with a tiny real model (as Beam's inference tests)."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from conftest import encode, synthetic_face
from pipeline.rows import ErrorRow, FileKey
from pipeline.transforms import LabelImages


def rows_match(expected: dict):
    """Matcher: one row per expected path with that label, probabilities summing to 1, the model's version."""
    def check(rows):
        got = {row.path: row for row in rows}
        if len(got) != len(rows) or set(got) != set(expected):
            raise BeamAssertException(f"paths {sorted(got)} != {sorted(expected)}")
        for path, row in got.items():
            if row.label != expected[path]:
                raise BeamAssertException(f"{path}: label {row.label}, expected {expected[path]}")
            if abs(sum(row.probabilities) - 1.0) > 1e-4 or row.model_version != "tiny-test-model":
                raise BeamAssertException(f"bad row {row}")
    return check


def keyed(path: str, data: bytes) -> tuple[FileKey, bytes]:
    """An element as ReadFiles makes it: the file's key (path, size, modification time) and its bytes."""
    return FileKey(path, len(data), 1_700_000_000.0), data


def rounded(probabilities) -> list[float]:
    return [round(float(p), 4) for p in probabilities]


@pytest.fixture(scope="module")
def images():
    good = {f"mem://face_{i}.png": (encode(synthetic_face(i % 2 == 0, seed=500 + i)), "happy" if i % 2 == 0 else "sad")
            for i in range(12)}
    bad = {"mem://empty.jpg": b"", "mem://text.png": b"hello, I am text"}
    return good, bad


def test_label_images_labels_good_images_and_reports_bad_ones(tiny_model_dir, images):
    good, bad = images
    elements = [keyed(path, data) for path, (data, _) in good.items()] + [keyed(*item) for item in bad.items()]
    with TestPipeline() as p:
        out = p | beam.Create(elements) | LabelImages(str(tiny_model_dir), min_batch_size=2, max_batch_size=5)
        assert_that(out["labels"], rows_match({path: label for path, (_, label) in good.items()}),
                    label="CheckLabels")
        assert_that(out["errors"], equal_to([ErrorRow("mem://empty.jpg", "empty file (0 bytes)"),
                                            ErrorRow("mem://text.png", "not a recognised image format")]),
                    label="CheckErrors")


def test_probabilities_match_the_model_called_directly(tiny_model_dir, images):
    from model.preprocess import preprocess_image
    from model.saved import load_classifier

    good, _ = images
    classifier = load_classifier(tiny_model_dir)
    direct = {path: classifier(preprocess_image(data)[None])[0] for path, (data, _) in good.items()}
    with TestPipeline() as p:
        out = p | beam.Create([keyed(path, data) for path, (data, _) in good.items()]) | LabelImages(str(tiny_model_dir))
        assert_that(out["labels"] | beam.Map(lambda row: (row.path, rounded(row.probabilities))),
                    equal_to([(path, rounded(probs)) for path, probs in direct.items()]))


@pytest.mark.parametrize("rows,expected", [(1, 16), (16, 16), (17, 32), (200, 256), (256, 256)])
def test_batches_are_padded_to_few_shapes(rows, expected):
    import numpy as np

    from pipeline.model_handler import padded

    images = np.ones((rows, 48, 48, 1), np.float32)
    out = padded(images)
    assert out.shape == (expected, 48, 48, 1)
    assert (out[:rows] == 1).all() and (out[rows:] == 0).all()
