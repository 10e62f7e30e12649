"""Real `python -m bench` processes for the kill and two-process tests: started with this
checkout's code, watched (stderr lines, files appearing), killed with SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Fields that differ between two runs of the same thing: timings and clocks.
CLOCK_FIELDS = {"train_s", "predict_s", "utc", "seconds", "mb_per_s", "created_utc",
                "encode_seconds"}


class Bench:
    """`python -m bench ARGS` in a subprocess; its stderr lines are collected as they come."""

    def __init__(self, *args, env: dict | None = None):
        environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "bench", *map(str, args)],
                                        cwd=REPO, env=environment, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, condition, timeout: float = 120.0) -> bool:
        """Poll until condition() or the process ended; True if the condition held first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if self.process.poll() is not None:
                return bool(condition())
            time.sleep(0.005)
        raise TimeoutError(f"waited {timeout} s; stderr so far: {self.lines[-5:]}")

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def kill_after(self, delay: float) -> bool:
        """SIGKILL after `delay` seconds; True if the process was still running then."""
        time.sleep(delay)
        running = self.process.poll() is None
        if running:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return running

    def finish(self, timeout: float = 300.0) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def copy_raw(source: Path, target: Path, with_cache: Path | None = None) -> Path:
    """The raw files (and synth_info/truth) of `source` in a fresh folder; optionally a copy
    of a converted cache as its cache/."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith("."):
            shutil.copyfile(path, target / path.name)
    if with_cache is not None:
        shutil.copytree(with_cache, target / "cache",
                        ignore=shutil.ignore_patterns(".*", "encoded-*"))
    return target


def has_entry(folder: Path, prefix: str) -> bool:
    return folder.exists() and any(p.name.startswith(prefix) for p in folder.iterdir())


def without_clocks(value):
    """A manifest or record with its timing fields dropped, at every depth."""
    if isinstance(value, dict):
        return {k: without_clocks(v) for k, v in value.items() if k not in CLOCK_FIELDS}
    if isinstance(value, list):
        return [without_clocks(v) for v in value]
    return value


def same_cache(folder: Path, reference: Path) -> None:
    """Assert two cache folders hold the same files: Parquet byte for byte, .npy array for
    array, JSON equal but for clocks and paths; no work folder or temporary file left."""
    left = [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert not left, f"left behind in {folder}: {left}"
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != ".lock")
    expected = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*")
                      if p.is_file() and p.name != ".lock")
    assert names == expected, (set(names) ^ set(expected))
    for name in names:
        mine, theirs = folder / name, reference / name
        if name.endswith(".npy"):
            a, b = np.load(mine), np.load(theirs)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        elif name.endswith(".json"):
            a, b = (without_clocks(json.loads(p.read_text())) for p in (mine, theirs))
            for manifest in (a, b):
                manifest.pop("data_dir", None)
                (manifest.get("info") or {}).pop("encoded_cache", None)
            assert a == b, name
        else:
            assert mine.read_bytes() == theirs.read_bytes(), name


def records_key(records: list[dict]) -> list[dict]:
    """Records without their clock fields, in a stable order (what two equal runs share)."""
    return sorted((without_clocks(r) for r in records),
                  key=lambda r: (r.get("kind", ""), r["model"], r["seed"], str(r.get("task"))))
