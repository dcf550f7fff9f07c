"""The earlier run's labels, for --incremental: whether they can be used, reading them back, and which files
keep their earlier rows.

    earlier labels.csv -> ReadPreviousLabels -> (path, row) ─┐
    matched files -> KeyByPath -> (path, file) ──────────────┴─> JoinWithPrevious -> Split -> changed | carried

An unchanged file (same size and modification time) labelled by the same model in the same --faces mode keeps
its earlier rows, if they are a sound set: one row per face rank with a label that its own probabilities give
under the model's decision rule. Everything else is labelled again. Whether the earlier labels can be used at
all (other columns, another --faces mode, no summary.json beside them) is decided once, where the job is
launched, and said in one line, so a run that relabels everything is never a surprise (the pipeline then reads
no earlier labels); a row that does not parse, or was edited so that it no longer agrees with itself, costs only
its own image a new label, with a warning.
"""

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from model.align import FACE_ALIGNMENT, FACE_ALIGNMENT_BEFORE
from model.faces import FACE_FINDER, FACE_FINDER_BEFORE
from model.metadata import ModelMetadata, crop_framing
from model.preprocess import GREY_RANGE, GREY_RANGE_BEFORE
from pipeline.inputs import display_path, file_key
from pipeline.outputs import ENCODING, LABEL_ROWS_KEY, SUMMARY_FILE, output_lines
from pipeline.rows import (FACES_ALL, FACES_LARGEST, FACES_NONE, LABEL_TAIL_COLUMNS, NO_FACE, LabelRow, labels_header,
                           labels_header_before_detector, parse_label_rows)

# How far a written row's probabilities may sum from 1 before it counts as edited: rounding to 6 decimals moves
# the sum by a few millionths; an int8 copy's softmax comes in steps of 1/256 per class (sums of 1 exactly on 1,000
# FER2013 faces with the shipped model, but not guaranteed): allow two such steps.
PROBABILITY_SUM_TOLERANCE: float = 2 / 256

log = logging.getLogger("facelabel")


def previous_summary(labels_path: str) -> dict | None:
    """The summary.json beside an earlier labels output, or None if there is none or it does not parse."""
    summary_path = FileSystems.join(labels_path.rsplit("/", 1)[0], SUMMARY_FILE)
    try:
        with FileSystems.open(summary_path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            summary = json.loads(handle.read().decode(ENCODING))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def first_records(path: str, count: int = 2) -> list[list[str]] | None:
    """The first CSV records of a file (its header, then its first row), fewer if it is shorter; None if it
    cannot be read as text."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            reader = csv.reader(io.TextIOWrapper(handle, encoding=ENCODING, newline=""))
            return [record for _, record in zip(range(count), reader)]
    except (OSError, ValueError):  # UnicodeDecodeError and csv.Error are ValueErrors
        return None


def unusable_reason(labels_path: str, records: list[list[str]] | None, summary: dict | None,
                    class_names: tuple[str, ...], faces_mode: str, aligned_crops: bool = False) -> str | None:
    """Why none of the earlier rows can be carried over (one phrase), or None if they can be.

    records: `first_records` of the labels output's first file (labels.csv, or its first shard); summary: the
    `previous_summary` beside it, whose --faces mode must be this run's (runs from before the option had none:
    their mode was FACES_NONE), and its grey range (`model.preprocess.GREY_RANGE`, absent before 2026-12-02: greys
    as decoded); and, where faces are found, its model's framing of face-sized images
    (`ModelMetadata.aligned_crops`, absent before 2026-12-01: whole) must be this run's model's, and its face
    finding (`model.faces.FACE_FINDER`, absent before 2026-12-01: MTCNN alone) and face alignment
    (`model.align.FACE_ALIGNMENT`, absent before 2026-12-02: by the eyes alone; "eyes+mouth" before faces were
    stretched to the full grey range) this run's.
    """
    header = records[0] if records else None
    older = header is not None and header == labels_header_before_detector(class_names)
    if older and faces_mode != FACES_NONE:
        return (f"{labels_path} was written before the face_detector column (2026-12-01): it does not say which "
                "detector found each face")
    if header != labels_header(class_names) and not older:  # with --faces none that column is empty anyway
        found = ("not readable as text" if records is None else "an empty file" if not records else
                 f"{len(header)} columns: " + ",".join(header[:4])[:80] + ("..." if len(header) > 4 else ""))
        return f"{labels_path} does not start with this model's labels header ({found})"
    if summary is None:
        return f"no readable {SUMMARY_FILE} beside {labels_path} says which --faces mode wrote it"
    earlier_mode = summary.get("faces", FACES_NONE)
    if earlier_mode != faces_mode:
        return f"the earlier run used --faces {earlier_mode}, this one --faces {faces_mode}"
    earlier_range = summary.get("grey_range")
    if earlier_range is None:
        return (f"the earlier run fed the network greys {GREY_RANGE_BEFORE}, this one stretched to the {GREY_RANGE} "
                "range")
    if earlier_range != GREY_RANGE:
        return f"the earlier run's grey range was {earlier_range!r}, this one's is {GREY_RANGE!r}"
    earlier_finder = summary.get("face_finder", FACE_FINDER_BEFORE)
    if faces_mode != FACES_NONE and earlier_finder != FACE_FINDER:
        return f"the earlier run found faces with {earlier_finder}, this one with {FACE_FINDER}"
    earlier_alignment = summary.get("face_alignment", FACE_ALIGNMENT_BEFORE)
    if faces_mode != FACES_NONE and earlier_alignment != FACE_ALIGNMENT:
        return f"the earlier run's face alignment was {earlier_alignment}, this one's is {FACE_ALIGNMENT}"
    earlier_aligned = summary.get("aligned_crops", False) is True
    if faces_mode != FACES_NONE and earlier_aligned != aligned_crops:
        return (f"the earlier run's model took face-sized images {crop_framing(earlier_aligned)}, this one takes "
                f"them {crop_framing(aligned_crops)}")
    return None


def earlier_model_version(records: list[list[str]] | None) -> str | None:
    """The model_version of the first row, given `first_records` of an earlier labels output, if it has one."""
    if not records or len(records) < 2 or LABEL_TAIL_COLUMNS[0] not in records[0]:
        return None
    column = records[0].index(LABEL_TAIL_COLUMNS[0])
    return records[1][column] if column < len(records[1]) else None


def without_cut_last_line(lines: Iterable[str], cut: list[str]) -> Iterator[str]:
    """The lines of a labels output, less a last line without its line end (every row is written with one, so
    the file was cut inside that row: the row may still parse, with a number cut short); that line goes to cut."""
    last = None
    for line in lines:
        if last is not None:
            yield last
        last = line
    if last is not None:
        if last.endswith(("\n", "\r")):
            yield last
        else:
            cut.append(last)


def read_previous_rows(path: str, class_names: tuple[str, ...]) -> Iterable[tuple[str, LabelRow]]:
    """(path, row) for each row of an earlier labels.csv (or its shard set), streamed; nothing if it is missing or
    of another layout (the launch checks that the labels are usable: `unusable_reason`). Rows that do not parse,
    or were cut short, are skipped (their images are labelled again) and counted in one warning; so are rows
    missing from a file cut between rows (fewer rows than its summary.json says were written)."""
    unreadable: list[int] = []
    cut: list[str] = []
    read = 0
    for row in parse_label_rows(without_cut_last_line(output_lines(path), cut), class_names, unreadable):
        read += 1
        yield row.path, row
    if cut:
        unreadable.append(read + len(unreadable) + 2)  # its record number (the header is record 1)
    written = (previous_summary(path) or {}).get(LABEL_ROWS_KEY)
    missing = written - read - len(unreadable) if isinstance(written, int) else 0
    problems = []
    if unreadable:
        one = len(unreadable) == 1
        records = ", ".join(map(str, unreadable[:3])) + (" ..." if len(unreadable) > 3 else "")
        problems.append(f"{len(unreadable)} row{'' if one else 's'} could not be read or {'was' if one else 'were'} "
                        f"cut short (record {records})")
    if missing > 0:
        problems.append(f"{missing} row{'' if missing == 1 else 's'} fewer than its run wrote ({written}, says "
                        f"{SUMMARY_FILE}): cut short or edited")
    if problems:
        log.warning("--incremental: %s: %s; images without their rows are labelled again", path, "; ".join(problems))


def sound_rows(rows: list[LabelRow], metadata: ModelMetadata, faces_mode: str = FACES_LARGEST) -> bool:
    """True if an image's earlier rows can stand for it: face ranks 1..n once each (or one no_face row), one row
    per face found with --faces all (or one row), all agreeing on faces_found, and each label the one its
    probabilities give under the model's decision rule (so a duplicated or lost row, or a label or probability
    changed by hand, sends the image to be labelled again)."""
    ranks = sorted(row.face.face for row in rows)
    if ranks != [0] and ranks != list(range(1, len(rows) + 1)):
        return False
    found = {row.face.faces_found for row in rows}
    if len(found) != 1 or (faces_mode == FACES_ALL and ranks != [0] and len(rows) != max(found.pop(), 1)):
        return False
    for row in rows:
        finite = [p for p in row.probabilities if not math.isnan(p)]
        if row.label == NO_FACE:
            if finite or row.face.face != 0:
                return False
            continue
        if len(finite) != len(metadata.class_names) or abs(sum(finite) - 1.0) > PROBABILITY_SUM_TOLERANCE:
            return False
        if metadata.class_names[int(metadata.decide([finite])[0])] != row.label:
            return False
    return True


class SplitUnchanged(beam.DoFn):
    """Per path: the file's metadata if it must be labelled, or its earlier rows (tag 'carried') if the file is
    unchanged, they were written by this model and they are sound (see sound_rows)."""

    CARRIED = "carried"

    def __init__(self, metadata: ModelMetadata, faces_mode: str = FACES_LARGEST):
        self._metadata = metadata
        self._faces_mode = faces_mode
        self._unsound: list[str] = []

    def start_bundle(self):
        self._unsound = []

    def process(self, joined: tuple[str, dict]):
        path, groups = joined
        files, previous = list(groups["file"]), list(groups["previous"])
        if not files:  # labelled last time, gone now
            return
        key = file_key(files[0])
        unchanged = (key.size, key.modified_text, self._metadata.model_version)
        if previous and all((row.file_size, row.file_modified, row.model_version) == unchanged for row in previous):
            if sound_rows(previous, self._metadata, self._faces_mode):
                yield from (beam.pvalue.TaggedOutput(self.CARRIED, row) for row in previous)  # a row per face
                return
            self._unsound.append(path)
        yield files[0]

    def finish_bundle(self):
        if self._unsound:
            count = len(self._unsound)
            log.warning("--incremental: the earlier rows of %d image%s do not agree with themselves (duplicated, "
                        "lost, or a label or probability edited): labelled again: %s%s", count,
                        "" if count == 1 else "s", ", ".join(self._unsound[:3]), " ..." if count > 3 else "")


class SkipUnchanged(beam.PTransform):
    """FileMetadata -> (metadata to read and label, LabelRow carried over from the earlier labels.csv)."""

    def __init__(self, previous_labels: str, metadata: ModelMetadata, faces_mode: str = FACES_LARGEST):
        super().__init__()
        self._previous_labels = previous_labels
        self._metadata = metadata
        self._faces_mode = faces_mode

    def expand(self, matched):
        previous = (matched.pipeline
                    | "PreviousLabelsFile" >> beam.Create([self._previous_labels])
                    | "ReadPreviousLabels" >> beam.FlatMap(read_previous_rows, self._metadata.class_names))
        split = (
            {"file": matched | "KeyByPath" >> beam.Map(lambda m: (display_path(m.path), m)), "previous": previous}
            | "JoinWithPrevious" >> beam.CoGroupByKey()
            | "Split" >> beam.ParDo(SplitUnchanged(self._metadata, self._faces_mode)).with_outputs(
                SplitUnchanged.CARRIED, main="changed"))
        return split.changed, split[SplitUnchanged.CARRIED]
