"""`pipeline.report`: the report of a real run (via `pipeline.run --report`), of a 200,000-row run (bounded size
and reads), of a run on gs://, and its command line."""

import base64
import csv
import dataclasses
import io
import json
import random
import re
import time
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_face
from model.preprocess import preprocess_image
from pipeline import report, thumbnails
from pipeline import run as job

LABELS_HEADER = ["path", "label", "p_happy", "p_sad", "model_version", "file_size", "file_modified"]
DATA_URI_PREFIX = "data:image/png;base64,"
FACES_PER_CLASS = 8
GRID_KEYS = ("grid-happy", "grid-sad", "grid-uncertain")
# The large synthetic run: rows, error rows, and the bounds it must stay within.
BIG_ROWS, BIG_ERRORS = 200_000, 1_000
MAX_BIG_REPORT_BYTES = 2 * 1024 * 1024
MAX_BIG_SECONDS = 60.0
# Peak Python allocations while reporting on BIG_ROWS rows; holding the rows would take well over 100 MB.
MAX_BIG_PEAK_BYTES = 20 * 1024 * 1024


@dataclasses.dataclass
class Parsed:
    """What the tests read back from a report page."""

    sections: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    bins: list[int] = dataclasses.field(default_factory=list)
    tiles: dict[str, list[dict]] = dataclasses.field(default_factory=dict)
    text: dict[str, str] = dataclasses.field(default_factory=dict)


class ReportParser(HTMLParser):
    """Sections by id, label counts, histogram bins, tiles per grid (path, label, img src) and text per section."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parsed = Parsed()
        self._section: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a["id"]
            self.parsed.sections.append(a["id"])
        elif tag == "tr" and "data-count" in a:
            self.parsed.counts[a["data-label"]] = int(a["data-count"])
        elif tag == "g" and a.get("class") == "bin":
            self.parsed.bins.append(int(a["data-count"]))
        elif tag == "figure":
            self.parsed.tiles.setdefault(self._section, []).append(
                {"path": a["data-path"], "label": a["data-label"], "src": None})
        elif tag == "img" and self._section in GRID_KEYS:
            self.parsed.tiles[self._section][-1]["src"] = a["src"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._section:
            self.parsed.text[self._section] = self.parsed.text.get(self._section, "") + data


def parse_report(page: str) -> Parsed:
    parser = ReportParser()
    parser.feed(page)
    return parser.parsed


def decode_thumbnail(src: str) -> Image.Image:
    assert src.startswith(DATA_URI_PREFIX)
    image = Image.open(io.BytesIO(base64.b64decode(src[len(DATA_URI_PREFIX):])))
    image.load()
    return image


def write_run(folder: Path, rows: list[list], errors: list[list], summary: dict | None = None) -> Path:
    """A run's output folder written by hand: labels.csv, errors.csv and (optionally) summary.json."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([LABELS_HEADER, *rows])
    with open(folder / "errors.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["path", "error"], *errors])
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def label_row(path: str, p_happy: float) -> list:
    return [path, "happy" if p_happy >= 0.5 else "sad", f"{p_happy:.6f}", f"{1 - p_happy:.6f}", "v1", 100, "1.0"]


@pytest.fixture(scope="module")
def labelled_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict, Path]:
    """A real run of pipeline.run with --report over bright and dark synthetic faces and one non-image."""
    root = tmp_path_factory.mktemp("report_run")
    faces = root / "in"
    faces.mkdir()
    for i in range(FACES_PER_CLASS):
        synthetic_face(True, seed=300 + i).save(faces / f"bright_{i}.png")
        synthetic_face(False, seed=400 + i).save(faces / f"dark_{i}.png")
    (faces / "broken.png").write_bytes(b"this is not an image")
    out = root / "out"
    summary = job.run(["--input", str(faces), "--output", str(out), "--model", str(tiny_model_dir), "--report"])
    return out, summary, faces


def test_report_of_a_real_run(labelled_run):
    out, summary, faces = labelled_run
    page = (out / "report.html").read_text(encoding="utf-8")
    parsed = parse_report(page)

    assert parsed.sections == ["counts", "histogram", *GRID_KEYS, "errors"]
    assert {name: parsed.counts[name] for name in ("happy", "sad")} == \
        {name: summary["labels"][name] for name in ("happy", "sad")}
    assert parsed.counts["(failed)"] == summary["images_failed"] == 1
    assert parsed.counts["(matched)"] == summary["images_matched"] == 2 * FACES_PER_CLASS + 1
    assert len(parsed.bins) == report.HISTOGRAM_BINS and sum(parsed.bins) == summary["images_labelled"]
    assert "tiny-test-model" in page  # the summary's model version in the header

    with open(out / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for label in ("happy", "sad"):
        tiles = parsed.tiles[f"grid-{label}"]
        mine = sorted((r for r in rows if r["label"] == label), key=lambda r: -float(r[f"p_{label}"]))
        assert [t["path"] for t in tiles] == [r["path"] for r in mine][:report.GRID_SIZE]
    assert len(parsed.tiles["grid-uncertain"]) == min(report.GRID_SIZE, len(rows))

    for tile in (t for key in GRID_KEYS for t in parsed.tiles[key]):
        thumbnail = decode_thumbnail(tile["src"])
        assert thumbnail.format == "PNG" and thumbnail.mode == "L" and thumbnail.size == (48, 48)
        model_view = preprocess_image(Path(tile["path"]).read_bytes())[..., 0]
        assert np.array_equal(np.asarray(thumbnail), model_view.astype(np.uint8))  # the face as the model saw it

    assert str(faces / "broken.png") in parsed.text["errors"]
    assert "not a recognised image format" in parsed.text["errors"]
    # Self-contained: nothing is fetched when the page opens.
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page


def test_a_large_run_gives_a_small_report_with_bounded_reads(tmp_path, monkeypatch):
    rng = random.Random(6)
    p_happy = [rng.random() for _ in range(BIG_ROWS)]
    # What the report reads back: 6 decimals, so some rows tie; a tie keeps the earlier row (the lower index).
    p_read = [(float(f"{p:.6f}"), float(f"{1 - p:.6f}")) for p in p_happy]
    paths = [f"/nowhere/{i:06d}.png" for i in range(BIG_ROWS)]

    def top(score) -> list[str]:
        return [paths[i] for i in sorted(range(BIG_ROWS), key=lambda i: (-score(i), i))][:report.GRID_SIZE]

    run_dir = write_run(tmp_path / "big", [label_row(path, p) for path, p in zip(paths, p_happy)],
                        [[f"/nowhere/bad_{i}.jpg", "not a recognised image format"] for i in range(BIG_ERRORS)])
    read = []
    real_read = thumbnails.read_source
    monkeypatch.setattr(thumbnails, "read_source", lambda path: read.append(path) or real_read(path))

    started = time.monotonic()
    tracemalloc.start()
    try:
        written = report.write_report(str(run_dir))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started

    page = Path(written).read_bytes()
    assert written == str(run_dir / "report.html")
    assert len(page) < MAX_BIG_REPORT_BYTES and elapsed < MAX_BIG_SECONDS and peak < MAX_BIG_PEAK_BYTES
    parsed = parse_report(page.decode("utf-8"))
    assert sum(parsed.bins) == BIG_ROWS
    assert parsed.counts["happy"] == sum(p >= 0.5 for p in p_happy)
    assert [len(parsed.tiles[key]) for key in GRID_KEYS] == [report.GRID_SIZE] * len(GRID_KEYS)
    assert len(read) <= report.GRID_SIZE * len(GRID_KEYS)  # only the faces shown are read
    assert [t["path"] for t in parsed.tiles["grid-happy"]] == top(lambda i: p_read[i][0])
    assert [t["path"] for t in parsed.tiles["grid-sad"]] == top(lambda i: p_read[i][1])
    assert [t["path"] for t in parsed.tiles["grid-uncertain"]] == top(lambda i: -max(p_read[i]))
    # The images do not exist: every tile is a placeholder, and the report is still written.
    assert all(t["src"] is None for key in GRID_KEYS for t in parsed.tiles[key])
    assert parsed.text["errors"].count("/nowhere/bad_") == report.MAX_ERRORS_LISTED
    assert f"{BIG_ERRORS - report.MAX_ERRORS_LISTED:,} more are in errors.csv" in parsed.text["errors"]
    assert "No summary.json" in page.decode("utf-8")


def test_odd_paths_and_unreadable_rows(tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    odd = faces / 'a <b>&"quoted", new\nline.png'
    synthetic_face(True, seed=1).save(odd)
    (faces / "not_an_image.png").write_bytes(b"text")
    rows = [label_row(str(odd), 0.9), label_row(str(faces / "not_an_image.png"), 0.8),
            ["/x.png", "sad", "not-a-number", "0.5", "v1", 1, "1.0"], ["/short.png"]]
    run_dir = write_run(tmp_path / "run", rows, [])
    parsed = parse_report(Path(report.write_report(str(run_dir))).read_text(encoding="utf-8"))

    tiles = {t["path"]: t for t in parsed.tiles["grid-happy"]}
    assert set(tiles) == {str(odd), str(faces / "not_an_image.png")}  # escaped, read back intact
    assert decode_thumbnail(tiles[str(odd)]["src"]).size == (48, 48)
    assert tiles[str(faces / "not_an_image.png")]["src"] is None  # a placeholder tile
    assert parsed.counts["happy"] == 2 and sum(parsed.bins) == 2
    assert "2 rows of labels.csv could not be read" in parsed.text["counts"]
    assert "No image failed" in parsed.text["errors"]
    assert "No face was labelled sad." in parsed.text["grid-sad"]  # not "The 0 faces labelled sad ..."


def test_a_run_folder_without_its_errors_file_says_so_instead_of_no_errors(tmp_path, caplog):
    """Copied without errors.csv, a run with 9 failed images was reported as 'Errors (0)'."""
    run_dir = write_run(tmp_path / "run", [label_row("/nowhere/a.png", 0.7)], [["/nowhere/b.png", "empty file"]],
                        summary={"images_matched": 10, "images_failed": 9})
    (run_dir / "errors.csv").unlink()
    with caplog.at_level("WARNING", logger="facelabel"):
        parsed = parse_report(Path(report.write_report(str(run_dir))).read_text(encoding="utf-8"))
    assert parsed.text["errors"] == ("Errorserrors.csv is not in this folder: summary.json counts 9 failed; the "
                                     "failed images cannot be listed.")
    assert f"no errors.csv in {run_dir}" in caplog.text


def test_a_no_face_tile_hover_names_its_label_alone():
    from pipeline.report_html import Tile, render_tile
    figure = render_tile(Tile("/in/scene.jpg", "no_face", (), "data:image/png;base64,AA==", ""), ("happy", "sad"))
    assert 'title="/in/scene.jpg\nno_face"' in figure


def test_command_line(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run", [label_row("/nowhere/a.png", 0.7)], [["/nowhere/b.png", "empty file"]])
    assert report.main([str(run_dir), "--output", str(tmp_path / "elsewhere.html"), "--grid-size", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'elsewhere.html'}"
    (tmp_path / "not_a_run").mkdir()
    assert report.main([str(tmp_path / "not_a_run")]) == report.EXIT_USER_ERROR
    assert capsys.readouterr().err.startswith("error: no labels.csv in ")
    assert report.main([str(tmp_path / "mistyped")]) == report.EXIT_USER_ERROR
    assert capsys.readouterr().err == f"error: no such folder: {tmp_path / 'mistyped'}\n"


def test_a_failed_report_does_not_fail_the_run(tmp_path, caplog):
    assert report.report_after_run(str(tmp_path)) is None
    assert "the report could not be" in caplog.text


def test_report_on_gcs(gcs, tmp_path):
    paths = []
    for i in range(3):
        buffer = io.BytesIO()
        synthetic_face(i % 2 == 0, seed=700 + i, size=120).save(buffer, format="JPEG")
        paths.append(gcs.upload(f"faces/{i}.jpg", buffer.getvalue()))
    local = write_run(tmp_path / "run", [label_row(path, 0.9 if i % 2 == 0 else 0.1) for i, path in enumerate(paths)],
                      [[gcs.uri("faces/gone.jpg"), "FileNotFoundError: gone"]], {"model_version": "v-gcs"})
    run_uri = gcs.upload_dir(local, "runs/night1")

    assert report.write_report(run_uri) == f"{run_uri}/report.html"
    page = gcs.read("runs/night1/report.html").decode("utf-8")
    parsed = parse_report(page)
    shown = [t for key in GRID_KEYS for t in parsed.tiles[key]]
    assert {t["path"] for t in shown} == set(paths)
    assert all(decode_thumbnail(t["src"]).size == (48, 48) for t in shown)
    assert "v-gcs" in page and gcs.uri("faces/gone.jpg") in parsed.text["errors"]
    assert gcs.handle.get_blob("runs/night1/report.html").content_type.startswith("text/html")


@pytest.mark.parametrize("tallest", [1, 2, 3, 4, 7, 10, 37, 1234])
def test_histogram_count_axis_has_whole_ticks_where_they_belong(tallest):
    """Each count label sits at the height of that count, and every label is a whole number."""
    import re

    from pipeline.report_html import render_histogram

    histogram = [[tallest, 0]] + [[1, 0]] * 3
    svg = render_histogram(histogram, ("happy", "sad"), "happy")
    ticks = [(float(y) - 4, int(text.replace(",", ""))) for y, text in
             re.findall(r'<text x="\d+" y="([\d.]+)" text-anchor="end">([\d,]+)</text>', svg)]
    assert len(ticks) >= 2 and ticks[0][1] == 0 and ticks[-1][1] >= tallest
    (y0, v0), (y1, v1) = ticks[0], ticks[-1]
    per_count = (y0 - y1) / (v1 - v0)
    for y, value in ticks:
        assert y == pytest.approx(y0 - per_count * (value - v0), abs=0.11)
    assert len({v for _, v in ticks}) == len(ticks)  # no repeated labels


def test_face_rank_reads_the_rows_face_columns_as_the_job_writes_them():
    from pipeline.rows import FACE_COLUMNS, FaceInfo, WHOLE_IMAGE
    column = 7  # after path, label, p_happy, p_sad, model_version, file_size, file_modified
    prefix = ["a.jpg", "happy", "0.9", "0.1", "v", "10", "2026-01-01T00:00:00"]
    second_face = FaceInfo(2, 3, (10.0, 20.0, 30.0, 40.0), 0.99, "mtcnn")
    assert report.face_rank(prefix + second_face.fields(), column) == 2
    assert report.face_rank(prefix + FaceInfo(0, 0).fields(), column) is None  # no face found
    assert report.face_rank(prefix + WHOLE_IMAGE.fields(), column) is None  # --faces none: nothing searched
    assert report.face_rank(prefix, None) is None  # a labels.csv written before the face columns
    assert report.face_rank(prefix + ["1"], column) is None  # cut short
    assert report.face_rank(prefix + ["x", "y", "", ""], column) is None  # unreadable
    assert len(second_face.fields()) == len(FACE_COLUMNS)
    assert report.face_rank(prefix + second_face.fields()[:-1], column) == 2  # written before face_detector


def test_label_rows_keep_to_their_header_s_face_columns():
    """A row of a file with the face_detector column that lost that field, or holds a detector or score alone,
    is not a row the job wrote (it would be carried over with a score and no detector): it does not parse."""
    from pipeline.rows import FaceInfo, labels_header, labels_header_before_detector, parse_label_rows
    from pipeline.rows import csv_line

    classes = ("happy", "sad")
    prefix = ["a.jpg", "happy", "0.900000", "0.100000", "v", "10", "1.000000"]
    face = FaceInfo(1, 1, (10.0, 20.0, 30.0, 40.0), 0.99, "mtcnn").fields()

    def parsed(header, fields):
        unreadable = []
        rows = list(parse_label_rows(csv_line(header) + "\r\n" + csv_line(fields) + "\r\n", classes, unreadable))
        return rows, unreadable

    [row], [] = parsed(labels_header(classes), prefix + face)
    assert row.face.detector == "mtcnn" and row.face.score == 0.99
    assert parsed(labels_header(classes), prefix + face[:-1]) == ([], [2])  # the detector field lost
    assert parsed(labels_header(classes), prefix + face[:-1] + ["bogus"]) == ([], [2])
    assert parsed(labels_header(classes), prefix + face[:-2] + ["", "mtcnn"]) == ([], [2])  # detector, no score
    [old], [] = parsed(labels_header_before_detector(classes), prefix + face[:-1])
    assert old.face.detector == "" and old.face.score == 0.99
    assert parsed(labels_header_before_detector(classes), prefix + face) == ([], [2])


def test_histogram_names_what_a_row_is():
    from pipeline.report_html import render_histogram

    histogram = [[2, 1], [0, 3]]
    per_face = render_histogram(histogram, ("happy", "sad"), "happy", "faces")
    assert "Faces per bin" in per_face and "3 faces (happy 2, sad 1)" in per_face and "images" not in per_face
    per_image = render_histogram(histogram, ("happy", "sad"), "happy")
    assert "Images per bin" in per_image and "3 images (sad 3)" in per_image
    assert "No labelled faces." in render_histogram([[0, 0]], ("happy", "sad"), "happy", "faces")
    from pipeline.report_html import counted

    assert (counted(1, "face"), counted(2, "face"), counted(1024, "image")) == ("1 face", "2 faces", "1,024 images")
    single = render_histogram([[1, 0], [0, 2]], ("happy", "sad"), "happy")  # one image in a bin: not "1 images"
    assert "1 image (happy 1)" in single and "2 images (sad 2)" in single and "1 images" not in single
