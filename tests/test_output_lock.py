"""The output folder's lock (pipeline.staging.claim_output): exactly one run writes a local output folder at a time,
and a lock is let go however its run ends."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.checks import UserError
from pipeline.staging import LOCK_FILE, claim_output, release_output

ROOT = Path(__file__).resolve().parents[1]

# Takes the lock of argv[1] the way a run does, says so, and holds it for argv[2] seconds (or until killed).
CLAIMER = ("import sys, time; from pipeline.checks import UserError; from pipeline.staging import claim_output\n"
           "try:\n    claim_output(sys.argv[1])\nexcept UserError as err:\n    print('refused', err, flush=True)\n"
           "else:\n    print('held', flush=True); time.sleep(float(sys.argv[2]))\n")


def claimer(output_dir: Path, hold_s: float, *extra: str) -> subprocess.Popen:
    """A process of its own that claims output_dir and holds it for hold_s seconds."""
    return subprocess.Popen([sys.executable, "-c", CLAIMER, str(output_dir), str(hold_s), *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)


def test_a_lock_held_by_a_live_run_refuses_naming_it_and_is_left_as_it_was(tmp_path):
    holder = claimer(tmp_path, 60)
    try:
        assert holder.stdout.readline() == "held\n"
        before = (tmp_path / LOCK_FILE).read_text(encoding="utf-8")
        with pytest.raises(UserError, match=rf"^another run \(process {holder.pid}, started 20\d\d-.*\) is writing "
                                            rf"into {tmp_path}: wait for it to finish, or give another --output$"):
            claim_output(str(tmp_path))
        assert (tmp_path / LOCK_FILE).read_text(encoding="utf-8") == before
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_of_a_killed_run_is_taken_over_and_released_by_its_new_owner(tmp_path, caplog):
    holder = claimer(tmp_path, 60)
    assert holder.stdout.readline() == "held\n"
    holder.send_signal(signal.SIGKILL)  # no clean-up of its own: the file stays
    holder.wait()
    assert (tmp_path / LOCK_FILE).exists()
    with caplog.at_level("INFO", logger="facelabel"):
        lock = claim_output(str(tmp_path))
    assert "left by a run that is gone" in caplog.text
    host, pid, _ = Path(lock).read_text(encoding="utf-8").split("\t")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    release_output(lock)
    assert not os.path.exists(lock)
    release_output(lock)  # a second release does nothing
    claim_output(str(tmp_path))  # and the folder can be taken again
    release_output(lock)


def test_a_run_refused_while_the_holder_is_still_writing_its_name_waits_for_the_name(tmp_path):
    """A lock just taken is empty for a moment; a run refused then once took it for a killed run's and went on."""
    slow = ("import fcntl, os, socket, sys, time; lock = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(lock, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(0.5); "
            "os.write(lock, f'{socket.gethostname()}\\t{os.getpid()}\\tsoon'.encode()); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", slow, str(tmp_path / LOCK_FILE)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(UserError, match=rf"^another run \(process {holder.pid}, started soon\)"):
            claim_output(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_naming_another_machine_is_refused_with_how_to_clear_it(tmp_path):
    (tmp_path / LOCK_FILE).write_text("elsewhere.example\t4242\t2026-12-01T01:00:00+00:00", encoding="utf-8")
    with pytest.raises(UserError, match=rf"^a run on elsewhere.example \(process 4242, started "
                                        rf"2026-12-01T01:00:00\+00:00\) is writing into {tmp_path}; if none is, "
                                        rf"remove {tmp_path / LOCK_FILE}$"):
        claim_output(str(tmp_path))


def test_of_many_runs_started_together_exactly_one_holds_the_folder(tmp_path):
    runs = [claimer(tmp_path, 120) for _ in range(4)]  # the holder holds until the others have answered
    try:
        answers = [run.stdout.readline() for run in runs]
    finally:
        for run in runs:
            run.kill()
            run.wait()
    assert sorted(answer.split(" ", 1)[0] for answer in answers) == ["held\n"] + ["refused"] * 3, answers
    holder = runs[[answer.startswith("held") for answer in answers].index(True)]
    assert all(f"(process {holder.pid}, started " in answer for answer in answers if answer.startswith("refused"))


def test_remote_outputs_take_no_lock():
    assert claim_output("gs://bucket/out") is None
    release_output(None)
