"""Stopping a run with a signal: Ctrl-C (SIGINT), or SIGTERM from a scheduler or `timeout`.

The job is stopped cleanly, as after any failure: its staging folder is removed, the previous outputs stay, and
the console shows one `error: stopped by ...` line instead of the tracebacks of every unwinding thread; the exit
status is 128 + the signal's number, as a shell reports it. `install_during_start_up` covers the first seconds,
while TensorFlow and Beam are imported; `install` the run itself.
"""

import logging
import os
import signal
import sys

EXIT_SIGNAL_BASE: int = 128
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)

stopped_by: list[int] = []  # the number of the signal that stopped the run, once one has


class Interrupted(BaseException):
    """The run was stopped by a signal (Beam may re-raise it wrapped in another error: check `stopped_by`)."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number


def exit_status(signal_number: int) -> int:
    return EXIT_SIGNAL_BASE + signal_number


def stopped_line(signal_number: int) -> str:
    return (f"error: stopped by {signal.Signals(signal_number).name}: the output folder keeps the results it had "
            f"before this run")


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
    stopped_by.append(signal_number)
    raise Interrupted(signal_number)


def install_during_start_up() -> None:
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stopped_before_start)


def install() -> None:
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stop_on_signal)
