"""The whole conversion: the raw files of the chosen splits -> the Parquet cache and its
manifest (fingerprint, counts, skipped and repaired lines, speed), written last.

Before any reading, every input is checked to be a non-empty file and not an archive (gzip,
zip, tar) saved under the .csv name. Each split's common file is converted first: its request
keys are the join check of the skeleton file."""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from ccp.atomic import replace_synced, write_json
from ccp.data import schema
from ccp.data.fingerprint import fingerprint_files
from ccp.data.raw.blocks import Context
from ccp.data.raw.cache import CACHE_FORMAT, MANIFEST, output_names, raw_paths, raw_settings
from ccp.data.raw.file_convert import FileConversion, FileStats, Report
from ccp.data.raw.layout import COMMON, SKELETON, RawFormatError
from ccp.folder_lock import CONVERTING, folder_lock

BLOCK_BYTES = 8 << 20  # raw bytes per CSV block; must exceed the longest line
WORKERS = min(2, os.cpu_count() or 1)


@contextmanager
def _reuse_freed_memory():
    """Keep freed memory in the process while converting. Every block allocates the same
    large temporary arrays; glibc would hand them back to the OS at each free and fault fresh
    pages in at the next block, which cost a third of the parse time (measured). Afterwards the
    thresholds are set to the values glibc's own dynamic rule reaches once large arrays have
    been freed (mmap 32 MiB, trim twice that), and the kept memory is released."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to tune
        yield
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's upper limit for this setting
    try:
        yield
    finally:
        mallopt(m_trim_threshold, 64 << 20)
        malloc_trim(0)


# Archives saved under the .csv name: (offset, magic bytes, what the file is). Tianchi ships
# the data as sample_{train,test}.tar.gz. Such a file is refused rather than unpacked here:
# its size and fingerprint would be those of the archive, inflating it would take one of the
# two parsing cores, and a .tar.gz unpacks to a tar stream, not to the CSV text.
_ARCHIVES = ((0, b"\x1f\x8b", "gzip-compressed"), (0, b"PK\x03\x04", "a zip archive"),
             (257, b"ustar", "a tar archive"))


def _check_inputs(paths: list[Path]):
    for path in paths:
        if not path.is_file():
            raise RawFormatError(path, None, None, f"file not found (looked in {path.parent})")
        if path.stat().st_size == 0:
            raise RawFormatError(path, None, None, "file is empty")
        with open(path, "rb") as file:
            head = file.read(512)
        for offset, magic, what in _ARCHIVES:
            if head[offset:offset + len(magic)] == magic:
                raise RawFormatError(path, None, None, (
                    f"file is {what} (its bytes at offset {offset} are "
                    f"{magic.hex(' ')}), not CSV text: decompress it first (Tianchi's "
                    f"sample_train.tar.gz and sample_test.tar.gz unpack with tar -xzf)"))


def convert_raw(data_dir, cache_dir, *, progress: bool = True, **options) -> dict:
    """Convert the raw files of `splits` into the Parquet cache; return the report (manifest).

    Strict mode (the default) raises RawFormatError at the first bad line; lenient mode skips
    bad lines and counts and lists them in the report. Single fields repeated on a line are
    always repaired (first kept) and counted. Holds the cache folder's lock meanwhile
    (ccp.folder_lock), so two processes never convert into one folder at once.
    """
    with folder_lock(cache_dir, progress):
        return _convert_locked(data_dir, cache_dir, progress=progress, **options)


def _convert_locked(data_dir, cache_dir, *, splits=schema.RAW_SPLITS, lenient: bool = False,
                    progress: bool = True, block_bytes: int = BLOCK_BYTES,
                    workers: int = WORKERS) -> dict:
    started = time.perf_counter()
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    settings = raw_settings(splits=splits, lenient=lenient)
    paths = raw_paths(data_dir, settings["splits"])
    _check_inputs(paths)
    fingerprint = fingerprint_files(paths, settings)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / MANIFEST).unlink(missing_ok=True)  # from here on the cache reads as incomplete
    work_dir = Path(tempfile.mkdtemp(prefix=CONVERTING, dir=cache_dir))
    report = Report()
    files, split_stats = {}, {}
    try:
        with _reuse_freed_memory():
            for split in settings["splits"]:
                _convert_split(data_dir, work_dir, split, lenient, report, files, split_stats,
                               block_bytes, workers, progress)
        for split in settings["splits"]:  # the manifest, written last, makes them current
            for out_name in output_names(split):
                replace_synced(work_dir / out_name, cache_dir / out_name)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    seconds = time.perf_counter() - started
    total_bytes = sum(f["bytes"] for f in files.values())
    manifest = {
        "cache_format": CACHE_FORMAT,
        "fingerprint": fingerprint,
        "settings": settings,
        "data_dir": str(data_dir),
        "files": files,
        "splits": split_stats,
        "skipped_lines": sum(f["skipped_lines"] for f in files.values()),
        "skipped_examples": report.skipped_examples,
        "repaired_lines": sum(f["repaired_lines"] for f in files.values()),
        "repaired_triples": sum(f["repaired_triples"] for f in files.values()),
        "repair_examples": report.repair_examples,
        "seconds": round(seconds, 3),
        "raw_mb": round(total_bytes / 1e6, 3),
        "mb_per_s": round(total_bytes / 1e6 / max(seconds, 1e-9), 2),
        "workers": workers,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pyarrow": pa.__version__,
    }
    write_json(cache_dir / MANIFEST, manifest, indent=1, sort_keys=True)
    if progress:
        print(f"converted {total_bytes / 1e6:,.0f} MB in {seconds:.1f} s "
              f"({manifest['mb_per_s']:.0f} MB/s); skipped {manifest['skipped_lines']} lines, "
              f"repaired {manifest['repaired_lines']}", file=sys.stderr, flush=True)
    return manifest


def _convert_split(data_dir: Path, work_dir: Path, split: str, lenient: bool, report: Report,
                   files: dict, split_stats: dict, block_bytes: int, workers: int,
                   progress: bool):
    """The common file first (its keys are the join check of the skeleton), then the skeleton."""
    known_keys, requests = None, 0
    for layout, name, out_name in zip((COMMON, SKELETON),
                                      (schema.common_name(split), schema.skeleton_name(split)),
                                      output_names(split)):
        path = data_dir / name
        stats = FileStats(bytes=path.stat().st_size)
        if progress:
            print(f"converting {path} ...", file=sys.stderr, flush=True)
        ctx = Context(path, layout, lenient, known_keys)
        keys = FileConversion(ctx, work_dir / out_name, stats, report, block_bytes, workers,
                              progress).run()
        if layout.kind == "common":  # its keys, even none (every line skipped as bad)
            known_keys = keys
        files[name] = _file_entry(stats, out_name)
        if layout.kind == "common":
            requests = stats.rows_written
        else:
            split_stats[split] = _split_entry(stats, requests)


def _file_entry(stats: FileStats, out_name: str) -> dict:
    return {"bytes": stats.bytes, "lines": stats.lines, "rows_written": stats.rows_written,
            "skipped_lines": sum(stats.skipped.values()), "skipped_by_kind": stats.skipped,
            "repaired_lines": stats.repaired_lines, "repaired_triples": stats.repaired_triples,
            "seconds": round(stats.seconds, 3),
            "mb_per_s": round(stats.bytes / 1e6 / max(stats.seconds, 1e-9), 2),
            "output": out_name}


def _split_entry(stats: FileStats, requests: int) -> dict:
    return {"impressions": stats.rows_written, "requests": requests,
            "requests_with_impressions": stats.distinct_keys, "clicks": stats.clicks,
            "purchases": stats.purchases, "click_and_purchase": stats.click_and_purchase,
            "purchase_without_click": stats.purchase_without_click,
            "skipped_missing_common": stats.skipped.get("missing_common", 0)}
