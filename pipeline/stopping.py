"""Stopping a run with a signal: Ctrl-C (SIGINT), or SIGTERM from a scheduler or `timeout`.

The job is stopped cleanly, as after any failure: its staging folder is removed, the previous outputs stay, and
the console shows one `error: stopped by ...` line instead of the tracebacks of every unwinding thread; the exit
status is 128 + the signal's number, as a shell reports it. `install_during_start_up` covers the first seconds,
while TensorFlow and Beam are imported; `install` the run itself.

Ctrl-C in a terminal signals the whole foreground process group. With `--direct_running_mode multi_processing`
that included Beam's worker processes, each of which printed its own KeyboardInterrupt traceback (about 100
lines before our one). `install` starts those workers in a process group of their own, so a terminal's stop
reaches only this process, which then ends them itself (SIGTERM to each worker's group: Beam's shutdown waits for
its workers, which a stop in mid-bundle can leave waiting for ever) and silences the worker threads' reports of
their exit.
"""

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import types

EXIT_SIGNAL_BASE: int = 128
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)

stopped_by: list[int] = []  # the number of the signal that stopped the run, once one has
held: list[bool] = []  # non-empty inside held_until_done: a stop waits until the block is done
outputs_in_place: list[bool] = []  # non-empty once this run's outputs have replaced the previous ones
worker_processes: list[subprocess.Popen] = []  # the DirectRunner's multi_processing workers started so far


class Interrupted(BaseException):
    """The run was stopped by a signal (Beam may re-raise it wrapped in another error: check `stopped_by`)."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number


def exit_status(signal_number: int) -> int:
    return EXIT_SIGNAL_BASE + signal_number


def stopped_line(signal_number: int) -> str:
    name = signal.Signals(signal_number).name
    if outputs_in_place:
        return (f"error: stopped by {name} after this run's outputs were in place: the output folder holds this "
                f"run's results (no report)")
    return f"error: stopped by {name}: the output folder keeps the results it had before this run"


@contextlib.contextmanager
def held_until_done():
    """Hold a stop signal while the block runs (moving outputs into place: stopped half-way, it left the output
    folder without labels.csv), then act on it."""
    held.append(True)
    try:
        yield
    finally:
        held.clear()
    if stopped_by:
        raise Interrupted(stopped_by[0])


def ignore_stops() -> None:
    """From here the process only exits: a stop signal has nothing left to stop (it raised inside logging's
    shutdown, which printed a traceback and exit status 1 after a complete run)."""
    if signal.getsignal(signal.SIGTERM) is not stop_on_signal:
        return  # not installed (the job run from Python, e.g. by tests): the caller's handlers stay
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)


def stopped_before_start(signal_number: int, _frame) -> None:
    """A stop while TensorFlow and Beam are still being imported: one line, nothing to clean up. Written past
    model.console's capture of stderr, which may be under way."""
    fd = getattr(sys.modules.get("model.console"), "real_stderr_fd", None) or sys.stderr.fileno()
    os.write(fd, f"error: stopped by {signal.Signals(signal_number).name} before the run started\n".encode())
    os._exit(exit_status(signal_number))


def stop_on_signal(signal_number: int, _frame) -> None:
    """Turn a stop signal into Interrupted in the main thread, so the run's clean-up happens as after any failure;
    libraries' logs of the unwinding threads are silenced (dozens of lines that say only that the run stopped)."""
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda _args: None  # "Worker subprocess exited with return code -15", and the like
    stopped_by.append(signal_number)
    end_workers()
    if held:
        return  # raised by held_until_done once the outputs are in place
    raise Interrupted(signal_number)


def end_workers() -> None:
    """SIGTERM to the process group of each multi_processing worker still running (the shell Beam starts it with,
    and the worker)."""
    for process in worker_processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass


def start_worker(*args, **kwargs) -> subprocess.Popen:
    """subprocess.Popen for Beam's workers: in a process group of their own, and remembered for end_workers."""
    process = subprocess.Popen(*args, process_group=0, **kwargs)
    worker_processes.append(process)
    return process


def install_during_start_up() -> None:
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stopped_before_start)


def workers_in_their_own_process_group() -> None:
    """Make the DirectRunner start its multi_processing workers in a new process group (`process_group=0`,
    Python 3.11's setpgid in the child: no Python code runs between fork and exec). Beam's
    `local_job_service.SubprocessSdkWorker` is the only caller of subprocess in that module; only its
    `subprocess.Popen` is replaced, by `start_worker` (the same call with that argument, remembered)."""
    from apache_beam.runners.portability import local_job_service
    if getattr(local_job_service.subprocess, "facelabel_process_group", False):
        return
    local_job_service.subprocess = types.SimpleNamespace(Popen=start_worker, facelabel_process_group=True)


def install() -> None:
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stop_on_signal)
    workers_in_their_own_process_group()
