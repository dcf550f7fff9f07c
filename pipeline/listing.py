"""Listing the files of an input (see `pipeline/inputs.py` for the grammar): walking a local folder, listing
gs:// objects, matching glob patterns, and writing names that are not UTF-8.

A listing is a stream of events: (TAKE, FileMetadata) for a file to read, (ERROR, ErrorRow) for an entry that is
matched but cannot be read (a folder that cannot be listed, a broken link, a pipe), (SKIP, (path, kind)) for a
file folder mode skips, (CASE, path) for an image file a pattern misses only by case.
"""

import errno
import glob
import os
import re
import stat
from collections.abc import Callable, Iterator

import bracex
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems
from wcmatch import fnmatch as wfnmatch
from wcmatch import glob as wglob

from model.contract import IMAGE_EXTENSIONS, is_image_path
from pipeline.model_files import is_local
from pipeline.rows import ErrorRow
from pipeline.skipped import SYSTEM_FOLDER, is_system_folder, skip_kind

GLOB_FLAGS: int = wglob.GLOBSTAR | wglob.BRACE | wglob.FORCEUNIX
NAME_FLAGS: int = wfnmatch.BRACE | wfnmatch.FORCEUNIX | wfnmatch.IGNORECASE
GLOBSTAR: str = "**"
SEPARATOR: str = "/"
BROKEN_LINK_REASON: str = "broken symbolic link (its target does not exist)"
LINK_LOOP_REASON: str = "symbolic link loop (the link leads back to itself)"
PERMISSION_REASON: str = "permission denied (this user cannot read the file)"
UNLISTABLE_REASON: str = "folder cannot be listed"
NOT_REGULAR_REASON: str = "not a regular file"
TAKE, ERROR, SKIP, CASE = "take", "error", "skip", "case"


def display_path(path: str) -> str:
    """The path as written in the outputs: itself when valid UTF-8, else with each byte that is not part of valid
    UTF-8 as `\\xNN` (a Latin-1 'é' from an old archive reads `caf\\xe9.jpg`)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


# One byte that display_path wrote as `\xNN` (never an ASCII one: a name's own "\x41" stays as it is).
_ESCAPED_BYTE = re.compile(rb"\\x([89a-f][0-9a-f])")  # backslashreplace writes only bytes 0x80-0xff, lower case


def source_path(displayed: str) -> str:
    """The path to open for a path as the outputs write it: display_path's inverse for a local file whose name is
    not valid UTF-8 (the `\\xNN` escapes read as bytes), when the path does not exist as written; else itself."""
    if "\\x" not in displayed or not is_local(displayed) or os.path.lexists(displayed):
        return displayed
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), displayed.encode("utf-8"))
    candidate = os.fsdecode(raw)
    return candidate if os.path.lexists(candidate) else displayed


def list_folder(folder: str) -> Iterator[tuple]:
    """Folder mode: every image file under the folder, local or gs://, with the skip rules."""
    return _walk(folder, _folder_rule, folder_mode=True) if is_local(folder) else _gcs_folder(folder)


def list_file(path: str) -> Iterator[tuple]:
    """One file, local or gs://, whatever its name."""
    return _local_file(path) if is_local(path) else ((TAKE, m) for m in gcs_listing(glob.escape(path)))


def folder_pattern(folder: str) -> str:
    """A Beam pattern for every object under a gs:// folder, its name quoted."""
    return glob.escape(folder.rstrip(SEPARATOR)) + SEPARATOR + GLOBSTAR


def gcs_listing(pattern: str, limit: int | None = None) -> list[FileMetadata]:
    """Objects matching a Beam pattern (callers escape literal parts), without folder placeholder objects."""
    found = FileSystems.match([pattern], limits=[limit] if limit else None)[0].metadata_list
    return [m for m in found if not m.path.endswith(SEPARATOR)]


def _folder_rule(path: str) -> tuple[str, object] | None:
    """Folder mode: (SKIP, (path, kind)) for a file it skips, None to take it. A broken link without an extension
    in its name is taken (its error row says it is broken): it may be a folder of photos whose disk is gone."""
    name = os.path.basename(path)
    kind = skip_kind(name)
    if kind and is_local(path) and "." not in name.lstrip(".") and os.path.islink(path) and not os.path.exists(path):
        return None
    return (SKIP, (path, kind)) if kind else None


def _walk(top: str, rule: Callable[[str], tuple | None], keep_dir: Callable[[str], bool] = lambda _: True,
          folder_mode: bool = False) -> Iterator[tuple]:
    """Walk a local folder; rule(path) decides for each file (None: take it, else the event to emit instead),
    keep_dir(path) whether to descend into a sub-folder. Folder mode walks each real folder once (of a folder and
    a link to it, the folder keeps its own paths; a link into the input folder is not followed) and skips the files
    of system folders; pattern mode follows every link that does not lead back up its own way (a loop), since
    there each path is matched as it is written."""
    failures: list[OSError] = []
    walked: set[str] = set()  # folder mode: real paths of the folders walked or about to be
    route: dict[str, set[str]] = {}  # real paths of the folders on the way to each folder still to walk
    root = os.path.realpath(top)
    for dirpath, dirnames, filenames in os.walk(top, onerror=failures.append, followlinks=True):
        yield from _unlistable(failures)
        here = os.path.realpath(dirpath)
        walked.add(here)
        on_route = route.pop(dirpath, set()) | {here}
        # Real folders first, so that of a folder and a link to it side by side the folder keeps its own path.
        for name in sorted(dirnames, key=lambda n: os.path.islink(os.path.join(dirpath, n))):
            path = os.path.join(dirpath, name)
            real, link = os.path.realpath(path), os.path.islink(path)
            if folder_mode and is_system_folder(name):
                dirnames.remove(name)
                yield from ((SKIP, (p, SYSTEM_FOLDER)) for p in _files_under(path))
            elif not keep_dir(path) or (link and _revisits(real, on_route)) or (folder_mode and (
                    _revisits(real, walked) or (link and real.startswith(root + os.sep)))):
                dirnames.remove(name)
            else:
                walked.add(real)
                route[path] = on_route
        for name in filenames:
            path = os.path.join(dirpath, name)
            decided = rule(path)
            yield from ([decided] if decided else _local_file(path))
    yield from _unlistable(failures)


def _revisits(target: str, walked: set[str]) -> bool:
    """True if a folder is one of `walked`, or an ancestor of one (a loop, or a second route to a folder)."""
    inside = target if target.endswith(os.sep) else target + os.sep  # the root folder ends in one already
    return any(w == target or w.startswith(inside) for w in walked)


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
        reason = {errno.ELOOP: LINK_LOOP_REASON, errno.EACCES: PERMISSION_REASON}.get(
            err.errno, f"{type(err).__name__}: {err.strerror or err}")
        yield ERROR, ErrorRow(display_path(path), reason)
        return
    if not stat.S_ISREG(info.st_mode):
        yield ERROR, ErrorRow(display_path(path), f"{NOT_REGULAR_REASON} (a device, pipe or socket)")
        return
    yield TAKE, FileMetadata(path, info.st_size, info.st_mtime)


def _gcs_folder(folder: str) -> Iterator[tuple]:
    root = folder.rstrip(SEPARATOR) + SEPARATOR
    for metadata in gcs_listing(folder_pattern(folder)):
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


def folder_by_case(path: str) -> str | None:
    """A local folder whose path is `path` when case is ignored (the first found, name by name), or None."""
    found = os.sep if path.startswith(os.sep) else ""
    for name in [part for part in path.split(os.sep) if part]:
        candidate = os.path.join(found, name) if found else name
        if not os.path.isdir(candidate):
            try:
                names = sorted(os.listdir(found or os.curdir))
            except OSError:
                return None
            matches = [n for n in names if n.casefold() == name.casefold() and os.path.isdir(os.path.join(found, n))]
            if not matches:
                return None
            candidate = os.path.join(found, matches[0]) if found else matches[0]
        found = candidate
    return found if found != path else None


def pattern_start(pattern: str) -> str:
    """The literal folder a pattern starts in ('' for the current folder): what is listed to match it."""
    return _split_pattern(pattern)[0]


def match_pattern(pattern: str) -> Iterator[tuple]:
    """Match a glob pattern (grammar in the module docstring), local or gs://."""
    base, rest = _split_pattern(pattern)
    loose = SEPARATOR.join(rest)
    # Each {a,b} alternative (expanded as wcmatch would, escapes kept) with its image extension in any case.
    exact = [case_blind_extension(alternative) for alternative in bracex.expand(loose, keep_escapes=True)]
    start = len(base.rstrip(SEPARATOR)) + 1 if base else 0

    def decide(path: str) -> tuple | None:
        relative = path[start:]
        if wglob.globmatch(relative, exact, flags=GLOB_FLAGS):
            return None
        if is_image_path(relative) and wglob.globmatch(relative, loose, flags=GLOB_FLAGS | wglob.IGNORECASE):
            return CASE, path
        return "", None  # not matched: no event

    if is_local(pattern):
        if base and not os.path.isdir(base):  # its literal folder is missing: the pattern matches nothing
            return
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
    for metadata in gcs_listing(glob.escape(base.rstrip(SEPARATOR)) + SEPARATOR + GLOBSTAR):
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
        if depth < len(components) and components[depth] == GLOBSTAR:  # also a last '**' ('DIR/**')
            return True
        if depth >= len(components) - 1:
            return False
        if not wfnmatch.fnmatch(name, components[depth], flags=NAME_FLAGS):
            return False
    return True
