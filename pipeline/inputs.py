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
from collections import Counter
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata

from pipeline.listing import (CASE, ERROR, SEPARATOR, SKIP, TAKE, display_path, folder_by_case, folder_pattern,
                              gcs_listing, list_file, list_folder, match_pattern, pattern_start)
from pipeline.model_files import is_local, root_cause
from pipeline.rows import ErrorRow, FileKey

__all__ = ["CASE", "ERROR", "FILE", "FOLDER", "PATTERN", "SKIP", "TAKE", "InputError", "InputSpec", "ListInput",
           "Survey", "check_input", "display_path", "file_key", "input_warnings", "list_input", "resolve_input",
           "skipped_counts", "survey_input"]

FOLDER, FILE, PATTERN = "folder", "file", "pattern"
# How many example paths the start-of-run warnings name.
WARNING_EXAMPLES: int = 3


class InputError(Exception):
    """The input cannot be used (missing, matches nothing, cannot be listed); the message is one line."""


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """--input as given (text) and how it is read: FOLDER, FILE or PATTERN (kind)."""

    text: str
    kind: str


def resolve_input(text: str) -> InputSpec:
    """Decide what --input names: an existing folder, an existing file, else a pattern.

    Raises InputError when a gs:// location cannot be checked (e.g. a bucket that does not exist).
    """
    if is_local(text):
        if os.path.isdir(text):
            return InputSpec(text, FOLDER)
        return InputSpec(text, FILE if os.path.lexists(text) else PATTERN)
    try:
        if gcs_listing(folder_pattern(text), limit=1):
            return InputSpec(text, FOLDER)
        if not text.endswith(SEPARATOR) and gcs_listing(glob.escape(text)):
            return InputSpec(text, FILE)
    except Exception as err:
        raise InputError(f"cannot list input {text} ({root_cause(err)})") from None
    return InputSpec(text, PATTERN)


def list_input(spec: InputSpec) -> Iterator[tuple[str, object]]:
    """Every event of listing the input: (TAKE, FileMetadata), (ERROR, ErrorRow), (SKIP, (path, kind)),
    (CASE, path); FileMetadata.path is the real path (opened as is), ErrorRow.path its display_path."""
    if spec.kind == FILE:
        yield from list_file(spec.text)
    elif spec.kind == FOLDER:
        yield from list_folder(spec.text)
    else:
        yield from match_pattern(spec.text)


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
    start = pattern_start(spec.text) if spec.kind == PATTERN else ""
    top = display_path(spec.text if spec.kind == FOLDER else start or os.curdir)
    for row in survey.errors:  # the input folder itself, or the folder a pattern starts in, cannot be listed
        if spec.kind != FILE and row.path.rstrip(SEPARATOR) == top.rstrip(SEPARATOR):
            raise InputError(f"cannot list input {spec.text} ({row.error.split(': ', 1)[-1]})")
    if spec.kind == PATTERN and not survey.matched:
        count = len(survey.case_excluded)
        hint = (f"; {count} image {'file matches' if count == 1 else 'files match'} if case is ignored, e.g. "
                f"{survey.case_excluded[0]}" if count else "")
        if not hint and is_local(spec.text) and start and not os.path.isdir(start):
            other_case = folder_by_case(start)
            hint = f"; the folder {other_case} exists (its name differs in case)" if other_case else ""
        raise InputError(f"input not found or matches no files: {spec.text}{hint}")
    return survey


def input_warnings(spec: InputSpec, survey: Survey) -> list[str]:
    """Start-of-run warnings about the input: no images, entries that cannot be read, files missed by case."""
    warnings = []
    if spec.kind == FOLDER and not survey.matched:
        warnings.append(f"no image files found in {spec.text}; writing empty outputs")
    if survey.errors:
        first = survey.errors[0]
        count = len(survey.errors)
        warnings.append(f"{count} {'entry' if count == 1 else 'entries'} under {spec.text} cannot be read "
                        f"({'' if count == 1 else 'first: '}{first.path}: {first.error}); "
                        f"{'it is' if count == 1 else 'each is'} a row in errors.csv")
    if survey.case_excluded:
        examples = ", ".join(survey.case_excluded[:WARNING_EXAMPLES])
        count = len(survey.case_excluded)
        warnings.append(f"{count} image {'file is' if count == 1 else 'files are'} not taken because "
                        f"{'its name differs' if count == 1 else 'their names differ'} from "
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


def file_key(metadata: FileMetadata) -> FileKey:
    """The file's key through the pipeline: its path as written in the outputs (display_path), size, mtime."""
    return FileKey(display_path(metadata.path), metadata.size_in_bytes, metadata.last_updated_in_seconds)
