"""The trainer's file access: local folders and any Beam file system (gs://) through Beam's `FileSystems`.

Data folders are listed and read through `FileSystems`, so `--data-dir gs://...` works like a local folder.
TensorFlow loads and exports SavedModels as local folders, so a remote model is copied to a temporary folder
before loading, and an export to a remote folder is written locally first and uploaded afterwards.
(`pipeline/model_files.py` has the job's own copy-down for workers: `trainer/` and `pipeline/` do not import
each other.)
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import PurePosixPath

from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

COPY_CHUNK_BYTES: int = 1 << 20
RAW = CompressionTypes.UNCOMPRESSED  # bytes as stored: a file named '.gz' is not decompressed


def is_local(uri: str) -> bool:
    return FileSystems.get_scheme(uri) in (None, "file")


def root_cause(err: BaseException) -> str:
    """'Type: message' of the innermost error: Beam nests per-path failures in BeamIOError dictionaries."""
    while isinstance(err, BeamIOError) and err.exception_details:
        err = next(iter(err.exception_details.values()))
    return f"{type(err).__name__}: {err}"


def _match(pattern: str, limit: int | None = None) -> list[str]:
    """Paths matching pattern; a listing failure (e.g. no such bucket) becomes a one-line FileNotFoundError."""
    try:
        found = FileSystems.match([pattern], limits=[limit] if limit else None)[0].metadata_list
    except Exception as err:
        raise FileNotFoundError(f"cannot list {pattern.removesuffix('/**')} ({root_cause(err)})") from None
    return [metadata.path for metadata in found]


def is_folder(folder: str) -> bool:
    """A local directory, or a remote prefix holding at least one object (gs:// has no real folders)."""
    if is_local(folder):
        return os.path.isdir(folder)
    return bool(_match(FileSystems.join(folder.rstrip("/"), "**"), limit=1))


def list_files(folder: str) -> list[str]:
    """Every file under folder (recursively), sorted as paths, the way pathlib sorts them."""
    return sorted(_match(FileSystems.join(folder.rstrip("/") or "/", "**")), key=PurePosixPath)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=RAW) as handle:
        return handle.read()


def write_bytes(path: str, data: bytes) -> None:
    """Write a file anywhere, local or gs:// (for a local path FileSystems also creates missing parent folders)."""
    with FileSystems.create(path, compression_type=RAW) as handle:
        handle.write(data)


def write_text(path: str, text: str) -> None:
    """Write a UTF-8 text file anywhere, like `write_bytes`."""
    write_bytes(path, text.encode("utf-8"))


def check_reachable(folder: str) -> None:
    """Fail now (FileNotFoundError) if a remote folder cannot be listed, e.g. its bucket does not exist, or if a
    local folder cannot be created or written: its nearest existing parent is not a writable folder.

    Run before long work, so a typo in a bucket name or a read-only path costs seconds, not a training run.
    """
    if not is_local(folder):
        _match(FileSystems.join(folder.rstrip("/"), "**"), limit=1)
        return
    existing = os.path.abspath(folder)
    while not os.path.lexists(existing):  # lexists: a broken symbolic link is an entry that blocks the folder
        existing = os.path.dirname(existing)
    try:  # a folder made and removed: permission bits alone do not tell (root, read-only mounts, /proc)
        with tempfile.TemporaryDirectory(prefix=".facelabel-write-check-", dir=existing):
            pass
    except OSError:
        raise FileNotFoundError(f"output folder is not writable: {folder} ({existing} is not a writable "
                                "folder)") from None


@contextlib.contextmanager
def local_copy(folder: str) -> Iterator[str]:
    """A local folder with folder's files: the folder itself if local, else a temporary copy removed afterwards."""
    if is_local(folder):
        yield folder
        return
    prefix = folder.rstrip("/") + "/"
    paths = _match(prefix + "**")
    if not paths:
        raise FileNotFoundError(f"folder not found or empty: {folder}")
    with tempfile.TemporaryDirectory(prefix="facelabel-") as local_dir:
        for path in paths:
            relative = path[len(prefix):]
            if not relative or relative.endswith("/"):
                continue  # folder placeholder objects
            target = os.path.join(local_dir, *relative.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with FileSystems.open(path, compression_type=RAW) as source, open(target, "wb") as sink:
                while chunk := source.read(COPY_CHUNK_BYTES):
                    sink.write(chunk)
        yield local_dir


@contextlib.contextmanager
def local_folder_for(destination: str) -> Iterator[str]:
    """A local folder to write into that ends up at destination.

    A local destination is used as it is; for a remote one the block writes into a temporary folder that is
    uploaded (replacing files of the same name) when the block ends without error.
    """
    if is_local(destination):
        yield destination
        return
    check_reachable(destination)
    with tempfile.TemporaryDirectory(prefix="facelabel-export-") as local_dir:
        yield local_dir
        for folder, _, names in os.walk(local_dir):
            for name in names:
                relative = os.path.relpath(os.path.join(folder, name), local_dir).replace(os.sep, "/")
                with open(os.path.join(folder, name), "rb") as source, \
                        FileSystems.create(FileSystems.join(destination, relative), compression_type=RAW) as sink:
                    while chunk := source.read(COPY_CHUNK_BYTES):
                        sink.write(chunk)
