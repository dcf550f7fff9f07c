"""Output rows: what one labelled or failed image becomes, and how it is written as a CSV line.

`labels.csv`: path, label, one p_<class> column per model class (in the model's class order), model_version,
file_size and file_modified (bytes and modification time in Unix seconds when labelled: an incremental run
relabels a file only when these changed, or when the model did).
`errors.csv`: path, error.
Lines are produced with the `csv` module, so paths with commas, quotes or newlines round-trip through
`csv.reader` exactly.
"""

import csv
import io
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from apache_beam.ml.inference.base import PredictionResult

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


class LabelRow(NamedTuple):
    path: str
    label: str
    probabilities: tuple[float, ...]
    model_version: str
    file_size: int
    file_modified: str


class ErrorRow(NamedTuple):
    path: str
    error: str


def labels_header(class_names: tuple[str, ...]) -> list[str]:
    return ["path", "label", *(f"p_{name}" for name in class_names), "model_version", "file_size", "file_modified"]


ERRORS_HEADER: list[str] = ["path", "error"]


def to_label_row(keyed: tuple[FileKey, PredictionResult]) -> LabelRow:
    """(FileKey, PredictionResult from SavedModelHandler) -> LabelRow."""
    key, result = keyed
    return LabelRow(key.path, result.inference.label, result.inference.probabilities, result.model_id,
                    key.size, key.modified_text)


def parse_label_rows(text: str | Iterable[str], class_names: tuple[str, ...]) -> Iterator[LabelRow]:
    """Rows of a labels.csv written by this module (its whole text, or its lines as read with newline="");
    nothing if its columns are not this model's."""
    reader = csv.reader(io.StringIO(text, newline="") if isinstance(text, str) else text)
    if next(reader, None) != labels_header(class_names):
        return
    count = len(class_names)
    for fields in reader:
        path, label, *rest = fields
        yield LabelRow(path, label, tuple(float(p) for p in rest[:count]), rest[count], int(rest[count + 1]),
                       rest[count + 2])


def csv_line(fields: list[str]) -> str:
    """One CSV record without its line terminator (the writer adds it)."""
    buffer = io.StringIO()
    # The "\r\n" terminator makes the writer quote fields holding either character; it is then removed.
    csv.writer(buffer, lineterminator=RECORD_END).writerow(fields)
    return buffer.getvalue()[: -len(RECORD_END)]


def format_label_row(row: LabelRow) -> str:
    probabilities = [f"{p:.{PROBABILITY_DECIMALS}f}" for p in row.probabilities]
    return csv_line([row.path, row.label, *probabilities, row.model_version, str(row.file_size), row.file_modified])


def format_error_row(row: ErrorRow) -> str:
    return csv_line([row.path, row.error])
