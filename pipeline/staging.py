"""The hidden staging folder a run writes its outputs into before moving them into place, and the clean-up of
folders left by runs that were killed before they could remove their own.

A run removes its staging folder after success, failure, Ctrl-C or SIGTERM (`pipeline.stopping`). A run killed
outright (SIGKILL, the kernel's out-of-memory killer, a machine lost) cannot: its folder stays, hidden, and can
hold a night's worth of sorted rows. The next run into the same output removes such a folder when it can tell
that its writer is gone (written from this machine by a process that no longer runs) and names any other in one
warning, since it may belong to a run still writing (another machine, a Dataflow job).

Two runs into one local output folder at once (a night's run still going when the next starts) would each
replace the other's results without a word: `claim_output` takes a lock file in the folder at launch (created
atomically, so of two runs started together exactly one gets it); the other stops with one line.
"""

import datetime
import logging
import os
import re
import socket

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


def claim_output(output_dir: str) -> str | None:
    """Take the local output folder for this run: create its lock file atomically (O_EXCL), holding this machine's
    name and this process's id. Returns the lock's path (remove it with `release_output`); None for remote
    outputs (no process can be checked there; see clear_abandoned_staging).

    Raises UserError while another live run of this machine holds it, or a run of another machine does. A lock
    left by a run that is gone (killed) is taken over."""
    if not is_local(output_dir):
        return None
    os.makedirs(output_dir, exist_ok=True)
    lock = os.path.join(output_dir, LOCK_FILE)
    host, pid = socket.gethostname(), os.getpid()
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(lock, encoding="utf-8") as existing:
                    owner_host, owner_pid, since = existing.read().split("\t")
                owner = int(owner_pid)
            except (OSError, ValueError):
                owner_host, owner, since = host, 0, ""  # unreadable or half-written: treated as left behind
            if owner_host != host:
                raise UserError(f"a run on {owner_host} (process {owner}, started {since}) is writing into "
                                f"{output_dir}; if none is, remove {lock}") from None
            if owner and owner != pid and process_is_running(owner):
                raise UserError(f"another run (process {owner}, started {since}) is writing into {output_dir}: "
                                f"wait for it to finish, or give another --output") from None
            log.info("taking over %s, left by a run that is gone", lock)
            os.remove(lock)
            continue
        since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with os.fdopen(handle, "w", encoding="utf-8") as mine:
            mine.write(f"{host}\t{pid}\t{since}")
        return lock
    raise UserError(f"could not take {lock}: another run keeps taking it")


def release_output(lock: str | None) -> None:
    """Remove this run's lock file (if it is still ours)."""
    if lock is None:
        return
    try:
        with open(lock, encoding="utf-8") as existing:
            if existing.read().split("\t")[:2] == [socket.gethostname(), str(os.getpid())]:
                os.remove(lock)
    except OSError:
        pass
