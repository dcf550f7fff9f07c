"""Bringing a model folder from any Beam file system (local, gs://) to a local folder TensorFlow can load.

`tf.saved_model.load` reads local folders; a model on `gs://` is copied once per worker process into a temporary
folder and loaded from there. Beam's `FileSystems` does the copying, so every scheme Beam knows works.
Also the job's small helpers for remote paths: clear reasons for Beam's file-system errors, reachability checks.
"""

import atexit
import os
import shutil
import tempfile
import threading

from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

COPY_CHUNK_BYTES: int = 1 << 20

_local_copies: dict[str, str] = {}
_copy_lock = threading.Lock()


def is_local(uri: str) -> bool:
    return FileSystems.get_scheme(uri) in (None, "file")


def root_cause(err: BaseException) -> str:
    """'Type: message' of the innermost error: Beam nests per-path failures in BeamIOError dictionaries."""
    while isinstance(err, BeamIOError) and err.exception_details:
        err = next(iter(err.exception_details.values()))
    return f"{type(err).__name__}: {err}"


def check_reachable(folder_uri: str) -> None:
    """Fail now (FileNotFoundError) if a remote folder cannot be listed, e.g. its bucket does not exist.

    Callers run this before long work or a first upload, so a typo in a bucket name costs seconds, not the run.
    """
    if is_local(folder_uri):
        return
    try:
        FileSystems.match([FileSystems.join(folder_uri.rstrip("/"), "**")], limits=[1])
    except Exception as err:
        raise FileNotFoundError(f"cannot reach {folder_uri} ({root_cause(err)})") from None


def localize_model(model_uri: str) -> str:
    """A local folder holding the model: the folder itself if local, else a per-process cached copy, removed
    when the process ends (or at once if the copy fails), so that nightly runs do not pile copies up in /tmp."""
    if is_local(model_uri):
        return model_uri
    with _copy_lock:
        if model_uri not in _local_copies:
            folder = tempfile.mkdtemp(prefix="facelabel-model-")
            try:
                _local_copies[model_uri] = _copy_tree(model_uri, folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        return _local_copies[model_uri]


@atexit.register
def remove_local_copies() -> None:
    """Delete this process's copies of remote models; run at exit (`pipeline.run.exit_now`, which skips the
    interpreter's exit handlers, calls it itself). A model needed again afterwards is copied again."""
    with _copy_lock:
        for folder in _local_copies.values():
            shutil.rmtree(folder, ignore_errors=True)
        _local_copies.clear()


def _copy_tree(source_uri: str, destination: str) -> str:
    prefix = source_uri.rstrip("/") + "/"
    try:
        matches = FileSystems.match([prefix + "**"])[0].metadata_list
    except Exception as err:
        raise FileNotFoundError(f"cannot list model folder {source_uri} ({root_cause(err)})") from None
    if not matches:
        raise FileNotFoundError(f"model folder not found or empty: {source_uri}")
    for metadata in matches:
        relative = metadata.path[len(prefix):]
        if not relative or relative.endswith("/"):
            continue  # folder placeholder objects
        target = os.path.join(destination, *relative.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED) as source, \
                open(target, "wb") as sink:
            while chunk := source.read(COPY_CHUNK_BYTES):
                sink.write(chunk)
    return destination
