"""Writes that a crash cannot leave half done: a temporary file in the same folder, flushed to
disk, then renamed over the target (os.replace is atomic on POSIX file systems), so a reader
sees the old content or the new, never a mix, even if the writer is killed mid-write."""

from __future__ import annotations

import json
import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's: its entries, i.e. renames) data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """A name beside `path` that no other process writes to (the PID is part of it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def replace_synced(tmp: Path, path: Path) -> None:
    """Rename a finished file over `path` once its bytes are on disk, then sync the folder.
    Without the first sync, a power cut right after the rename can leave an empty file under
    the new name (the rename reached the disk before the data)."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(Path(path).parent)


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as out:
            out.write(data)
        replace_synced(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, data, **dumps) -> None:
    write_text(path, json.dumps(data, **dumps))


def read_json(path: Path, missing: str = ""):
    """A JSON file's content; a missing file or bad JSON is one error naming the file (and the
    line), with `missing` saying what the file should have been."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found" + (f": {missing}" if missing else ""))
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}: not JSON ({error.msg})") from None


def print_and_save(result: dict, out: str | None) -> None:
    """A measuring tool's result as indented JSON on stdout, and in `out` when given."""
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
