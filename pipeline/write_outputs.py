"""WriteOutputs: the run's rows -> labels.csv, errors.csv (each one file or sorted shards) and summary.json.

    labels:  LabelRow -> (path, CSV line) -> WriteSortedCsv -> labels.csv | labels-SSSSS-of-NNNNN.csv
    errors:  ErrorRow -> (path, CSV line) -> WriteSortedCsv -> errors.csv | errors-SSSSS-of-NNNNN.csv
    summary: exact counts (Beam's Count, combined per bundle then merged: a few integers per worker)

Rows are treated generically: `pipeline.rows` formats them and gives their order (`sort_key`, path first; ties
by the formatted line), and
labels are counted by `row.label`; images by their first row (`row.face`: one row per face with --faces all).
Nothing gathers all rows on one worker (see `pipeline.sorted_files`).
"""

import datetime
import json
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.outputs import ERRORS_FILE, LABEL_ROWS_KEY, LABELS_FILE, SUMMARY_FILE
from pipeline.rows import (ERRORS_HEADER, NO_FACE, ErrorRow, LabelRow, csv_line, format_error_row, format_label_row,
                           labels_header, sort_key)
from pipeline.sorted_files import WriteSortedCsv

# Sort run files are written into this hidden folder inside the output (staging) folder, then deleted.
SORT_TEMP_PREFIX: str = ".facelabel-sort-"


def summary_json(_, matched: int, labelled: int, no_face: int, failed: int, carried: int, faces: int,
                 label_rows: int, per_label: dict[str, int], errors_by_reason: dict[str, int], info: dict) -> str:
    """The run's summary.json content; wall time runs from launch to the moment the counts are complete.

    label_rows (the rows written to labels.csv) lets a later --incremental run tell a labels.csv cut short."""
    finished = datetime.datetime.now(datetime.timezone.utc)
    return json.dumps({
        **info,
        "images_matched": matched,
        "images_labelled": labelled,
        "images_no_face": no_face,
        "images_failed": failed,
        "images_carried_over": carried,
        "faces_labelled": faces,
        LABEL_ROWS_KEY: label_rows,
        "labels": {name: per_label.get(name, 0) for name in [*info["class_names"], NO_FACE]},
        "errors_by_reason": dict(sorted(errors_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "finished_at": finished.isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - info["started_unix"], 3),
    }, indent=2, sort_keys=False)


def has_face(row: LabelRow) -> bool:
    """True for a row of a face (any label but no_face)."""
    return row.label != NO_FACE


def first_row_of_image(row: LabelRow) -> bool:
    """True for exactly one row per image: its largest face's (rank 1), its no_face row (rank 0), or its only
    row (--faces none: the whole image, rank 1). With --faces all an image has a row per face (ranks 1, 2, ...)."""
    return row.face.face <= 1


class CountImages(beam.PTransform):
    """LabelRows -> the number of images among them: with a face (with_face True), without (False), or all (None).

    Counts each image's first row (see first_row_of_image) rather than distinct paths, so nothing is grouped
    by path: a count per bundle, then a sum, at any size.
    """

    def __init__(self, with_face: bool | None):
        super().__init__()
        self._with_face = with_face

    def expand(self, rows):
        want = self._with_face
        return (rows
                | "FirstRowOfImage" >> beam.Filter(
                    lambda row: first_row_of_image(row) and (want is None or has_face(row) == want))
                | "Count" >> beam.combiners.Count.Globally())


def reason_kind(row: ErrorRow) -> str:
    """The reason without its file-specific tail, so errors group by kind in the summary."""
    return row.error.split(":", 1)[0]


def keyed_line(formatter):
    """row -> (sort_key(row), formatter(row)): its order in the output (path first) and its CSV line."""
    def key_and_line(row) -> tuple[tuple, str]:
        return sort_key(row), formatter(row)
    return key_and_line


class WriteOutputs(beam.PTransform):
    """Write labels.csv, errors.csv and summary.json into output_dir from {"matched", "labels", "errors",
    "carried"}; "labels" includes the carried rows, which "carried" holds again only to be counted.

    labels.csv and errors.csv are each one file up to shard_rows rows, else sorted shards (see
    `pipeline.outputs`). run_rows and shard_rows are for tests (default: `pipeline.sorted_files`'s constants).
    """

    def __init__(self, output_dir: str, class_names: tuple[str, ...], info: dict,
                 run_rows: int | None = None, shard_rows: int | None = None):
        super().__init__()
        self._output_dir = output_dir
        self._class_names = class_names
        self._info = {**info, "class_names": list(class_names)}
        self._sizes = {"run_rows": run_rows, "shard_rows": shard_rows}
        # One hidden folder per output for the sort's run files, deleted once that output is written.
        self._temp_dir = FileSystems.join(output_dir, f"{SORT_TEMP_PREFIX}{uuid.uuid4().hex}-")

    def expand(self, outputs):
        labels, errors = outputs["labels"], outputs["errors"]
        (labels
         | "FormatLabels" >> beam.Map(keyed_line(format_label_row))
         | "WriteLabels" >> WriteSortedCsv(self._output_dir, LABELS_FILE, csv_line(labels_header(self._class_names)),
                                           self._temp_dir + "labels", **self._sizes))
        (errors
         | "FormatErrors" >> beam.Map(keyed_line(format_error_row))
         | "WriteErrors" >> WriteSortedCsv(self._output_dir, ERRORS_FILE, csv_line(ERRORS_HEADER),
                                           self._temp_dir + "errors", **self._sizes))
        count = beam.combiners.Count
        summary = (
            outputs["matched"].pipeline
            | "SummaryTrigger" >> beam.Create([None])
            | "MakeSummary" >> beam.Map(
                summary_json,
                matched=beam.pvalue.AsSingleton(outputs["matched"] | "CountMatched" >> count.Globally()),
                labelled=beam.pvalue.AsSingleton(labels | "CountLabelled" >> CountImages(with_face=True)),
                no_face=beam.pvalue.AsSingleton(labels | "CountNoFace" >> CountImages(with_face=False)),
                faces=beam.pvalue.AsSingleton(
                    labels | "FacesOnly" >> beam.Filter(has_face) | "CountFaces" >> count.Globally()),
                label_rows=beam.pvalue.AsSingleton(labels | "CountLabelRows" >> count.Globally()),
                carried=beam.pvalue.AsSingleton(outputs["carried"] | "CountCarried" >> CountImages(None)),
                failed=beam.pvalue.AsSingleton(errors | "CountFailed" >> count.Globally()),
                per_label=beam.pvalue.AsDict(
                    labels | "LabelOf" >> beam.Map(lambda row: row.label) | "CountPerLabel" >> count.PerElement()),
                errors_by_reason=beam.pvalue.AsDict(
                    errors | "ReasonOf" >> beam.Map(reason_kind) | "CountPerReason" >> count.PerElement()),
                info=self._info))
        return summary | "WriteSummary" >> write_single_file_transform(self._output_dir, SUMMARY_FILE, None)


def write_single_file_transform(output_dir: str, filename: str, header: str | None) -> beam.PTransform:
    """Write one un-sharded text file named exactly `filename` in output_dir."""
    stem, dot, suffix = filename.rpartition(".")
    return beam.io.WriteToText(FileSystems.join(output_dir, stem), file_name_suffix=dot + suffix,
                               num_shards=1, shard_name_template="", header=header)
