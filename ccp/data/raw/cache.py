"""What the Parquet cache of the raw files is: its settings, file names, and whether a cache
folder holds a complete, current conversion (its manifest's fingerprint, written last)."""

from __future__ import annotations

import json
from pathlib import Path

from ccp.data import schema
from ccp.data.fingerprint import fingerprint_files

# Bump when the cache layout or the parsing rules change: old caches then read as stale.
CACHE_FORMAT = 1
MANIFEST = "manifest.json"


def raw_settings(settings: dict | None = None, **overrides) -> dict:
    """Normalised preparation settings (what the fingerprint covers)."""
    merged = {"splits": list(schema.RAW_SPLITS), "lenient": False, **(settings or {}),
              **overrides}
    merged["splits"] = list(merged["splits"])
    merged["lenient"] = bool(merged["lenient"])
    merged["reader_format"] = CACHE_FORMAT
    return merged


def raw_paths(data_dir: Path, splits) -> list[Path]:
    data_dir = Path(data_dir)
    return [data_dir / name for split in splits
            for name in (schema.common_name(split), schema.skeleton_name(split))]


def output_names(split: str) -> tuple[str, str]:
    return f"common_{split}.parquet", f"skeleton_{split}.parquet"


def cache_is_current(data_dir, cache_dir, settings: dict | None = None) -> bool:
    """True when cache_dir holds a complete conversion of these files with these settings."""
    cache_dir = Path(cache_dir)
    settings = raw_settings(settings)
    try:
        manifest = json.loads((cache_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    paths = raw_paths(data_dir, settings["splits"])
    if not all(p.is_file() for p in paths):
        return False
    outputs = [cache_dir / n for s in settings["splits"] for n in output_names(s)]
    if not all(p.is_file() for p in outputs):
        return False
    return manifest.get("fingerprint") == fingerprint_files(paths, settings)
