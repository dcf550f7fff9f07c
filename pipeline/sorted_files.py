"""Sorted CSV output at any size: a distributed external sort into range-partitioned shards.

`WriteSortedCsv` takes (sort key, line) pairs, where `line` is one formatted CSV record and the sort key a tuple
starting with its path (`pipeline.rows.sort_key`), and writes the lines sorted by (key, line) as either one file
(`labels.csv`, up to SHARD_ROWS rows) or range-partitioned shards (`labels-00000-of-00008.csv`, ...), each sorted
and each with the header, so the shards' rows in name order are sorted as a whole. All rows of one path land in the same shard: boundaries are paths, a
shard holds the paths p with lower <= p < upper, so paths need not be unique.

No step holds all rows, on any runner:
1. SpillRuns (runs where the rows are made, in parallel): buffers at most RUN_ROWS pairs, sorts them and writes a
   run file to a temporary folder; emits a small RunFile: name, count, first/last path and a sparse index
   (every INDEX_EVERY-th path with its byte offset), which doubles as an evenly spaced sample of the run.
2. PlanShards (one small element): from the RunFiles alone (side input), the number of shards and the boundary
   paths at quantiles of the pooled index, and per shard the byte range of each run that can hold its paths.
3. WriteShard (one task per shard, reshuffled across workers): reads its ranges, keeps its paths, sorts, writes.
4. DeleteRuns: removes the run files once every shard is written.
Memory per worker is bounded by RUN_ROWS and by a shard's rows (about SHARD_ROWS), never by the input; the only
data gathered in one place is the RunFiles, one per RUN_ROWS rows (or per bundle), each with count / INDEX_EVERY
index entries.
"""

import bisect
import dataclasses
import logging
import math
import pickle
import struct
import uuid
from collections.abc import Iterator
from operator import itemgetter

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.outputs import shard_name

# Rows one worker sorts in memory before writing them out as one run file (about 30 MB for 100,000 rows).
RUN_ROWS: int = 100_000
# Up to this many rows the output is one file; above it, ceil(rows / SHARD_ROWS) shards of about this size.
SHARD_ROWS: int = 250_000
# Every INDEX_EVERY-th row of a run is indexed (path, byte offset): the sample for boundaries and the seek points;
# at least SAMPLES_PER_SHARD per shard's worth of rows, so small shard sizes (tests) stay balanced too.
INDEX_EVERY: int = 1_000
SAMPLES_PER_SHARD: int = 100
# Run file record: three big-endian unsigned 32-bit lengths, then the path (UTF-8), the rest of the sort key
# (pickled; empty for a key of the path alone) and the line (UTF-8).
RECORD_HEADER = struct.Struct(">III")
Record = tuple[bytes, bytes, bytes]
RUN_SUFFIX: str = ".run"
# Rows are written to the output file in chunks of this many lines.
WRITE_CHUNK_LINES: int = 10_000
ENCODING: str = "utf-8"
LINE_END: bytes = b"\n"

log = logging.getLogger("facelabel")


@dataclasses.dataclass(frozen=True)
class RunFile:
    """One sorted run file: its name, row count, first and last path, [(path, byte offset)] every
    `index_every` rows (the first row included), all paths UTF-8 bytes, and its size in bytes."""

    name: str
    count: int
    first: bytes
    last: bytes
    index: tuple[tuple[bytes, int], ...]
    size: int
    index_every: int


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """Write shard `number` of `shards`: the rows with lower <= path < upper (None: unbounded) from the byte
    ranges (run file name, start, end) of the runs."""

    number: int
    shards: int
    lower: bytes | None
    upper: bytes | None
    ranges: tuple[tuple[str, int, int], ...]


def index_spacing(shard_rows: int) -> int:
    """Rows between index entries: INDEX_EVERY, or less for shards under SAMPLES_PER_SHARD x INDEX_EVERY rows."""
    return max(1, min(INDEX_EVERY, shard_rows // SAMPLES_PER_SHARD))


def encode_record(key: tuple, line: str, shared: dict[bytes, bytes]) -> Record:
    """(path, pickled rest of the key, line) as bytes, for a sort key starting with the path. Equal rests (most
    rows have one of a few) are one object, kept in `shared`."""
    rest = pickle.dumps(key[1:]) if len(key) > 1 else b""
    return key[0].encode(ENCODING), shared.setdefault(rest, rest), line.encode(ENCODING)


def record_order(record: Record) -> tuple:
    """The output order: path, then the rest of the sort key, then the line."""
    path, rest, line = record
    return path, pickle.loads(rest) if rest else (), line


def put_in_order(records: list[Record]) -> None:
    """Sort records into record_order, in place: by path (no key objects made), then each run of one path by
    the rest of its key, unpickled only there (several faces of one image)."""
    records.sort(key=itemgetter(0))
    start = 0
    for end in range(1, len(records) + 1):
        if end == len(records) or records[end][0] != records[start][0]:
            if end - start > 1:
                records[start:end] = sorted(records[start:end], key=record_order)
            start = end


def write_run(name: str, pairs: list[Record], index_every: int = INDEX_EVERY) -> RunFile:
    """Sort records by path and write them to `name` as one run file, indexing every index_every-th row;
    returns its RunFile. (Rows of one path are put in order when their shard is written.)"""
    pairs.sort()
    index, offset, chunks = [], 0, []
    for number, (path, rest, line) in enumerate(pairs):
        if number % index_every == 0:
            index.append((path, offset))
        record = RECORD_HEADER.pack(len(path), len(rest), len(line)) + path + rest + line
        chunks.append(record)
        offset += len(record)
    with FileSystems.create(name, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(b"".join(chunks))
    return RunFile(name, len(pairs), pairs[0][0], pairs[-1][0], tuple(index), offset, index_every)


def read_records(data: bytes) -> Iterator[Record]:
    """The records of a run file's bytes (or of a slice that starts and ends on record bounds)."""
    position, header = 0, RECORD_HEADER.size
    while position < len(data):
        lengths = RECORD_HEADER.unpack_from(data, position)
        fields, start = [], position + header
        for length in lengths:
            fields.append(data[start:start + length])
            start += length
        yield tuple(fields)
        position = start


def read_range(name: str, start: int, end: int) -> bytes:
    """Bytes start..end of a file on any Beam file system."""
    with FileSystems.open(name, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.seek(start)
        return handle.read(end - start)


class SpillRuns(beam.DoFn):
    """(sort key, line) -> RunFile: sorted run files of at most run_rows rows each, written into temp_dir."""

    def __init__(self, temp_dir: str, run_rows: int, index_every: int):
        self._temp_dir = temp_dir
        self._run_rows = run_rows
        self._index_every = index_every

    def start_bundle(self) -> None:
        self._pairs: list[Record] = []
        self._shared: dict[bytes, bytes] = {}

    def process(self, pair: tuple[tuple, str]):
        self._pairs.append(encode_record(*pair, self._shared))
        if len(self._pairs) >= self._run_rows:
            yield self._spill()

    def finish_bundle(self):
        if self._pairs:
            yield WindowedValue(self._spill(), MIN_TIMESTAMP, [GlobalWindow()])

    def _spill(self) -> RunFile:
        pairs, self._pairs = self._pairs, []
        return write_run(FileSystems.join(self._temp_dir, uuid.uuid4().hex + RUN_SUFFIX), pairs, self._index_every)


def shard_count(rows: int, shard_rows: int) -> int:
    """1 up to shard_rows rows (one file), else ceil(rows / shard_rows)."""
    return max(1, math.ceil(rows / shard_rows))


def boundaries(runs: list[RunFile], shards: int) -> list[bytes]:
    """shards - 1 paths splitting the rows into shards of about equal size, at quantiles of the runs' index
    entries (each stands for the index_every rows from it on, or the rest of its run). Not strictly increasing
    when one path holds many rows: a shard between two equal boundaries is empty."""
    weighted = sorted((path, min(run.index_every, run.count - number * run.index_every))
                      for run in runs for number, (path, _) in enumerate(run.index))
    total = sum(weight for _, weight in weighted)
    cuts, seen, position = [], 0, 0
    for shard in range(1, shards):
        target = total * shard / shards
        while position < len(weighted) - 1 and seen + weighted[position][1] <= target:
            seen += weighted[position][1]
            position += 1
        cuts.append(weighted[position][0])
    return cuts


def run_range(run: RunFile, lower: bytes | None, upper: bytes | None) -> tuple[int, int] | None:
    """The byte range of `run` that holds every row with lower <= path < upper (maybe a few more), or None."""
    if (upper is not None and run.first >= upper) or (lower is not None and run.last < lower):
        return None
    paths = [path for path, _ in run.index]
    start = 0
    if lower is not None:  # the last indexed row below lower: every row before it is below lower too
        below = bisect.bisect_left(paths, lower) - 1
        start = run.index[below][1] if below >= 0 else 0
    end = run.size
    if upper is not None:  # the first indexed row at or above upper: every row from it on is too
        above = bisect.bisect_left(paths, upper)
        end = run.index[above][1] if above < len(paths) else run.size
    return start, end


def plan_shards(_, runs: list[RunFile], shard_rows: int) -> Iterator[ShardTask]:
    """One ShardTask per shard (at least one, so an empty input still gets its header-only file)."""
    runs = sorted(runs, key=lambda run: run.name)
    shards = shard_count(sum(run.count for run in runs), shard_rows)
    cuts = boundaries(runs, shards) if shards > 1 else []
    edges = [None, *cuts, None]
    for number in range(shards):
        lower, upper = edges[number], edges[number + 1]
        ranges = []
        for run in runs:
            found = run_range(run, lower, upper)
            if found and found[1] > found[0]:
                ranges.append((run.name, *found))
        yield ShardTask(number, shards, lower, upper, tuple(ranges))


def shard_lines(task: ShardTask) -> list[bytes]:
    """The task's rows, read from its ranges, filtered to its paths and put in order (record_order): the lines."""
    pairs, shared = [], {}
    for name, start, end in task.ranges:
        for path, rest, line in read_records(read_range(name, start, end)):
            if (task.lower is None or path >= task.lower) and (task.upper is None or path < task.upper):
                pairs.append((path, shared.setdefault(rest, rest), line))
    put_in_order(pairs)
    return [line for _, _, line in pairs]


def write_lines(name: str, header: str, lines: list[bytes]) -> None:
    """Write header and lines, each ended by "\\n", to `name` (as Beam's WriteToText does)."""
    with FileSystems.create(name, mime_type="text/csv",
                            compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(header.encode(ENCODING) + LINE_END)
        for start in range(0, len(lines), WRITE_CHUNK_LINES):
            chunk = lines[start:start + WRITE_CHUNK_LINES]
            handle.write(LINE_END.join(chunk) + LINE_END)


def delete_runs(_, runs: list[RunFile], written: list[str], temp_dir: str) -> list[str]:
    """Delete the run files and their folder once every shard in `written` is done; returns what was deleted.

    Files of bundles that failed and were retried are in the folder but in no RunFile: they go too.
    """
    names = [run.name for run in runs]
    try:
        leftovers = [m.path for m in FileSystems.match([FileSystems.join(temp_dir, "*")])[0].metadata_list]
        names = sorted(set(names) | set(leftovers))
    except Exception as err:  # nothing there
        log.debug("no leftovers in %s (%s)", temp_dir, err)
    if names:
        FileSystems.delete(names)
    if FileSystems.exists(temp_dir):  # a local folder, now empty (object stores have no folders)
        FileSystems.delete([temp_dir])
    return names


class WriteSortedCsv(beam.PTransform):
    """(sort key, line) pairs -> `single_name` (one file, up to shard_rows rows) or its sorted shard set, in
    output_dir; the sort key is a tuple starting with the row's path (shards split by path only).

    `header` is the CSV header line without its line end; every file written starts with it. run_rows and
    shard_rows default to RUN_ROWS and SHARD_ROWS (read when the transform is made, so tests can lower them).
    Returns the PCollection of the names of the files written.
    """

    def __init__(self, output_dir: str, single_name: str, header: str, temp_dir: str,
                 run_rows: int | None = None, shard_rows: int | None = None):
        super().__init__()
        self._output_dir, self._single_name, self._header = output_dir, single_name, header
        self._temp_dir = temp_dir
        self._run_rows, self._shard_rows = run_rows or RUN_ROWS, shard_rows or SHARD_ROWS

    def _write(self, task: ShardTask) -> str:
        name = self._single_name if task.shards == 1 else shard_name(self._single_name, task.number, task.shards)
        target = FileSystems.join(self._output_dir, name)
        write_lines(target, self._header, shard_lines(task))
        return target

    def expand(self, pairs):
        spill = SpillRuns(self._temp_dir, self._run_rows, index_spacing(self._shard_rows))
        runs = pairs | "SpillRuns" >> beam.ParDo(spill)
        start = pairs.pipeline | "Start" >> beam.Create([None])
        written = (start
                   | "PlanShards" >> beam.FlatMap(plan_shards, beam.pvalue.AsList(runs), self._shard_rows)
                   | "SpreadShards" >> beam.Reshuffle()
                   | "WriteShard" >> beam.Map(self._write))
        _ = (start | "DeleteRuns" >> beam.Map(delete_runs, beam.pvalue.AsList(runs), beam.pvalue.AsList(written),
                                              self._temp_dir))
        return written

