"""Input addressing: what `--input` names, and the listing of the files it names, on local disk and gs:// alike.

The grammar, decided in this order:
1. An existing folder is walked as a folder, recursively, whatever characters its name has (`faces [party]` is a
   folder, not a pattern). Files with an image extension, in any case, are taken; the rest are skipped and
   counted by kind (`pipeline/skipped.py`). Symbolic links to folders are followed once (a link back into a
   folder already walked is not); a folder that cannot be listed is an error row.
2. An existing file is labelled as one file, whatever its name.
3. Anything else is a glob pattern, matched as a bash shell with `globstar` would: `*`, `?` and `[...]` within one
   name, `{a,b}` alternatives, `**` as a whole name for any number of folders, none included (`DIR/**/*.jpg`
   takes `DIR/a.jpg` too); wildcards do not match a name's leading `.`; a backslash or brackets quote a special
   character (`\\[` or `[[]`). Unlike a shell, an image extension written literally at the end matches in any
   case (`*.jpg` takes `IMG_1.JPG`, as folder mode does); any other case difference excludes a file, and the
   files folder mode would take that a pattern misses only by case are named in a warning. A relative pattern
   works from the current folder. Every match is taken as given (no skip rules).

A file name that is not valid UTF-8 is kept as Python's surrogate-escaped `str` to open it, and written in the
outputs with each byte that is not part of valid UTF-8 as `\\xNN` (`display_path`).
"""

import dataclasses
import glob
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems
from wcmatch import fnmatch as wfnmatch
from wcmatch import glob as wglob

from model.contract import IMAGE_EXTENSIONS, is_image_path
from pipeline.model_files import is_local, root_cause
from pipeline.rows import ErrorRow
from pipeline.skipped import SYSTEM_FOLDER, is_system_folder, skip_kind

FOLDER, FILE, PATTERN = "folder", "file", "pattern"
GLOB_FLAGS: int = wglob.GLOBSTAR | wglob.BRACE | wglob.FORCEUNIX
NAME_FLAGS: int = wfnmatch.BRACE | wfnmatch.FORCEUNIX | wfnmatch.IGNORECASE
GLOBSTAR: str = "**"
SEPARATOR: str = "/"
BROKEN_LINK_REASON: str = "broken symbolic link (its target does not exist)"
UNLISTABLE_REASON: str = "folder cannot be listed"
NOT_REGULAR_REASON: str = "not a regular file"
# How many example paths the start-of-run warnings name.
WARNING_EXAMPLES: int = 3
# Events of a listing: a file to read (FileMetadata), an error row (matched, failed), a skipped file (path,
# kind), a file a pattern misses only by case (path).
TAKE, ERROR, SKIP, CASE = "take", "error", "skip", "case"


class InputError(Exception):
    """The input cannot be used (missing, matches nothing, cannot be listed); the message is one line."""


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """--input as given (text) and how it is read: FOLDER, FILE or PATTERN (kind)."""

    text: str
    kind: str


def display_path(path: str) -> str:
    """The path as written in the outputs: itself when valid UTF-8, else with each byte that is not part of valid
    UTF-8 as `\\xNN` (a Latin-1 'é' from an old archive reads `caf\\xe9.jpg`)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def resolve_input(text: str) -> InputSpec:
    """Decide what --input names: an existing folder, an existing file, else a pattern.

    Raises InputError when a gs:// location cannot be checked (e.g. a bucket that does not exist).
    """
    if is_local(text):
        if os.path.isdir(text):
            return InputSpec(text, FOLDER)
        return InputSpec(text, FILE if os.path.lexists(text) else PATTERN)
    try:
        if _gcs_listing(_folder_prefix(text), limit=1):
            return InputSpec(text, FOLDER)
        if not text.endswith(SEPARATOR) and _gcs_listing(glob.escape(text)):
            return InputSpec(text, FILE)
    except Exception as err:
        raise InputError(f"cannot list input {text} ({root_cause(err)})") from None
    return InputSpec(text, PATTERN)


def list_input(spec: InputSpec) -> Iterator[tuple[str, object]]:
    """Every event of listing the input: (TAKE, FileMetadata), (ERROR, ErrorRow), (SKIP, (path, kind)),
    (CASE, path); FileMetadata.path is the real path (opened as is), ErrorRow.path its display_path."""
    if spec.kind == FILE:
        yield from (_local_file(spec.text) if is_local(spec.text) else
                    ((TAKE, m) for m in _gcs_listing(glob.escape(spec.text))))
    elif spec.kind == FOLDER:
        yield from (_walk(spec.text, _folder_rule, folder_mode=True) if is_local(spec.text)
                    else _gcs_folder(spec.text))
    else:
        yield from _match(spec.text)


@dataclasses.dataclass
class Survey:
    """What listing the input found at launch: counts for the summary and examples for warnings."""

    matched: int = 0
    errors: list[ErrorRow] = dataclasses.field(default_factory=list)
    skipped: Counter = dataclasses.field(default_factory=Counter)
    case_excluded: list[str] = dataclasses.field(default_factory=list)


def survey_input(spec: InputSpec) -> Survey:
    """List the input once (no file is read). Raises InputError when a gs:// listing fails."""
    survey = Survey()
    try:
        for event, value in list_input(spec):
            if event in (TAKE, ERROR):
                survey.matched += 1
            if event == ERROR:
                survey.errors.append(value)
            elif event == SKIP:
                survey.skipped[value[1]] += 1
            elif event == CASE:
                survey.case_excluded.append(display_path(value))
    except Exception as err:
        raise InputError(f"cannot list input {spec.text} ({root_cause(err)})") from None
    return survey


def check_input(spec: InputSpec) -> Survey:
    """Refuse an input that cannot be listed or (as a pattern) matches nothing; return what listing found.

    Raises InputError with one line; an existing folder without images is not an error (empty outputs).
    """
    survey = survey_input(spec)
    top = display_path(spec.text)
    for row in survey.errors:
        if spec.kind == FOLDER and row.path.rstrip(SEPARATOR) == top.rstrip(SEPARATOR):
            raise InputError(f"cannot list input {spec.text} ({row.error.split(': ', 1)[-1]})")
    if spec.kind == PATTERN and not survey.matched:
        hint = (f"; {len(survey.case_excluded)} image files match if case is ignored, e.g. "
                f"{survey.case_excluded[0]}" if survey.case_excluded else "")
        raise InputError(f"input not found or matches no files: {spec.text}{hint}")
    return survey


def input_warnings(spec: InputSpec, survey: Survey) -> list[str]:
    """Start-of-run warnings about the input: no images, entries that cannot be read, files missed by case."""
    warnings = []
    if spec.kind == FOLDER and not survey.matched:
        warnings.append(f"no image files found in {spec.text}; writing empty outputs")
    if survey.errors:
        first = survey.errors[0]
        warnings.append(f"{len(survey.errors)} entries under {spec.text} cannot be read (first: {first.path}: "
                        f"{first.error}); each is a row in errors.csv")
    if survey.case_excluded:
        examples = ", ".join(survey.case_excluded[:WARNING_EXAMPLES])
        warnings.append(f"{len(survey.case_excluded)} image files are not taken because their names differ from "
                        f"the pattern {spec.text} in case (e.g. {examples}); patterns are case-sensitive except "
                        f"for a literal image extension: give the folder, or use [Aa]-style classes")
    return warnings


def skipped_counts(survey: Survey) -> dict[str, int]:
    """Skipped files by kind, most first (summary.json's `files_skipped`)."""
    return dict(sorted(survey.skipped.items(), key=lambda kv: (-kv[1], kv[0])))


class ListInput(beam.DoFn):
    """InputSpec -> FileMetadata of every file to read; error rows (unlistable folders, broken links) tagged
    ERRORS. Skipped files are counted at launch (survey_input), not here."""

    ERRORS = "errors"

    def process(self, spec: InputSpec):
        for event, value in list_input(spec):
            if event == TAKE:
                yield value
            elif event == ERROR:
                yield beam.pvalue.TaggedOutput(self.ERRORS, value)


def _folder_rule(path: str) -> tuple[str, object] | None:
    """Folder mode: (SKIP, (path, kind)) for a file it skips, None to take it."""
    kind = skip_kind(os.path.basename(path))
    return (SKIP, (path, kind)) if kind else None


def _walk(top: str, rule: Callable[[str], tuple | None], keep_dir: Callable[[str], bool] = lambda _: True,
          folder_mode: bool = False) -> Iterator[tuple]:
    """Walk a local folder, following links to folders once; rule(path) decides for each file (None: take it,
    else the event to emit instead), keep_dir(path) whether to descend into a sub-folder; in folder mode the
    files of system folders are skipped."""
    failures: list[OSError] = []
    walked: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top, onerror=failures.append, followlinks=True):
        yield from _unlistable(failures)
        walked.add(os.path.realpath(dirpath))
        for name in list(dirnames):
            path = os.path.join(dirpath, name)
            if folder_mode and is_system_folder(name):
                dirnames.remove(name)
                yield from ((SKIP, (p, SYSTEM_FOLDER)) for p in _files_under(path))
            elif not keep_dir(path) or (os.path.islink(path) and _revisits(os.path.realpath(path), walked)):
                dirnames.remove(name)
        for name in filenames:
            path = os.path.join(dirpath, name)
            decided = rule(path)
            yield from ([decided] if decided else _local_file(path))
    yield from _unlistable(failures)


def _revisits(target: str, walked: set[str]) -> bool:
    """True if a linked folder is one already walked, or an ancestor of one (a loop or a second route)."""
    return any(w == target or w.startswith(target + os.sep) for w in walked)


def _unlistable(failures: list[OSError]) -> Iterator[tuple]:
    for err in failures:
        yield ERROR, ErrorRow(display_path(err.filename or ""), f"{UNLISTABLE_REASON}: {err.strerror or err}")
    failures.clear()


def _files_under(folder: str) -> Iterator[str]:
    for dirpath, _, filenames in os.walk(folder):
        yield from (os.path.join(dirpath, name) for name in filenames)


def _local_file(path: str) -> Iterator[tuple]:
    """(TAKE, metadata) for a readable regular file, else an error row; nothing if it has just been deleted."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            yield ERROR, ErrorRow(display_path(path), BROKEN_LINK_REASON)
        return
    except OSError as err:
        yield ERROR, ErrorRow(display_path(path), f"{type(err).__name__}: {err.strerror or err}")
        return
    if not stat.S_ISREG(info.st_mode):
        yield ERROR, ErrorRow(display_path(path), f"{NOT_REGULAR_REASON} (a device, pipe or socket)")
        return
    yield TAKE, FileMetadata(path, info.st_size, info.st_mtime)


def _folder_prefix(folder: str) -> str:
    return glob.escape(folder.rstrip(SEPARATOR)) + SEPARATOR + GLOBSTAR


def _gcs_listing(pattern: str, limit: int | None = None) -> list[FileMetadata]:
    """Objects matching a Beam pattern (callers escape literal parts), without folder placeholder objects."""
    found = FileSystems.match([pattern], limits=[limit] if limit else None)[0].metadata_list
    return [m for m in found if not m.path.endswith(SEPARATOR)]


def _gcs_folder(folder: str) -> Iterator[tuple]:
    root = folder.rstrip(SEPARATOR) + SEPARATOR
    for metadata in _gcs_listing(_folder_prefix(folder)):
        *folders, name = metadata.path[len(root):].split(SEPARATOR)
        if any(is_system_folder(part) for part in folders):
            yield SKIP, (metadata.path, SYSTEM_FOLDER)
        else:
            yield _folder_rule(metadata.path) or (TAKE, metadata)


def case_blind_extension(pattern: str) -> str:
    """The pattern with a literal image extension at its end matching in any case (`*.jpg` -> `*.[jJ][pP][gG]`)."""
    stem, dot, extension = pattern.rpartition(".")
    if not dot or SEPARATOR in extension or "." + extension.lower() not in IMAGE_EXTENSIONS:
        return pattern
    return stem + dot + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in extension)


def _split_pattern(pattern: str) -> tuple[str, list[str]]:
    """(the literal folder the pattern starts in, '' for the current one; its remaining components)."""
    parts = pattern.split(SEPARATOR)
    literal = 0
    while literal < len(parts) - 1 and not wglob.is_magic(parts[literal], flags=GLOB_FLAGS):
        literal += 1
    base = SEPARATOR.join(parts[:literal])
    if not base and pattern.startswith(SEPARATOR):
        base = SEPARATOR
    return base, parts[literal:]


def _match(pattern: str) -> Iterator[tuple]:
    """Match a glob pattern (grammar in the module docstring), local or gs://."""
    base, rest = _split_pattern(pattern)
    exact, loose = case_blind_extension(SEPARATOR.join(rest)), SEPARATOR.join(rest)
    start = len(base.rstrip(SEPARATOR)) + 1 if base else 0

    def decide(path: str) -> tuple | None:
        relative = path[start:]
        if wglob.globmatch(relative, exact, flags=GLOB_FLAGS):
            return None
        if is_image_path(relative) and wglob.globmatch(relative, loose, flags=GLOB_FLAGS | wglob.IGNORECASE):
            return CASE, path
        return "", None  # not matched: no event

    if is_local(pattern):
        events = _walk(base or os.curdir, lambda p: decide(_relative_to_cwd(p, base)),
                       lambda d: _may_hold_matches(d[start:] if base else _relative_to_cwd(d, base), rest))
        for event, value in events:
            if event == TAKE and not base:
                value = FileMetadata(_relative_to_cwd(value.path, base), value.size_in_bytes,
                                     value.last_updated_in_seconds)
            elif event == ERROR and not base:
                value = ErrorRow(_relative_to_cwd(value.path, base), value.error)
            if event:
                yield event, value
        return
    for metadata in _gcs_listing(glob.escape(base.rstrip(SEPARATOR)) + SEPARATOR + GLOBSTAR):
        decided = decide(metadata.path)
        if decided is None:
            yield TAKE, metadata
        elif decided[0]:
            yield decided


def _relative_to_cwd(path: str, base: str) -> str:
    """Paths walked from the current folder without the './' that walking adds."""
    prefix = os.curdir + os.sep
    return path[len(prefix):] if not base and path.startswith(prefix) else path


def _may_hold_matches(folder: str, components: list[str]) -> bool:
    """Whether a folder (relative to the pattern's literal start) can hold matches: each of its names matches
    the pattern's component at that depth (ignoring case, for the case warning), up to a '**'."""
    for depth, name in enumerate(folder.split(SEPARATOR)):
        if depth >= len(components) - 1:
            return False
        if components[depth] == GLOBSTAR:
            return True
        if not wfnmatch.fnmatch(name, components[depth], flags=NAME_FLAGS):
            return False
    return True
