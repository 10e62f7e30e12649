"""One process at a time writes a folder: `folder_lock(folder)` holds an exclusive lock on
FOLDER/.lock while data are generated, converted, encoded or read from a data cache, and
`claim(folder)` holds a run folder's for the rest of the process.

Why a lock and not only per-file atomic writes: a process that waits for another and then
finds the cache current does no work, while two unlocked processes would each convert the same
files (a whole conversion each, on shared cores), and one could still remove or rename files
the other is reading (the stale manifest, an encoded folder being replaced). Measured on the
synthetic small profile (292 MB raw, 2 shared cores, load ~28): a conversion takes 21-23 s,
the check that finds the cache current 0.6-0.7 s, taking and releasing a free lock 0.4-0.5 ms
(a bare flock pair 6-12 us); so the waiting process pays 0.6 s where a duplicate would pay
21 s of both cores.

The lock is `fcntl.flock` on an open file: the kernel drops it when its process ends, however
it ends (SIGKILL included), so a killed run never leaves a stale lock. The holder writes its PID
into the file, so a waiting process can say whom it waits for. The file itself stays: removing
it would let two processes lock two different files of one name. The lock is re-entrant within
a process (loader -> convert_raw -> stream_encode take it in turn).

On taking the lock, work folders and temporary files that a killed process left in the folder
(names starting with WORK_PREFIXES, or `.NAME.PID.tmp` of ccp.atomic) are removed: while we
hold the lock no live process can be writing them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locking (ccpbench runs on Linux and macOS)
    fcntl = None

LOCK_NAME = ".lock"
# Work folders of a conversion, of an encoding, and an encoded folder being replaced.
CONVERTING, ENCODING, REPLACED = WORK_PREFIXES = (".converting-", ".encoding-", ".replaced-")
_held: dict[str, int] = {}  # lock path -> depth, in this process
_claims = ExitStack()  # run folders this process holds until it exits
# Released before the interpreter tears its modules down (else the claims' generators are
# finalised after this module's globals are gone, and print "Exception ignored" noise).
atexit.register(_claims.close)


class FolderBusy(ValueError):
    """Another live process holds the folder (only raised when not waiting)."""


def holder_pid(path: Path) -> str:
    try:
        words = Path(path).read_text().split()
    except OSError:
        return "?"
    return words[0] if words else "?"


def remove_leftovers(folder: Path) -> list[str]:
    """Remove what killed processes left in `folder`; return the names removed."""
    removed = []
    for entry in Path(folder).iterdir():
        name = entry.name
        if name.startswith(WORK_PREFIXES) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif name.startswith(".") and name.endswith(".tmp") and entry.is_file():
            entry.unlink(missing_ok=True)
        else:
            continue
        removed.append(name)
    return removed


@contextmanager
def _reentered(key: str):
    _held[key] = _held.get(key, 0) + 1
    try:
        yield
    finally:
        _held[key] -= 1
        if not _held[key]:
            del _held[key]


def _acquire(lock_file, path: Path, wait: bool) -> None:
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    if not wait:
        raise FolderBusy(f"{path.parent} is in use by PID {holder_pid(path)} (lock {path})")
    # Printed even with --quiet: a silent wait looks like a hang.
    print(f"waiting for PID {holder_pid(path)} (lock {path}) ...", file=sys.stderr, flush=True)
    fcntl.flock(lock_file, fcntl.LOCK_EX)


@contextmanager
def folder_lock(folder: Path, progress: bool = True, wait: bool = True):
    """Hold FOLDER/.lock (creating the folder); while another process holds it, wait and say
    for whom (wait=True) or raise FolderBusy."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    key = str(path.resolve())
    if key in _held or fcntl is None:
        with _reentered(key):
            yield
        return
    try:
        lock_file = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
    except PermissionError:  # a read-only folder: nobody changes it through ccpbench either
        yield
        return
    with lock_file:
        _acquire(lock_file, path, wait)
        try:
            # Overwritten in place at a fixed width: truncating a file on ext4 flushes it to
            # disk first (its replace-by-truncate heuristic), measured at ~8 ms a lock.
            lock_file.seek(0)
            lock_file.write(f"{os.getpid():<20}\n")
            lock_file.flush()
            removed = remove_leftovers(folder)
            if removed and progress:
                print(f"removed what an interrupted run left in {folder}: "
                      f"{', '.join(sorted(removed))}", file=sys.stderr, flush=True)
            with _reentered(key):
                yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def claim(folder: Path) -> None:
    """Hold `folder`'s lock until this process exits; FolderBusy if another process holds it."""
    _claims.enter_context(folder_lock(folder, progress=False, wait=False))
