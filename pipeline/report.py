"""A visual report of one labelling run: `python -m pipeline.report RUN_DIR` writes RUN_DIR/report.html.

The page shows the counts per label, a histogram of p_<first class> (p_happy), the first errors, and grids of
the most confidently labelled faces of each class and of the least certain ones, each face as the model saw it
(found and aligned again with the job's own code), and the number of images without a face with a few of them.
It is one static, self-contained file (see `pipeline.report_html`), so it opens from disk and from a bucket's
public URL alike; RUN_DIR may be local or gs:// (everything is read and written through Beam's FileSystems).

It stays fast and small for millions of images: labels.csv (or its shards, see `pipeline.outputs`) is streamed
once with csv.reader, keeping only the histogram counts and one bounded heap per grid, and only the few images
shown are read. "Least certain" means
the highest class probability is lowest, i.e. for two classes p_happy closest to 0.5: the probabilities are
calibrated, so those are the faces the model itself is least sure about.

    python -m pipeline.report out/fer2013            # or: make report RUN=out/fer2013
"""

import argparse
import csv
import dataclasses
import datetime
import heapq
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterable

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.model_files import is_local, root_cause
from pipeline.outputs import (ERRORS_FILE, LABELS_FILE, REPORT_FILE, SUMMARY_FILE, IncompleteOutputError,
                              output_files, output_lines)
from pipeline.report_html import Grid, ReportView, Tile, counted, render_report
from pipeline.thumbnails import Thumbnails
from pipeline.rows import FACE_COLUMNS, FACE_COLUMNS_BEFORE_DETECTOR, NO_FACE, FaceInfo

HTML_MIME: str = "text/html; charset=utf-8"

# Faces per grid, bins of the histogram, and error rows listed (errors.csv holds them all).
GRID_SIZE: int = 24
HISTOGRAM_BINS: int = 20
MAX_ERRORS_LISTED: int = 200
# labels.csv columns before the probabilities.
PATH_COLUMN, LABEL_COLUMN = 0, 1
PROBABILITY_PREFIX: str = "p_"
FACE_COLUMN: str = FACE_COLUMNS[0]  # the face's rank; faces_found follows it
UNCERTAIN_KEY: str = "uncertain"
EXIT_FAILED: int = 1
EXIT_USER_ERROR: int = 2

log = logging.getLogger("facelabel")


class ReportError(ValueError):
    """The folder is not a labelling run's output; the message says why in one line."""


class TopK:
    """The k highest-scoring items offered so far, in O(k) memory; on equal scores the earlier item stays."""

    def __init__(self, k: int) -> None:
        self._k = k
        self._heap: list[tuple[float, int, object]] = []
        self._offered = 0

    def offer(self, score: float, item: object) -> None:
        self._offered += 1
        if len(self._heap) < self._k:
            heapq.heappush(self._heap, (score, -self._offered, item))
        elif score > self._heap[0][0]:
            heapq.heapreplace(self._heap, (score, -self._offered, item))

    def best(self) -> list:
        """The kept items, highest score first."""
        return [item for _, _, item in sorted(self._heap, reverse=True)]


@dataclasses.dataclass(frozen=True)
class Picked:
    """A labels.csv row chosen for a grid; face is the row's face rank (None: the whole image was the face)."""

    path: str
    label: str
    probabilities: tuple[float, ...]
    face: int | None = None


@dataclasses.dataclass
class LabelStats:
    """What one pass over labels.csv keeps: counts, histogram and the grids' rows, never the rows themselves."""

    class_names: tuple[str, ...]
    label_counts: Counter
    histogram: list[list[int]]
    confident: dict[str, list[Picked]]
    uncertain: list[Picked]
    no_face: list[Picked]
    rows: int
    unreadable_rows: int


def probability_columns(header: list[str] | None) -> tuple[tuple[str, ...], list[int]]:
    """(class names, their column indexes) from a labels.csv header: path, label, p_<class>..., ..."""
    if not header or header[PATH_COLUMN:LABEL_COLUMN + 1] != ["path", "label"]:
        raise ReportError(f"{LABELS_FILE} does not start with the header path,label,p_...: {header}")
    columns = [i for i, name in enumerate(header) if i > LABEL_COLUMN and name.startswith(PROBABILITY_PREFIX)]
    if not columns:
        raise ReportError(f"{LABELS_FILE} has no {PROBABILITY_PREFIX}<class> columns: {header}")
    return tuple(header[i][len(PROBABILITY_PREFIX):] for i in columns), columns


def face_rank(fields: list[str], face_column: int | None) -> int | None:
    """The rank of a row's face (1 = largest), or None where the whole image was the face: a file without face
    columns, a `--faces none` run (nothing searched) or a row whose face columns cannot be read."""
    if face_column is None:
        return None
    cells = fields[face_column:face_column + len(FACE_COLUMNS)]  # four in a file written before face_detector
    if len(cells) < len(FACE_COLUMNS_BEFORE_DETECTOR):
        return None
    try:
        info = FaceInfo.parse(cells)
    except ValueError:
        return None
    return info.face if info.faces_found > 0 and info.face > 0 else None


def scan_labels(lines: Iterable[str], grid_size: int = GRID_SIZE, bins: int = HISTOGRAM_BINS) -> LabelStats:
    """One streaming pass over labels.csv lines; memory depends on grid_size and bins, not on the row count."""
    reader = csv.reader(lines)
    header = next(reader, None)
    class_names, columns = probability_columns(header)
    face_column = header.index(FACE_COLUMN) if FACE_COLUMN in header else None
    no_face: list[list[str]] = []
    class_index = {name: i for i, name in enumerate(class_names)}
    other = len(class_names)  # histogram slot for a label that is not one of the model's classes
    histogram = [[0] * (other + 1) for _ in range(bins)]
    confident = {name: TopK(grid_size) for name in class_names}
    uncertain = TopK(grid_size)
    counts: Counter = Counter()
    rows = unreadable = 0
    for fields in reader:
        if fields[LABEL_COLUMN:LABEL_COLUMN + 1] == [NO_FACE]:
            rows += 1
            counts[NO_FACE] += 1
            if len(no_face) < grid_size:
                no_face.append(fields)
            continue
        try:
            label = fields[LABEL_COLUMN]
            probabilities = [float(fields[i]) for i in columns]
            slot = min(max(int(probabilities[0] * bins), 0), bins - 1)  # ValueError for NaN
        except (IndexError, ValueError, OverflowError):
            unreadable += 1
            continue
        rows += 1
        counts[label] += 1
        index = class_index.get(label, other)
        histogram[slot][index] += 1
        if index < other:
            confident[label].offer(probabilities[index], fields)
        uncertain.offer(-max(probabilities), fields)

    def picked(fields: list[str]) -> Picked:
        return Picked(fields[PATH_COLUMN], fields[LABEL_COLUMN], tuple(float(fields[i]) for i in columns),
                      face_rank(fields, face_column))

    return LabelStats(class_names, counts, histogram,
                      {name: [picked(f) for f in top.best()] for name, top in confident.items()},
                      [picked(f) for f in uncertain.best()],
                      [Picked(f[PATH_COLUMN], NO_FACE, ()) for f in no_face], rows, unreadable)


def scan_errors(lines: Iterable[str], limit: int = MAX_ERRORS_LISTED) -> tuple[list[tuple[str, str]], int]:
    """(the first `limit` (path, error) rows of errors.csv, how many rows it has in all), in one pass."""
    reader = csv.reader(lines)
    next(reader, None)  # header
    shown, total = [], 0
    for fields in reader:
        if not fields:
            continue
        total += 1
        if len(shown) < limit:
            shown.append((fields[0], fields[1] if len(fields) > 1 else ""))
    return shown, total


def read_summary(run_dir: str) -> dict | None:
    """summary.json as a dict, or None when it is missing or unreadable (the report is still useful without)."""
    path = FileSystems.join(run_dir, SUMMARY_FILE)
    try:
        if not FileSystems.exists(path):
            return None
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            summary = json.loads(handle.read().decode("utf-8"))
    except Exception as err:  # a damaged summary should not cost the whole report
        log.warning("ignoring unreadable %s (%s)", path, root_cause(err))
        return None
    return summary if isinstance(summary, dict) else None


def make_grids(stats: LabelStats, aligned_crops: bool = False) -> tuple[Grid, ...]:
    """The grids, with each image read once (a face can sit in two grids); aligned_crops: the run's model's
    (summary.json), so a face-sized image's tile shows the face as that model saw it."""
    chosen = [(name, stats.confident[name]) for name in stats.class_names] + [(UNCERTAIN_KEY, stats.uncertain)]
    if stats.no_face:
        chosen.append((NO_FACE, stats.no_face))
    thumbnails = Thumbnails(aligned_crops).make([(p.path, p.face, p.label == NO_FACE)
                                                 for _, picks in chosen for p in picks])
    grids = []
    under = "Under each face: its file, its label and the probability of that label; hover for more."
    for key, picks in chosen:
        tiles = tuple(Tile(p.path, p.label, p.probabilities, *thumbnails[(p.path, p.face, p.label == NO_FACE)])
                      for p in picks)
        if key == UNCERTAIN_KEY:
            title, note = "Least certain", (f"The {counted(len(tiles), 'face')} whose highest probability is lowest "
                                            f"(for two classes: p_{stats.class_names[0]} closest to 0.5). {under}"
                                            if tiles else "No face was labelled.")
        elif key == NO_FACE:
            title, note = "No face found", (f"The first {len(tiles)} of the "
                                            f"{counted(stats.label_counts[NO_FACE], 'image')} "
                                            f"in which no face was found (label {NO_FACE}), whole and small.")
        else:
            title, note = (f"Most confidently {key}",
                           f"The {counted(len(tiles), 'face')} labelled {key} with the highest p_{key}. {under}"
                           if tiles
                           else f"No face was labelled {key}.")
        grids.append(Grid(key, title, note, tiles))
    return tuple(grids)


def build_view(run_dir: str, grid_size: int = GRID_SIZE, max_errors: int = MAX_ERRORS_LISTED) -> ReportView:
    """Read the run's files (labels.csv once, errors.csv once, summary.json) into what the page shows."""
    labels_path = FileSystems.join(run_dir, LABELS_FILE)
    try:
        if not output_files(labels_path):
            if is_local(run_dir) and not FileSystems.exists(run_dir):
                raise ReportError(f"no such folder: {run_dir}")
            raise ReportError(f"no {LABELS_FILE} in {run_dir}: not the output folder of a labelling run")
        stats = scan_labels(output_lines(labels_path), grid_size)
        errors_path = FileSystems.join(run_dir, ERRORS_FILE)
        errors_missing = not output_files(errors_path)
        if errors_missing:
            log.warning("no %s in %s: the report cannot list the failed images", ERRORS_FILE, run_dir)
        errors, errors_total = ([], 0) if errors_missing else scan_errors(output_lines(errors_path), max_errors)
    except IncompleteOutputError as err:
        raise ReportError(str(err)) from None
    summary = read_summary(run_dir)
    return ReportView(
        run_dir=run_dir, summary=summary, class_names=stats.class_names,
        label_counts=dict(stats.label_counts), labelled=stats.rows,
        histogram=tuple(tuple(counts) for counts in stats.histogram),
        grids=make_grids(stats, (summary or {}).get("aligned_crops") is True),  # read as --incremental reads it
        errors=tuple(errors), errors_total=errors_total, unreadable_rows=stats.unreadable_rows,
        generated_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        errors_file_missing=errors_missing)


def write_report(run_dir: str, output: str | None = None, grid_size: int = GRID_SIZE,
                 max_errors: int = MAX_ERRORS_LISTED) -> str:
    """Write the report (default RUN_DIR/report.html) and return its path; raises ReportError for a non-run."""
    page = render_report(build_view(run_dir, grid_size, max_errors)).encode("utf-8")
    target = output or FileSystems.join(run_dir, REPORT_FILE)
    # The content type matters on gs://: a bucket's public URL then shows the page instead of downloading it.
    with FileSystems.create(target, mime_type=HTML_MIME, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(page)
    return target


def report_after_run(run_dir: str) -> str | None:
    """`pipeline.run --report`: write the report, but never fail a run whose outputs are already in place."""
    try:
        path = write_report(run_dir)
    except Exception as err:
        log.error("labels written, but the report could not be: %s", root_cause(err))
        return None
    log.info("report written to %s", path)
    return path


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    from model import console  # TensorFlow (for the face finder) starts with its C++ noise filtered

    console.configure_logging()
    parser = console.OneLineParser(
        prog="python -m pipeline.report",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="output folder of a labelling run, local or gs://")
    parser.add_argument("--output", help=f"where to write the page (default: RUN_DIR/{REPORT_FILE})")
    parser.add_argument("--grid-size", type=positive, default=GRID_SIZE, help="faces per grid")
    parser.add_argument("--max-errors", type=positive, default=MAX_ERRORS_LISTED, help="error rows listed")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.run_dir, args.output, args.grid_size, args.max_errors)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as err:  # e.g. an unreachable bucket: one line, not a traceback
        print(f"error: cannot write the report for {args.run_dir} ({root_cause(err)})", file=sys.stderr)
        return EXIT_FAILED
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
