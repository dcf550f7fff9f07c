"""The earlier run's labels, for --incremental: whether they can be used, and reading them back.

An unchanged file (same size and modification time) labelled by the same model in the same --faces mode keeps
its earlier rows; everything else is labelled again. Earlier labels that cannot be used at all (other columns,
another --faces mode, no summary.json beside them) are said once, where the job is launched, so that a run that
relabels everything is never a surprise; a single row that does not parse only costs its own image a new label.
"""

import csv
import io
import json
import logging
from collections.abc import Iterable

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.outputs import ENCODING, SUMMARY_FILE, read_label_rows
from pipeline.rows import FACES_NONE, LabelRow, labels_header

log = logging.getLogger("facelabel")


def previous_faces_mode(labels_path: str) -> str | None:
    """The --faces mode of the run that wrote labels_path, from the summary.json beside it (runs from before the
    option had none: their mode was FACES_NONE); None without a readable summary."""
    summary_path = FileSystems.join(labels_path.rsplit("/", 1)[0], SUMMARY_FILE)
    try:
        with FileSystems.open(summary_path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return json.loads(handle.read().decode(ENCODING)).get("faces", FACES_NONE)
    except (OSError, ValueError, AttributeError):
        return None


def first_record(path: str) -> list[str] | None:
    """The first CSV record of a file (its header), or None if it cannot be read as text."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return next(csv.reader(io.TextIOWrapper(handle, encoding=ENCODING, newline="")), None)
    except (OSError, ValueError):  # UnicodeDecodeError and csv.Error are ValueErrors
        return None


def unusable_reason(labels_path: str, first_file: str, class_names: tuple[str, ...],
                    faces_mode: str) -> str | None:
    """Why none of the earlier rows can be carried over (one phrase), or None if they can be.

    first_file: the labels output's first file (labels.csv, or its first shard), whose header is checked.
    """
    header = first_record(first_file)
    if header != labels_header(class_names):
        return (f"{first_file} does not start with this model's labels header ("
                + ("not readable as text" if header is None else f"{len(header)} columns: "
                   + ",".join(header[:4])[:80] + ("..." if len(header) > 4 else "")) + ")")
    earlier_mode = previous_faces_mode(labels_path)
    if earlier_mode is None:
        return f"no readable {SUMMARY_FILE} beside {labels_path} says which --faces mode wrote it"
    if earlier_mode != faces_mode:
        return f"the earlier run used --faces {earlier_mode}, this one --faces {faces_mode}"
    return None


def read_previous_rows(path: str, class_names: tuple[str, ...],
                       faces_mode: str | None = None) -> Iterable[tuple[str, LabelRow]]:
    """(path, row) for each row of an earlier labels.csv (or its shard set), streamed; nothing if it is missing,
    of another layout, or (with faces_mode) written with another --faces mode: then every image is labelled
    again. Rows that do not parse are skipped (their images are labelled again) and counted in one warning."""
    if faces_mode is not None and previous_faces_mode(path) != faces_mode:
        return
    unreadable: list[int] = []
    for row in read_label_rows(path, class_names, unreadable):
        yield row.path, row
    if unreadable:
        one = len(unreadable) == 1
        log.warning("--incremental: %d row%s of %s could not be read (record %s%s): %s labelled again",
                    len(unreadable), "" if one else "s", path, ", ".join(map(str, unreadable[:3])),
                    " ..." if len(unreadable) > 3 else "", "its image is" if one else "their images are")
