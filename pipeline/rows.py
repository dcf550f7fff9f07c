"""Output rows: what one labelled or failed image becomes, and how it is written as a CSV line.

`labels.csv`: path, label, one p_<class> column per model class (in the model's class order), model_version.
`errors.csv`: path, error.
Lines are produced with the `csv` module, so paths with commas, quotes or newlines round-trip through
`csv.reader` exactly.
"""

import csv
import io
from typing import NamedTuple

from apache_beam.ml.inference.base import PredictionResult

PROBABILITY_DECIMALS: int = 6
RECORD_END: str = "\r\n"


class LabelRow(NamedTuple):
    path: str
    label: str
    probabilities: tuple[float, ...]
    model_version: str


class ErrorRow(NamedTuple):
    path: str
    error: str


def labels_header(class_names: tuple[str, ...]) -> list[str]:
    return ["path", "label", *(f"p_{name}" for name in class_names), "model_version"]


ERRORS_HEADER: list[str] = ["path", "error"]


def to_label_row(keyed: tuple[str, PredictionResult]) -> LabelRow:
    """(path, PredictionResult from SavedModelHandler) -> LabelRow."""
    path, result = keyed
    return LabelRow(path, result.inference.label, result.inference.probabilities, result.model_id)


def csv_line(fields: list[str]) -> str:
    """One CSV record without its line terminator (the writer adds it)."""
    buffer = io.StringIO()
    # The "\r\n" terminator makes the writer quote fields holding either character; it is then removed.
    csv.writer(buffer, lineterminator=RECORD_END).writerow(fields)
    return buffer.getvalue()[: -len(RECORD_END)]


def format_label_row(row: LabelRow) -> str:
    probabilities = [f"{p:.{PROBABILITY_DECIMALS}f}" for p in row.probabilities]
    return csv_line([row.path, row.label, *probabilities, row.model_version])


def format_error_row(row: ErrorRow) -> str:
    return csv_line([row.path, row.error])
