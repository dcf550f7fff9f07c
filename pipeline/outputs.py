"""The files a labelling run writes into its output folder, and reading them back in either form.

`labels.csv` and `errors.csv` are each written as one file up to a size (see `pipeline.sorted_files.SHARD_ROWS`),
or above it as a set of sorted shards named `labels-00000-of-00008.csv` ...: each shard starts with the header,
and the shards' rows in name order are sorted as a whole. Readers go through `output_files` / `output_lines` /
`read_label_rows`, which take the single file's path and find whichever form is there; `promote_outputs` moves
a run's staged outputs into place, replacing the previous run's in whichever form they were.
"""

import io
import logging
import re
from collections.abc import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.model_files import root_cause

LABELS_FILE: str = "labels.csv"
ERRORS_FILE: str = "errors.csv"
SUMMARY_FILE: str = "summary.json"
REPORT_FILE: str = "report.html"
# summary.json's count of the rows written to labels.csv (runs from before 2026-12-01 have none).
LABEL_ROWS_KEY: str = "label_rows"
# The three outputs every run writes, moved into place together when the run succeeds (the first two may be
# shard sets: see `output_files`).
RUN_FILES: tuple[str, ...] = (LABELS_FILE, ERRORS_FILE, SUMMARY_FILE)
SHARDED_OUTPUTS: tuple[str, ...] = (LABELS_FILE, ERRORS_FILE)
# Shard numbers in names: labels-00000-of-00008.csv.
SHARD_DIGITS: int = 5
SHARD_TEMPLATE: str = "{stem}-{number:0" + str(SHARD_DIGITS) + "d}-of-{shards:0" + str(SHARD_DIGITS) + "d}{suffix}"
ENCODING: str = "utf-8"

log = logging.getLogger("facelabel")


class IncompleteOutputError(ValueError):
    """A shard set with shards missing (or of two sizes): the output folder was tampered with or half-copied."""


def split_name(single_name: str) -> tuple[str, str]:
    """('labels', '.csv') for 'labels.csv'."""
    stem, dot, suffix = single_name.rpartition(".")
    return (stem, dot + suffix) if dot else (single_name, "")


def shard_name(single_name: str, number: int, shards: int) -> str:
    """'labels-00003-of-00008.csv' for ('labels.csv', 3, 8)."""
    stem, suffix = split_name(single_name)
    return SHARD_TEMPLATE.format(stem=stem, number=number, shards=shards, suffix=suffix)


def shard_pattern(single_name: str) -> re.Pattern:
    """Matches the base name of any shard of single_name; groups: shard number, shard count."""
    stem, suffix = split_name(single_name)
    digits = r"(\d{" + str(SHARD_DIGITS) + r"})"
    return re.compile(re.escape(stem) + "-" + digits + "-of-" + digits + re.escape(suffix) + r"\Z")


def shard_files(single_path: str) -> list[str]:
    """Every file next to single_path named as one of its shards, whatever the shard count, sorted by name."""
    folder, name = single_path.rsplit("/", 1) if "/" in single_path else ("", single_path)
    stem, suffix = split_name(name)
    glob = FileSystems.join(folder, f"{stem}-*-of-*{suffix}") if folder else f"{stem}-*-of-*{suffix}"
    pattern = shard_pattern(name)
    found = FileSystems.match([glob])[0].metadata_list
    return sorted(m.path for m in found if pattern.match(m.path.rsplit("/", 1)[-1]))


def output_files(single_path: str) -> list[str]:
    """The files of one output in order: [single_path] if it exists, else its complete shard set, else [].

    Raises IncompleteOutputError if the shards found are not exactly 0..N-1 of one N.
    """
    if FileSystems.exists(single_path):
        return [single_path]
    shards = shard_files(single_path)
    if not shards:
        return []
    pattern = shard_pattern(single_path.rsplit("/", 1)[-1])
    numbers = [tuple(map(int, pattern.match(path.rsplit("/", 1)[-1]).groups())) for path in shards]
    count = numbers[0][1]
    if numbers != [(number, count) for number in range(count)]:
        expected = {(number, count) for number in range(count)}
        missing = sorted(expected - set(numbers))
        names = [shard_name(single_path.rsplit("/", 1)[-1], number, total) for number, total in missing[:3]]
        raise IncompleteOutputError(
            f"incomplete shard set for {single_path}: {len(shards)} files found, {count} expected; missing "
            f"{', '.join(names)}{' ...' if len(missing) > 3 else ''}" if missing else
            f"incomplete shard set for {single_path}: shards of different totals "
            f"{sorted({total for _, total in numbers})}")
    return shards


def output_lines(single_path: str) -> Iterator[str]:
    """The text lines of one output as a single CSV (header once), streamed from either form, in sort order.

    Lines keep their line ends (for csv.reader, which also rejoins quoted newlines). Nothing if absent.
    """
    for number, path in enumerate(output_files(single_path)):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            lines = io.TextIOWrapper(handle, encoding=ENCODING, newline="")
            if number > 0:
                next(lines, None)  # every shard repeats the header: keep the first one only
            yield from lines


def read_label_rows(labels_path: str, class_names: tuple[str, ...], unreadable: list[int] | None = None) -> Iterator:
    """The LabelRows of a run's labels output (labels.csv or its shards), streamed; nothing if it is missing
    or written for other classes; rows that do not parse are skipped, their record numbers appended to
    `unreadable` (see `pipeline.rows.parse_label_rows`)."""
    from pipeline.rows import parse_label_rows
    return parse_label_rows(output_lines(labels_path), class_names, unreadable)


def promote_outputs(staging: str, output_dir: str) -> None:
    """Replace the output folder's results with the staged ones, so a failed run never leaves a mix.

    The previous run's files stay untouched until this run has written all of its own.
    """
    staged = [path for name in RUN_FILES for path in output_files(FileSystems.join(staging, name))]
    final = [FileSystems.join(output_dir, path.rsplit("/", 1)[-1]) for path in staged]
    # A report of the previous run would describe results that are gone: --report writes a new one.
    previous = [path for name in (*RUN_FILES, REPORT_FILE)
                for path in existing_outputs(FileSystems.join(output_dir, name))]
    # Renamed over the previous files first (an atomic replacement on local disk), so no moment leaves the folder
    # without a labels.csv; then the previous files no new one replaced (a shard set, the report) are deleted.
    FileSystems.rename(staged, final)
    replaced = set(final)
    leftover = [path for path in previous if path not in replaced]
    if leftover:
        FileSystems.delete(leftover)


def existing_outputs(single_path: str) -> list[str]:
    """Every file of one output of an earlier run: the single file and any shards (a set of any size)."""
    found = [single_path] if FileSystems.exists(single_path) else []
    if single_path.rsplit("/", 1)[-1] in SHARDED_OUTPUTS:
        found += shard_files(single_path)
    return found


def remove_quietly(folder: str) -> None:
    """Delete a staging folder if it is still there (after a failure, or once emptied by the move)."""
    try:
        if FileSystems.exists(folder) or FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list:
            FileSystems.delete([folder])
    except Exception as err:  # leftovers are harmless: hidden, and never read back
        log.warning("could not remove staging folder %s (%s)", folder, root_cause(err))


def output_names(output_dir: str) -> list[str]:
    """The outputs' names for the summary: 'labels.csv', or 'labels-*-of-00008.csv' for a shard set."""
    names = []
    for name in RUN_FILES:
        files = output_files(FileSystems.join(output_dir, name))
        names.append(name if len(files) <= 1 else shard_name(name, 0, len(files)).replace("00000", "*", 1))
    return names
