"""The hidden staging folder a run writes its outputs into before moving them into place, and the clean-up of
folders left by runs that were killed before they could remove their own.

A run removes its staging folder after success, failure, Ctrl-C or SIGTERM (`pipeline.stopping`). A run killed
outright (SIGKILL, the kernel's out-of-memory killer, a machine lost) cannot: its folder stays, hidden, and can
hold a night's worth of sorted rows. The next run into the same output removes such a folder when it can tell
that its writer is gone (written from this machine by a process that no longer runs) and names any other in one
warning, since it may belong to a run still writing (another machine, a Dataflow job).

Two runs into one local output folder at once (a night's run still going when the next starts) would each
replace the other's results without a word: `claim_output` holds an exclusive lock (`flock`) on a file in the
folder from launch to the end (of two runs started together exactly one gets it, and the kernel lets go of it
however a run ends); the other stops with one line.
"""

import datetime
import fcntl
import logging
import os
import re
import socket
import time

from apache_beam.io.filesystems import FileSystems

from pipeline.checks import UserError
from pipeline.model_files import is_local
from pipeline.outputs import remove_quietly

STAGING_PREFIX: str = ".facelabel-staging-"
# <prefix><start, Unix seconds>-<host name>-<process id>; folders from before 2026-12-01 have no host name.
STAGING_NAME = re.compile(re.escape(STAGING_PREFIX) + r"(?P<started>\d+)-(?:(?P<host>.+)-)?(?P<pid>\d+)$")

log = logging.getLogger("facelabel")


def staging_folder(output_dir: str, started: float) -> str:
    """The staging folder of a run started at `started` (Unix seconds) by this process on this machine."""
    return FileSystems.join(output_dir, f"{STAGING_PREFIX}{int(started)}-{socket.gethostname()}-{os.getpid()}")


def process_is_running(pid: int) -> bool:
    """True if a process with this id runs on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def staging_folders(output_dir: str) -> list[str]:
    """The names of the staging folders in output_dir (local or remote), sorted."""
    if is_local(output_dir):
        if not os.path.isdir(output_dir):
            return []
        return sorted(entry.name for entry in os.scandir(output_dir)
                      if entry.is_dir() and STAGING_NAME.match(entry.name))
    pattern = FileSystems.join(output_dir, STAGING_PREFIX + "**")
    found = FileSystems.match([pattern])[0].metadata_list
    prefix = output_dir.rstrip("/") + "/"
    names = {item.path[len(prefix):].split("/", 1)[0] for item in found if item.path.startswith(prefix)}
    return sorted(name for name in names if STAGING_NAME.match(name))


def clear_abandoned_staging(output_dir: str) -> None:
    """Remove staging folders whose writer is gone; warn, once, about those that cannot be told apart from a
    running job's. Never fails a run: leftovers are hidden and never read back."""
    try:
        names = staging_folders(output_dir)
    except Exception as err:  # noqa: BLE001 - a listing problem must not stop the night's run
        log.debug("could not list staging folders in %s: %s", output_dir, err)
        return
    host, unknown = socket.gethostname(), []
    for name in names:
        parts = STAGING_NAME.match(name)
        if is_local(output_dir) and parts["host"] == host and not process_is_running(int(parts["pid"])):
            log.info("removing %s, left by an earlier run that was killed", name)
            remove_quietly(FileSystems.join(output_dir, name))
        else:
            unknown.append(name)
    if unknown:
        log.warning("%d staging folder%s of other runs in %s (%s%s): if no run is writing there, remove %s",
                    len(unknown), "" if len(unknown) == 1 else "s", output_dir, ", ".join(unknown[:2]),
                    " ..." if len(unknown) > 2 else "", "it" if len(unknown) == 1 else "them")


LOCK_FILE: str = ".facelabel-lock"
OWNER_WAIT_S: float = 2.0  # how long a refused run waits for the holder to write its name into a fresh lock
OWNER_POLL_S: float = 0.05

_held: dict[str, int] = {}  # lock path -> the open descriptor whose flock this process holds


def read_owner(handle: int) -> tuple[str, int, str] | None:
    """The (host, process id, start time) written in an open lock file; None if empty or unreadable."""
    try:
        host, pid, since = os.pread(handle, 4096, 0).decode("utf-8").split("\t")
        return host, int(pid), since
    except (OSError, ValueError):
        return None


def claim_output(output_dir: str) -> str | None:
    """Take the local output folder for this run. The lock file in it is held with an exclusive `flock` for as
    long as this process lives (the kernel lets go when it ends, however it ends), and holds this machine's name,
    this process's id and the start time, for the message another run prints. Returns the lock's path (let go
    with `release_output`); None for remote outputs (no lock can be taken there; see clear_abandoned_staging).

    Raises UserError while another run holds the lock, or when the file names a run of another machine (whose
    lock a shared file system may not carry over). A file left by a run of this machine that is gone (killed) is
    taken over."""
    if not is_local(output_dir):
        return None
    os.makedirs(output_dir, exist_ok=True)
    lock = os.path.join(output_dir, LOCK_FILE)
    host, pid = socket.gethostname(), os.getpid()
    for _ in range(3):
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = None
            waited = 0.0
            while (owner := read_owner(handle)) is None and waited < OWNER_WAIT_S:  # it has locked, not written
                time.sleep(OWNER_POLL_S)
                waited += OWNER_POLL_S
            os.close(handle)
            raise UserError(held_message(owner, output_dir, lock)) from None
        except OSError:
            os.close(handle)
            raise
        try:
            current = os.stat(lock).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:
            current = False
        if not current:  # locked a file its run removed as it finished: take the new one
            os.close(handle)
            continue
        owner = read_owner(handle)
        if owner is not None and owner[0] != host:
            os.close(handle)
            raise UserError(held_message(owner, output_dir, lock))
        if owner is not None:
            log.info("taking over %s, left by a run that is gone", lock)
        since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{host}\t{pid}\t{since}".encode("utf-8"), 0)
        _held[lock] = handle
        return lock
    raise UserError(f"could not take {lock}: other runs keep taking it")


def held_message(owner: tuple[str, int, str] | None, output_dir: str, lock: str) -> str:
    """The one line for a run refused an output folder that `owner` (host, process id, start) holds."""
    if owner is None:
        return f"another run is writing into {output_dir}: wait for it to finish, or give another --output"
    owner_host, owner_pid, since = owner
    if owner_host != socket.gethostname():
        return (f"a run on {owner_host} (process {owner_pid}, started {since}) is writing into {output_dir}; "
                f"if none is, remove {lock}")
    return (f"another run (process {owner_pid}, started {since}) is writing into {output_dir}: wait for it to "
            f"finish, or give another --output")


def release_output(lock: str | None) -> None:
    """Remove this run's lock file and let go of its lock (removed first, so no run can lock the old file)."""
    handle = _held.pop(lock, None) if lock is not None else None
    if handle is None:
        return
    try:
        os.remove(lock)
    except OSError:
        pass
    os.close(handle)
