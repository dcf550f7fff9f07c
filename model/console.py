"""A quiet console: the job's own progress lines and summary, not the start-up noise of its libraries.

Importing this module imports TensorFlow (its C++ log at errors only unless TF_CPP_MIN_LOG_LEVEL is set) and
looks for its devices with the process's stderr captured, then writes back every captured line except known
start-up noise (absl's pre-initialisation notice, oneDNN and CUDA driver notices, `failed call to cuInit` on
machines without a GPU). `configure_logging()` shows our logger ("facelabel") from INFO and every library from
WARNING, without Beam's misleading "Resource module is not available" warning (it means that PyTorch is not
installed) and its worker processes' notices about their own options; a record of a worker process shows as its
message alone. Anything else a library prints, errors included, still reaches the screen. `OneLineParser` is the
command line of every command: a usage mistake is one line.
"""

import argparse
import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings

# C++ start-up lines of TensorFlow, XLA and absl that say nothing a user can act on.
NATIVE_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    # MTCNN's output network given no candidate (a photo without faces): TensorFlow logs the empty batch it skips.
    r"|Local rendezvous is aborting with status: INVALID_ARGUMENT: Incompatible shapes: \[0,")
# C++ lines of a training run: tf.data's graph names an attribute that this TensorFlow's op does not declare, an
# E-level line (shown at TF_CPP_MIN_LOG_LEVEL=2) that TensorFlow itself says "may be expected" and ignores.
TRAINING_NOISE = re.compile(NATIVE_NOISE.pattern + r"|NodeDef mentions attribute \w+ which is not in the op definition")
# Library log messages (Python logging) that are noise for a user of this job. The last two come from Beam's
# own worker processes (--direct_running_mode multi_processing): options of the DirectRunner that its workers do
# not declare (this job checks the user's options itself, up front), and a folder only Dataflow's workers have.
LOG_NOISE = re.compile(r"Resource module is not available for current platform"
                       r"|Discarding unparseable args: \["
                       r"|No semi_persistent_directory found"
                       # tf.saved_model.save renaming a captured variable's input (the SavedModel serves the same).
                       r"|contains input name\(s\) .* with unsupported characters which will be renamed")
# Beam's DirectRunner forwards each log record of its worker processes as one line of protobuf text, e.g.
# 'Worker: severity: WARN timestamp {...} message: "..." log_location: "..." thread: "..."'.
WORKER_RECORD = re.compile(r'^Worker: .*?\bmessage: "((?:[^"\\]|\\.)*)"')
# The logger those forwarded records arrive on; its records below WARNING are shown only when they come from this
# project's own code (progress lines), found by the record's source file.
BEAM_WORKER_LOGGER = "apache_beam.runners.portability.local_job_service"
OUR_WORKER_CODE = re.compile(r'log_location: "[^"]*/(pipeline|model)/[^"/]+\.py:\d+"')
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
# Libraries that set their own loggers to INFO (TensorFlow's "Assets written to" on every SavedModel export).
QUIET_LIBRARIES = ("tensorflow", "absl")
FORWARDER_JOIN_S = 5.0
USAGE_ERROR_STATUS = 2
OUR_LOGGER = "facelabel"
STDERR_FD = 2
TF_LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
ERRORS_ONLY = "2"  # TensorFlow's C++ log levels: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR
# Where the process's stderr really goes: fd 2, except while native_stderr_filtered captures it (a line that must
# reach the user at once, such as a stop during start-up, is written here).
real_stderr_fd: int = STDERR_FD
# fd 2 is one per process: threads (Beam's worker threads building LiteRT interpreters) take turns redirecting it,
# or the second would save the first's capture file as "the real stderr" and restore fd 2 to it once it is closed.
_redirecting = threading.RLock()


@contextlib.contextmanager
def _stderr_saved():
    """Holds fd 2 for this thread (see _redirecting) and yields a copy of where it points now, closed afterwards;
    None where the process has no stderr (closed by whoever started us)."""
    with _redirecting:
        sys.stderr.flush()
        try:
            saved = os.dup(STDERR_FD)
        except OSError:
            yield None
            return
        try:
            yield saved
        finally:
            os.close(saved)


@contextlib.contextmanager
def native_stderr_filtered(noise: re.Pattern = NATIVE_NOISE):
    """Capture what native code writes to file descriptor 2 inside the block; afterwards write back every
    captured line that does not match `noise`. Blocks in several threads run one at a time; nested blocks in one
    thread nest."""
    global real_stderr_fd
    with _stderr_saved() as saved:
        if saved is None:
            yield
            return
        outer = real_stderr_fd
        # Set before fd 2 moves: a stop signal in between writes its line to the real stderr, not the capture.
        real_stderr_fd = saved if outer == STDERR_FD else outer
        try:
            with tempfile.TemporaryFile() as captured:
                os.dup2(captured.fileno(), STDERR_FD)
                try:
                    yield
                finally:
                    sys.stderr.flush()
                    os.dup2(saved, STDERR_FD)
                    captured.seek(0)
                    kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                            if line.strip() and not noise.search(line)]
                    sys.stderr.write("".join(kept))
                    sys.stderr.flush()
        finally:
            real_stderr_fd = outer


@contextlib.contextmanager
def native_stderr_filtered_live(noise: re.Pattern):
    """Like native_stderr_filtered, for a long block (a training run): each line native code writes to file
    descriptor 2 is passed on as it comes, unless it matches `noise`, so our own log lines are not held back."""
    with _stderr_saved() as saved:
        if saved is None:
            yield
            return
        # Everything the forwarder needs is made, and the forwarder started, before fd 2 moves: a block that ends
        # at once (a run refused before training) closes `saved` before the thread may have run.
        read_end, write_end = os.pipe()
        forward_to = os.dup(saved)

        def forward() -> None:
            with os.fdopen(read_end, "rb") as lines, os.fdopen(forward_to, "wb", buffering=0) as out:
                for line in lines:
                    if line.strip() and not noise.search(line.decode("utf-8", "replace")):
                        out.write(line)

        forwarder = threading.Thread(target=forward, name="stderr-filter", daemon=True)
        try:
            forwarder.start()
        except BaseException:
            for fd in (read_end, write_end, forward_to):
                os.close(fd)
            raise
        try:
            os.dup2(write_end, STDERR_FD)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, STDERR_FD)
            os.close(write_end)  # with fd 2 moved back, the pipe's last write end: the forwarder reads to the end
            forwarder.join(timeout=FORWARDER_JOIN_S)


class DropNoise(logging.Filter):
    """Drops library log records whose message matches LOG_NOISE; a record forwarded from a Beam worker process
    is shown as its message alone (see WORKER_RECORD)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        forwarded = WORKER_RECORD.match(message)
        if record.name == BEAM_WORKER_LOGGER and record.levelno < logging.WARNING and not (
                forwarded and OUR_WORKER_CODE.search(message)):
            return False
        if forwarded:
            message = unescape_protobuf_text(forwarded.group(1))
            record.msg, record.args = message, None
        return not LOG_NOISE.search(message)


def unescape_protobuf_text(text: str) -> str:
    """A string field of protobuf's text format as it was (escapes as `\\n`, `\\"` and octal UTF-8 bytes); the text
    itself if it does not decode."""
    try:
        return text.encode("latin-1").decode("unicode_escape").encode("latin-1").decode("utf-8")
    except (UnicodeError, ValueError):
        return text


def configure_logging(ours: str = OUR_LOGGER, log_format: str = LOG_FORMAT) -> None:
    """Our logger (`ours`) at INFO, every other logger at WARNING, known library noise dropped; one format."""
    logging.basicConfig(level=logging.WARNING, format=log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(DropNoise())
    logging.getLogger(ours).setLevel(logging.INFO)
    # Beam's glob translation of a gs:// folder whose name holds '[' (escaped as '[[]'): Python's re module warns
    # about its own future syntax, nothing for a user to do.
    warnings.filterwarnings("ignore", message="Possible nested set", category=FutureWarning,
                            module=r"apache_beam\.io\.filesystem")
    for library in QUIET_LIBRARIES:  # they set INFO on themselves (TensorFlow also adds its own handler)
        logger = logging.getLogger(library)
        logger.setLevel(logging.WARNING)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger(BEAM_WORKER_LOGGER).setLevel(logging.INFO)  # our workers' progress lines (see DropNoise)


def start_tensorflow() -> None:
    """Import TensorFlow and let it find its devices (where CUDA start-up is logged) with the noise filtered.

    Unless the user chose a level, TensorFlow's C++ log shows errors only (TF_CPP_MIN_LOG_LEVEL=2, as `make` sets):
    its warnings come from inside library calls at any time, such as MTCNN's output network given no candidate
    ("Local rendezvous is aborting ... Incompatible shapes: [0, ...]") on every photo without a face."""
    os.environ.setdefault(TF_LOG_LEVEL_VARIABLE, ERRORS_ONLY)
    with native_stderr_filtered():
        import tensorflow as tf

        tf.config.list_physical_devices()


class OneLineParser(argparse.ArgumentParser):
    """argparse for every command of the project: a usage mistake prints one line (not usage + message) and exits
    with status 2; shortened flags are refused (allow_abbrev off), never guessed."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(USAGE_ERROR_STATUS, f"error: {message} (see --help)\n")


start_tensorflow()
