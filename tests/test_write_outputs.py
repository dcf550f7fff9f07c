"""WriteOutputs at scale: sorted shards that concatenate to the single file, readers of both forms, and runs
(promotion, --incremental, the report) over shard sets. Shard sizes are lowered so a few rows give many shards."""

import csv
import io
import json
import random

import apache_beam as beam
import pytest

from conftest import synthetic_face, synthetic_face_folder
from pipeline import run as job
from pipeline import sorted_files
from pipeline.outputs import (IncompleteOutputError, output_files, output_lines, read_label_rows, shard_name)
from pipeline.report import build_view
from pipeline.rows import (ERRORS_HEADER, ErrorRow, FaceInfo, LabelRow, csv_line, format_label_row, labels_header,
                           sort_key)
from pipeline.write_outputs import WriteOutputs

CLASSES = ("happy", "sad")
HEADER = csv_line(labels_header(CLASSES))
# Odd paths: CSV quoting (commas, quotes, newlines), non-ASCII, and prefixes of one another.
ODD_PATHS = ["gs://b/a", "gs://b/a b", "gs://b/a,b", 'gs://b/"q"', "gs://b/line\nbreak", "gs://b/é", "gs://b/z"]


def label_rows(count: int, seed: int) -> list[LabelRow]:
    """count rows with shuffled paths, some paths repeated (several faces per image) and the odd paths."""
    rng = random.Random(seed)
    paths = [f"gs://bucket/night/{rng.randrange(10 ** 6):07d}.jpg" for _ in range(count - len(ODD_PATHS) - 20)]
    paths += ODD_PATHS + ["gs://bucket/night/many-faces.jpg"] * 20
    rng.shuffle(paths)
    return [LabelRow(path, rng.choice(CLASSES), (p := round(rng.random(), 6), round(1 - p, 6)), "v1",
                     rng.randrange(10 ** 5), "1700000000.000000") for path in paths]


def write(rows: list[LabelRow], errors: list[ErrorRow], out, **sizes) -> dict:
    info = {"model_version": "v1", "started_unix": 0.0}
    with beam.Pipeline() as pipeline:
        labels = pipeline | "Labels" >> beam.Create(rows)
        failed = pipeline | "Errors" >> beam.Create(errors)
        matched = pipeline | "Matched" >> beam.Create([r.path for r in rows] + [e.path for e in errors])
        carried = pipeline | "Carried" >> beam.Create([])
        _ = ({"matched": matched, "labels": labels, "errors": failed, "carried": carried}
             | WriteOutputs(str(out), CLASSES, info, **sizes))
    return json.loads((out / "summary.json").read_text())


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_shards_concatenate_to_the_single_file(tmp_path):
    rows = label_rows(500, seed=1)
    errors = [ErrorRow(f"gs://bucket/bad/{i:03d}.jpg", "not a recognised image format") for i in range(7)]
    single = write(rows, errors, tmp_path / "single")
    sharded = write(rows, errors, tmp_path / "sharded", run_rows=37, shard_rows=60)

    # In rows.sort_key's order (path first: "a b" sorts after "a", unlike their lines), ties by line.
    ordered = sorted((sort_key(r), format_label_row(r)) for r in rows)
    expected = HEADER + "\n" + "".join(line + "\n" for _, line in ordered)
    assert (tmp_path / "single" / "labels.csv").read_text(encoding="utf-8") == expected
    names = sorted(p.name for p in (tmp_path / "sharded").iterdir())
    shards = [shard_name("labels.csv", i, 9) for i in range(9)]  # ceil(500 / 60) shards
    assert names == ["errors.csv", *shards, "summary.json"]  # 7 errors: one file; no run files left behind
    texts = [(tmp_path / "sharded" / name).read_text(encoding="utf-8") for name in shards]
    assert all(text.startswith(HEADER + "\n") for text in texts)
    assert HEADER + "\n" + "".join(t[len(HEADER) + 1:] for t in texts) == expected
    by_shard = [{row[0] for row in csv_rows(text)[1:]} for text in texts]
    assert sum(len(paths) for paths in by_shard) == len({r.path for r in rows})  # no path split over two shards
    assert max(len(csv_rows(text)) - 1 for text in texts) < 2 * 60  # boundaries from the sample: balanced
    assert (tmp_path / "sharded" / "errors.csv").read_bytes() == (tmp_path / "single" / "errors.csv").read_bytes()
    for summary in (single, sharded):
        assert (summary["images_labelled"], summary["images_failed"], summary["images_matched"]) == (500, 7, 507)
        assert summary["labels"] == {**{name: sum(r.label == name for r in rows) for name in CLASSES}, "no_face": 0}


def test_one_path_with_more_rows_than_a_shard_stays_in_one_shard(tmp_path):
    rows = [LabelRow("gs://b/crowd.jpg", "happy", (0.9, 0.1), "v1", i, "1.000000") for i in range(30)]
    rows += [LabelRow(f"gs://b/{c}.jpg", "sad", (0.1, 0.9), "v1", 1, "1.000000") for c in "abxyz"]
    write(rows, [], tmp_path, run_rows=7, shard_rows=5)
    files = output_files(str(tmp_path / "labels.csv"))
    assert len(files) == 7
    holding = [f for f in files if "crowd" in open(f, encoding="utf-8").read()]
    assert len(holding) == 1
    assert [r.path for r in read_label_rows(str(tmp_path / "labels.csv"), CLASSES)] == sorted(r.path for r in rows)


def test_empty_input_gives_header_only_single_files(tmp_path):
    summary = write([], [], tmp_path, run_rows=2, shard_rows=2)
    assert (tmp_path / "labels.csv").read_text() == HEADER + "\n"
    assert (tmp_path / "errors.csv").read_text() == csv_line(ERRORS_HEADER) + "\n"
    assert summary["images_matched"] == 0


def test_readers_take_either_form_and_refuse_an_incomplete_shard_set(tmp_path):
    rows = label_rows(120, seed=2)
    write(rows, [], tmp_path / "single")
    write(rows, [], tmp_path / "sharded", run_rows=50, shard_rows=40)
    single, sharded = (str(tmp_path / name / "labels.csv") for name in ("single", "sharded"))
    assert len(output_files(sharded)) == 3 and output_files(single) == [single]
    assert list(output_lines(sharded)) == list(output_lines(single))
    assert list(read_label_rows(sharded, CLASSES)) == list(read_label_rows(single, CLASSES))
    assert sorted(read_label_rows(single, CLASSES)) == sorted(rows)
    assert output_files(str(tmp_path / "nothing" / "labels.csv")) == []
    (tmp_path / "sharded" / shard_name("labels.csv", 1, 3)).unlink()
    with pytest.raises(IncompleteOutputError, match="incomplete shard set.*2 files found, 3 expected; missing "
                                                    "labels-00001-of-00003.csv$"):
        output_files(sharded)


def test_incremental_run_on_an_incomplete_shard_set_is_one_error_line(tiny_model_dir, tmp_path, capsys):
    """A damaged previous output stops --incremental before anything runs: exit 2, one line, outputs kept."""
    from pipeline import run as job

    folder = synthetic_face_folder(tmp_path / "in", 2, seed=70)
    out = tmp_path / "out"
    write(label_rows(120, seed=3), [], out, run_rows=50, shard_rows=40)
    (out / shard_name("labels.csv", 0, 3)).unlink()
    before = sorted(p.name for p in out.iterdir())
    status = job.main(["--input", str(folder), "--output", str(out), "--model", str(tiny_model_dir),
                       "--incremental"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "Traceback" not in err
    assert err.startswith("error: cannot run --incremental: incomplete shard set") and \
        "missing labels-00000-of-00003.csv" in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_runs_promote_report_and_carry_over_shard_sets(tiny_model_dir, tmp_path, monkeypatch, capsys):
    folder, out = synthetic_face_folder(tmp_path / "in", 9, seed=40), tmp_path / "out"
    model = ["--model", str(tiny_model_dir)]
    monkeypatch.setattr(sorted_files, "SHARD_ROWS", 4)
    monkeypatch.setattr(sorted_files, "RUN_ROWS", 3)
    assert job.main(["--input", str(folder), "--output", str(out), *model, "--report"]) == 0
    assert "labels-*-of-00003.csv" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["errors.csv", "report.html", "summary.json", *(shard_name("labels.csv", i, 3) for i in range(3))])
    assert build_view(str(out)).labelled == 9
    first = {row.path: row for row in read_label_rows(str(out / "labels.csv"), ("happy", "sad"))}

    synthetic_face(False, seed=999, size=64).save(folder / "face_00.png")  # changed overnight
    summary = job.run(["--input", str(folder), "--output", str(out), *model, "--incremental"])
    assert summary["images_carried_over"] == 8 and summary["images_labelled"] == 9
    second = {row.path: row for row in read_label_rows(str(out / "labels.csv"), ("happy", "sad"))}
    assert {p: r for p, r in second.items() if not p.endswith("face_00.png")} == \
        {p: r for p, r in first.items() if not p.endswith("face_00.png")}

    monkeypatch.setattr(sorted_files, "SHARD_ROWS", 100)  # a smaller night: back to one file, old shards gone
    job.run(["--input", str(folder), "--output", str(out), *model])
    assert sorted(p.name for p in out.iterdir()) == ["errors.csv", "labels.csv", "summary.json"]


def test_run_files_of_retried_bundles_are_deleted_too(tmp_path):
    from pipeline.sorted_files import delete_runs, write_run

    temp = tmp_path / "sort-temp"
    kept = write_run(str(temp / "a.run"), [(b"gs://b/1", b"", b"line 1")])
    orphan = write_run(str(temp / "orphan.run"), [(b"gs://b/2", b"", b"line 2")])  # a failed bundle's attempt
    assert sorted(delete_runs(None, [kept], [], str(temp))) == sorted([kept.name, orphan.name])
    assert not temp.exists()


def test_faces_of_one_image_keep_the_rows_order_across_runs_and_shards(tmp_path):
    """Rows of one path follow rows.sort_key (face rank as a number: 2 before 10), not their lines' text."""
    ranks = [10, 2, 1, 11, 3]
    rows = [LabelRow("gs://b/crowd.jpg", "happy", (0.9, 0.1), "v1", 5, "1.000000",
                     FaceInfo(rank, 11, (0, 0, 9, 9), 0.99, "mtcnn")) for rank in ranks]
    rows += [LabelRow(f"gs://b/{c}.jpg", "sad", (0.2, 0.8), "v1", 5, "1.000000") for c in "ayz"]
    write(rows, [], tmp_path, run_rows=2, shard_rows=3)
    got = [(row.path, row.face.face) for row in read_label_rows(str(tmp_path / "labels.csv"), CLASSES)]
    assert got == [(r.path, r.face.face) for r in sorted(rows, key=sort_key)]
    assert [rank for path, rank in got if "crowd" in path] == [1, 2, 3, 10, 11]
