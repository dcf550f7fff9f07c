"""The quiet console: library notices dropped, records of Beam's worker processes shown as their message alone."""

import logging
import os
import re
import subprocess
import sys
import threading
import time
import types
import warnings

from conftest import synthetic_face
from model import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def record(message: str, name: str = "apache_beam.runners.portability.local_job_service") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)


def worker_line(message: str) -> str:
    """A worker's record as Beam's DirectRunner forwards it (protobuf text of a LogEntry, on one line)."""
    return ('Worker: severity: WARN timestamp {   seconds: 1796078526   nanos: 592527151 } message: "'
            + message + '" log_location: "/x/apache_beam/options/pipeline_options.py:570" thread: "MainThread" ')


def test_library_notices_are_dropped_and_other_records_kept():
    noise = console.DropNoise()
    assert not noise.filter(record("Resource module is not available for current platform, memory usage ..."))
    assert not noise.filter(record(worker_line(
        r"Discarding unparseable args: [\'--direct_runner_use_stacked_bundle\', \'--pipeline_type_check\']")))
    assert not noise.filter(record(worker_line("No semi_persistent_directory found:  User registered objects")))
    kept = record("cannot reach gs://bucket (Forbidden)", name="apache_beam.io.gcp.gcsio")
    assert noise.filter(kept) and kept.getMessage() == "cannot reach gs://bucket (Forbidden)"


def test_worker_info_records_are_shown_only_from_our_code():
    """In multi-process runs the workers' progress lines (INFO) reach the console; Beam's own INFO does not."""
    def info(message: str, location: str) -> logging.LogRecord:
        line = worker_line(message).replace("WARN", "INFO").replace(
            "/x/apache_beam/options/pipeline_options.py:570", location)
        return logging.LogRecord(console.BEAM_WORKER_LOGGER, logging.INFO, __file__, 1, line, None, None)
    noise = console.DropNoise()
    ours = info("progress: 4000 faces labelled by this worker (410 faces/s)",
                "/venv/lib/python3.11/site-packages/pipeline/transforms.py:66")
    assert noise.filter(ours) and ours.getMessage().startswith("progress: 4000 faces")
    assert not noise.filter(info("Creating state cache with size 0", "/venv/apache_beam/runners/worker/x.py:12"))
    assert not noise.filter(logging.LogRecord(console.BEAM_WORKER_LOGGER, logging.INFO, __file__, 1,
                                              "Grpc server started at localhost on port 1", None, None))


def test_a_worker_record_is_shown_as_its_message():
    forwarded = record(worker_line(r'--incremental: 2 rows of \"caf\303\251.csv\" could not be read\nsecond line'))
    assert console.DropNoise().filter(forwarded)
    assert forwarded.getMessage() == '--incremental: 2 rows of "café.csv" could not be read\nsecond line'


def test_a_multi_process_run_prints_no_beam_worker_notices(tiny_model_dir, tmp_path):
    """Beam's worker processes each logged two warnings about their own options (seen on every such run)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        synthetic_face(i % 2 == 0, seed=900 + i).save(folder / f"face_{i}.png")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.run", "--input", str(folder), "--output", str(tmp_path / "out"),
         "--model", str(tiny_model_dir), "--faces", "none",
         "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 images matched: 2 labelled" in done.stdout
    assert "WARNING" not in done.stderr and "Worker:" not in done.stderr, done.stderr[-2000:]


def test_a_training_run_prints_its_own_lines_and_keras_epochs_only(tmp_path):
    """A training run printed TensorFlow's 'NodeDef mentions attribute' C++ line, Keras' shuffle warning, absl's
    input-renaming warning and 'Assets written to' twice around its own lines."""
    for name in ("happy", "sad"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(24):
            synthetic_face(name == "happy", seed=950 + i).save(tmp_path / "data" / name / f"{i}.png")
    done = subprocess.run(
        [sys.executable, "-m", "trainer.task", "--data-dir", str(tmp_path / "data"), "--output-dir",
         str(tmp_path / "model"), "--epochs", "2", "--batch-size", "16", "--block-filters", "4,8"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines and all(line.split(" ", 3)[2] == "trainer" for line in lines), done.stderr[-2000:]
    assert lines[-1].split(" ", 4)[3] == "exported", lines[-1]
    assert "Epoch 2/2" in done.stdout


def test_the_live_filter_passes_native_lines_on_as_they_come_and_drops_noise(capfd):
    with console.native_stderr_filtered_live(re.compile(r"^E0000 .*NodeDef mentions")):
        os.write(2, b"first line of native code\n")
        seen, deadline = "", time.monotonic() + 10
        while "first line" not in seen and time.monotonic() < deadline:  # arrives while the block still runs
            time.sleep(0.01)
            seen += capfd.readouterr().err
        os.write(2, b"E0000 00:00 node_def_util.cc:682] NodeDef mentions attribute x\nlast line, no newline")
    assert "first line of native code" in seen
    assert capfd.readouterr().err == "last line, no newline"


class _StartsOnJoin:
    """A thread that runs only when joined: the slowest start the scheduler could give the forwarder."""

    def __init__(self, target, name=None, daemon=None):
        self.target = target

    def start(self):
        pass

    def join(self, timeout=None):
        self.target()


def test_the_live_filter_forwards_a_block_that_ends_before_its_thread_starts(capfd, monkeypatch):
    # CI saw "Exception in thread stderr-filter ... Bad file descriptor": a run refused at once closed the saved
    # stderr before the forwarder had copied it.
    monkeypatch.setattr(console, "threading", types.SimpleNamespace(Thread=_StartsOnJoin))  # console's threads only
    with console.native_stderr_filtered_live(re.compile(r"^noise")):
        os.write(2, b"noise line\nrefused at once\n")
    assert capfd.readouterr().err == "refused at once\n"


def test_capture_blocks_in_two_threads_leave_stderr_where_it_was(capfd):
    # Beam's worker threads build LiteRT interpreters inside native_stderr_filtered. Interleaved (A in, B in,
    # A out, B out), B saved A's capture file as "the real stderr" and left fd 2 on it: every later line was lost.
    a_inside, b_trying = threading.Event(), threading.Event()

    def first():
        with console.native_stderr_filtered(re.compile(r"^noise")):
            a_inside.set()
            b_trying.wait(10)
            time.sleep(0.1)  # B is at the door (or, unserialised, inside) when A leaves
            os.write(2, b"from A\n")

    def second():
        a_inside.wait(10)
        b_trying.set()
        with console.native_stderr_filtered(re.compile(r"^noise")):
            time.sleep(0.3)  # unserialised, B would leave after A
            os.write(2, b"noise from B\nfrom B\n")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    os.write(2, b"after both\n")
    assert capfd.readouterr().err.splitlines() == ["from A", "from B", "after both"]


def test_beams_glob_translation_warning_is_dropped_and_other_future_warnings_kept():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        console.configure_logging()
        for module in ("apache_beam.io.filesystem", "somebody.else"):
            warnings.warn_explicit("Possible nested set at position 42", FutureWarning, "filesystem.py", 642,
                                   module=module)
    assert [(w.category, str(w.message)) for w in shown] == [(FutureWarning, "Possible nested set at position 42")]
