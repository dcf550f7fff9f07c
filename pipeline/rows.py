"""Output rows: what one labelled or failed image becomes, and how it is written as a CSV line.

`labels.csv`: path, label, one p_<class> column per model class (in the model's class order), model_version,
file_size and file_modified (bytes and modification time in Unix seconds when labelled: an incremental run
relabels a file only when these changed, or when the model did), then the face columns: face (1 for the largest
face found, 2 for the next, ...; empty for an image without a face), faces_found (how many faces the image has;
empty with --faces none, where nothing is searched), face_box ("x y width height" in the upright image's pixels)
face_score (the face detector's confidence, 0..1) and face_detector (which detector found the face: `mtcnn`, or
`blazeface` where MTCNN found none, their scores not on one scale; empty where no detector found one). An image
without a face has the label `no_face` and empty probabilities. The face columns come last so that readers of the
earlier layout keep working.
`errors.csv`: path, error.
Lines are produced with the `csv` module, so paths with commas, quotes or newlines round-trip through
`csv.reader` exactly.
"""

import csv
import io
import math
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from apache_beam.ml.inference.base import PredictionResult

from model.faces import BLAZEFACE, MTCNN

PROBABILITY_DECIMALS: int = 6
RECORD_END: str = "\r\n"


MODIFIED_DECIMALS: int = 6


class FileKey(NamedTuple):
    """What identifies one input file through the pipeline: its path, and the size and time it was matched with."""

    path: str
    size: int
    modified: float

    @property
    def modified_text(self) -> str:
        return f"{self.modified:.{MODIFIED_DECIMALS}f}"


# --faces: which faces of an image get a row.
FACES_LARGEST: str = "largest"  # one row per image, for its largest face (the default)
FACES_ALL: str = "all"  # one row per face found
FACES_NONE: str = "none"  # no face finding: the whole image is the face (folders of ready face crops)
FACE_MODES: tuple[str, ...] = (FACES_LARGEST, FACES_ALL, FACES_NONE)

# The label of an image in which no face was found; its probabilities are empty.
NO_FACE: str = "no_face"
BOX_DECIMALS: int = 0
SCORE_DECIMALS: int = 4


class FaceInfo(NamedTuple):
    """Where a labelled face is: its rank (1 = largest, 0 = none), faces in the image (-1: not searched),
    its box (x, y, width, height in the upright image's pixels; None: the whole image), detector score and the
    detector's name (`model.faces.Face.detector`; "" where no detector found it)."""

    face: int = 1
    faces_found: int = -1
    box: tuple[float, float, float, float] | None = None
    score: float | None = None
    detector: str = ""

    def fields(self) -> list[str]:
        return [str(self.face) if self.face > 0 else "",
                str(self.faces_found) if self.faces_found >= 0 else "",
                " ".join(f"{v:.{BOX_DECIMALS}f}" for v in self.box) if self.box is not None else "",
                f"{self.score:.{SCORE_DECIMALS}f}" if self.score is not None else "",
                self.detector]

    @classmethod
    def parse(cls, fields: list[str]) -> "FaceInfo":
        """From the face columns of a row (or the first four, as written before face_detector: detector "").

        Raises ValueError for fields this module does not write: a detector it does not know, or a score without
        its detector (or the reverse) where the row has the column."""
        face, found, box, score, *detector = fields
        if len(detector) > 1:
            raise ValueError(f"{len(fields)} face fields")
        if detector and (detector[0] not in DETECTORS or (detector[0] == "") != (score == "")):
            raise ValueError(f"face_detector {detector[0]!r} with face_score {score!r}")
        return cls(int(face) if face else 0, int(found) if found else -1,
                   tuple(float(v) for v in box.split()) if box else None, float(score) if score else None,
                   detector[0] if detector else "")


WHOLE_IMAGE = FaceInfo()


class LabelRow(NamedTuple):
    path: str
    label: str
    probabilities: tuple[float, ...]
    model_version: str
    file_size: int
    file_modified: str
    face: FaceInfo = WHOLE_IMAGE


class ErrorRow(NamedTuple):
    path: str
    error: str


def labels_header(class_names: tuple[str, ...]) -> list[str]:
    return ["path", "label", *(f"p_{name}" for name in class_names), *LABEL_TAIL_COLUMNS, *FACE_COLUMNS]


def labels_header_before_detector(class_names: tuple[str, ...]) -> list[str]:
    """The header written before the face_detector column (until 2026-12-01); its rows still parse."""
    return labels_header(class_names)[:-len(FACE_COLUMNS)] + list(FACE_COLUMNS_BEFORE_DETECTOR)


LABEL_TAIL_COLUMNS: tuple[str, ...] = ("model_version", "file_size", "file_modified")


FACE_COLUMNS: tuple[str, ...] = ("face", "faces_found", "face_box", "face_score", "face_detector")
# What face_detector may hold: "" where no detector found the face (the whole image taken).
DETECTORS: tuple[str, ...] = ("", MTCNN, BLAZEFACE)
# The face columns as written before face_detector (until 2026-12-01).
FACE_COLUMNS_BEFORE_DETECTOR: tuple[str, ...] = FACE_COLUMNS[:-1]


ERRORS_HEADER: list[str] = ["path", "error"]


class FaceKey(NamedTuple):
    """What identifies one face through the classifier: its file and where in the file it is."""

    file: FileKey
    face: FaceInfo


def to_label_row(keyed: tuple[FileKey | FaceKey, PredictionResult]) -> LabelRow:
    """(FileKey or FaceKey, PredictionResult from ClassifierHandler) -> LabelRow."""
    key, result = keyed
    file, face = (key.file, key.face) if isinstance(key, FaceKey) else (key, WHOLE_IMAGE)
    return LabelRow(file.path, result.inference.label, result.inference.probabilities, result.model_id,
                    file.size, file.modified_text, face)


def no_face_row(key: FileKey, model_version: str, class_count: int) -> LabelRow:
    """The row of an image in which no face was found: label no_face, probabilities NaN (written empty)."""
    return LabelRow(key.path, NO_FACE, (math.nan,) * class_count, model_version, key.size, key.modified_text,
                    FaceInfo(0, 0))


def parse_label_rows(text: str | Iterable[str], class_names: tuple[str, ...],
                     unreadable: list[int] | None = None) -> Iterator[LabelRow]:
    """Rows of a labels.csv written by this module (its whole text, or its lines as read with newline="");
    nothing if its columns are not this model's (a file written before the face_detector column is read, its
    rows with detector "").

    A row that does not parse (cut short, or edited by hand) is skipped, so its image is labelled again rather
    than the run failing; with `unreadable` given, the 1-based record number of each such row (header = 1) is
    appended to it.
    """
    reader = csv.reader(io.StringIO(text, newline="") if isinstance(text, str) else text)
    header = next(reader, None)
    if header not in (labels_header(class_names), labels_header_before_detector(class_names)):
        return
    face_columns = len(header) - len(labels_header(class_names)) + len(FACE_COLUMNS)
    for number, fields in enumerate(reader, start=2):
        try:
            yield parse_label_fields(fields, class_names, face_columns)
        except (ValueError, IndexError):
            if unreadable is not None:
                unreadable.append(number)


def parse_label_fields(fields: list[str], class_names: tuple[str, ...],
                       face_columns: int = len(FACE_COLUMNS)) -> LabelRow:
    """One labels.csv record (already split into fields) of a model with these classes, from a file with this
    many face columns (its header's); ValueError or IndexError if it is not one this module writes."""
    count = len(class_names)
    path, label, *rest = fields
    if len(rest) != count + len(LABEL_TAIL_COLUMNS) + face_columns:
        raise ValueError(f"{len(fields)} fields")
    if label not in (*class_names, NO_FACE):
        raise ValueError(f"label {label!r}")
    probabilities = tuple(float(p) if p else math.nan for p in rest[:count])
    return LabelRow(path, label, probabilities, rest[count], int(rest[count + 1]), rest[count + 2],
                    FaceInfo.parse(rest[count + 3:]))


def sort_key(row: LabelRow | ErrorRow) -> tuple:
    """The order of rows in the outputs: by path, then a file's faces by rank (largest first)."""
    if isinstance(row, LabelRow):
        return row.path, row.face.face, row.label
    return tuple(row)


def csv_line(fields: list[str]) -> str:
    """One CSV record without its line terminator (the writer adds it)."""
    buffer = io.StringIO()
    # The "\r\n" terminator makes the writer quote fields holding either character; it is then removed.
    csv.writer(buffer, lineterminator=RECORD_END).writerow(fields)
    return buffer.getvalue()[: -len(RECORD_END)]


def format_label_row(row: LabelRow) -> str:
    probabilities = ["" if math.isnan(p) else f"{p:.{PROBABILITY_DECIMALS}f}" for p in row.probabilities]
    return csv_line([row.path, row.label, *probabilities, row.model_version, str(row.file_size), row.file_modified,
                     *row.face.fields()])


def format_error_row(row: ErrorRow) -> str:
    return csv_line([row.path, row.error])
