"""How the project reads process memory: every memory measurement reads through here.

Linux's /proc/self/status fields, in KiB:
- VmRSS: resident pages now (including pages of memory-mapped files, which the kernel can
  drop at any time); VmHWM: the kernel's high-water mark of VmRSS.
- RssAnon: resident anonymous memory, the part that cannot be dropped (what must fit in RAM);
  the kernel keeps no high-water mark of it, so `Sampler` samples it in a thread.
Imports only the standard library and ccp.timing, so any layer may use it.
"""

from __future__ import annotations

import resource
import threading
from pathlib import Path

from ccp.timing import clock


def status_kib(field: str) -> int:
    """A /proc/self/status field in KiB (VmRSS, VmHWM, RssAnon, ...); 0 where unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM), in bytes; getrusage's where /proc is
    not there."""
    return (status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class Sampler:
    """A status field sampled every `every_s` seconds in a daemon thread, from start to
    `stop()`: `samples` holds (seconds since start, KiB) pairs, `stop()` returns the peak.
    One sample is taken at the start and one at the stop, so a short step has two."""

    def __init__(self, field: str, every_s: float):
        self.field, self.every_s = field, every_s
        self.samples: list[tuple[float, int]] = []
        self._started = clock()
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        self.samples.append((clock() - self._started, status_kib(self.field)))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def stop(self) -> int:
        """Stop sampling, take the last sample; the peak in KiB."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return max(kib for _, kib in self.samples)
