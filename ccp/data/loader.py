"""`load()`: the one way the harness gets a `Dataset`, whatever form the user's data is in.

Data sets:
- "synthetic": the built-in generator (ccp.data.synth), raw Tianchi format with known truth;
  generated on first use into DATA_ROOT/synthetic-{profile}-seed{seed}.
- "aliccp": the real raw Tianchi files in --data-dir (users bring them).
- "aliccp-csv": the common processed CSV form (train/val/test files) in --data-dir; without
  --data-dir, the 200 real rows shipped in shared/data/aliccp-sample.

Raw files are converted once into a Parquet cache (rebuilt when the fingerprint of inputs and
settings changes); the train file is train, the test file is halved into validation and test by
request key (ccp.data.split).

Out of core: past OUT_OF_CORE_AUTO_BYTES of Parquet cache (or with out_of_core=True), the cache
is encoded batch by batch into .npy files (ccp.data.stream_encode) and loaded memory-mapped,
so a data set larger than memory loads in seconds and is paged in only where it is used. Both
forms come from one encoder (ccp.data.encode), so they are equal array for array.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from ccp.data import schema
from ccp.data.dataset import Dataset
from ccp.data.encode import PrepSettings, RawPart, encode_dataset
from ccp.folder_lock import folder_lock

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT = Path(os.environ.get("CCPBENCH_DATA", REPO_ROOT / "data"))
SAMPLE_DIR_CANDIDATES = (REPO_ROOT.parent / "shared" / "data" / "aliccp-sample",
                         REPO_ROOT / "data" / "aliccp-sample")
DATASETS = ("synthetic", "aliccp", "aliccp-csv")
# Parquet cache size above which raw data is encoded out of core and memory-mapped: the
# in-memory encoding peaks at ~20 times the cache's size (measured: 3.7 GiB for 167 MB at the
# aliccp profile x0.05, 7.1 GiB for 330 MB at x0.1), the out-of-core one at well under 1 GiB.
OUT_OF_CORE_AUTO_BYTES = 256 << 20


def synthetic_dir(profile: str, seed: int) -> Path:
    return DATA_ROOT / f"synthetic-{profile}-seed{seed}"


def ensure_synthetic(profile: str, seed: int, data_dir: Path | None = None,
                     progress: bool = True) -> Path:
    """Generate the synthetic raw files unless a complete set is already there."""
    from ccp.data import synth
    out = Path(data_dir) if data_dir else synthetic_dir(profile, seed)
    info_path = out / "synth_info.json"
    # Under the folder's lock: two generators would write the same partial files.
    with folder_lock(out, progress):
        if info_path.exists():
            info = json.loads(info_path.read_text())
            # Data written before the achievable ceiling existed is regenerated (same bytes).
            ceiling = "achievable_ctr_auc" in (info.get("oracle") or {}).get("test_half", {})
            # The default folder's data is remade when its profile's parameters changed since;
            # a folder the caller names may hold data made with overrides (the regime study).
            same_params = (data_dir is not None
                           or info.get("params") == synth.profile_params_json(profile))
            if (info.get("profile") == profile and info.get("seed") == seed and ceiling
                    and same_params):
                return out
        synth.generate(out, profile=profile, seed=seed, progress=progress)
    return out


def _read_cache(cache_dir: Path, split: str, data_dir: Path) -> RawPart:
    skeleton = pq.read_table(cache_dir / f"skeleton_{split}.parquet")
    common = pq.read_table(cache_dir / f"common_{split}.parquet")
    truth_path = data_dir / f"truth_{split}.parquet"
    truth = pq.read_table(truth_path) if truth_path.exists() else None
    return RawPart(skeleton, common, schema.skeleton_name(split), truth)


def use_out_of_core(out_of_core: bool | None, cache_dir: Path) -> bool:
    """True (forced), False (forced) or, with None, whether the cache is past the auto size."""
    if out_of_core is not None:
        return bool(out_of_core)
    size = sum(p.stat().st_size for p in Path(cache_dir).glob("*.parquet"))
    return size > OUT_OF_CORE_AUTO_BYTES


def load_raw(data_dir: Path, cache_dir: Path | None = None, settings=PrepSettings(),
             lenient: bool = False, progress: bool = True, name: str = "aliccp",
             info: dict | None = None, out_of_core: bool | None = None) -> Dataset:
    from ccp.data import raw
    data_dir = Path(data_dir)
    cache_dir = Path(cache_dir) if cache_dir else data_dir / "cache"
    # Checked, converted if stale, and read (or memory-mapped) under the cache's lock, so that
    # another process cannot convert into it meanwhile; encoding in memory needs no lock.
    with folder_lock(cache_dir, progress):
        if not raw.cache_is_current(data_dir, cache_dir, {"lenient": lenient}):
            raw.convert_raw(data_dir, cache_dir, lenient=lenient, progress=progress)
        manifest = json.loads((cache_dir / "manifest.json").read_text())
        info = {**(info or {}), "source": str(data_dir), "conversion": manifest,
                "split_rule": "train = train file; validation/test = test file halved by a "
                              "hash of the request key"}
        fingerprint = f"{manifest['fingerprint']}-{settings.digest()}"
        if use_out_of_core(out_of_core, cache_dir):
            from ccp.data.stream_encode import encoded_dataset

            return encoded_dataset(cache_dir, data_dir, settings, fingerprint,
                                   manifest["fingerprint"], name, info, progress)
        # The test file is encoded whole and halved into validation and test by the encoder.
        pairs = [_read_cache(cache_dir, "train", data_dir).pair("train", ("train",)),
                 _read_cache(cache_dir, "test", data_dir).pair("test", ("valid", "test"))]
    return encode_dataset(name, fingerprint, pairs, settings, info)


def load_processed_csv(data_dir: Path | None, settings=PrepSettings(),
                       lenient: bool = False) -> Dataset:
    from ccp.data.processed_csv import find_split_files, read_split_files

    if data_dir is None:
        found = [d for d in SAMPLE_DIR_CANDIDATES if d.exists()]
        if not found:
            raise FileNotFoundError("no --data-dir given and the shipped Ali-CCP sample was not "
                                    f"found at {SAMPLE_DIR_CANDIDATES[0]}")
        data_dir = found[0]
    paths = find_split_files(Path(data_dir))
    parts, conversion = read_split_files(paths, lenient=lenient)
    from ccp.data.fingerprint import fingerprint_files

    # Lenient reading may skip lines, so it is part of the data's identity (strict: unchanged).
    extra = {"lenient": True} if lenient else {}
    fingerprint = fingerprint_files(list(paths.values()), {**settings.as_dict(), **extra})
    info = {"source": str(data_dir), "conversion": conversion,
            "split_rule": "the train/val/test files as given (processed CSV form)"}
    pairs = [parts[label].pair(label, (label,)) for label in ("train", "valid", "test")]
    return encode_dataset("aliccp-csv", fingerprint, pairs, settings, info)


class EmptySplitError(ValueError):
    """A split has nothing to train or evaluate on; the message says where its rows went."""


def _where_rows_went(info: dict, split: str) -> str:
    """The counts that explain an empty split: lines skipped, purchase-without-click dropped."""
    reasons = []
    conversion = info.get("conversion") or {}
    # Raw: valid and test are halves of the test file; processed CSV: ali_ccp_val*.csv.
    sources = {"train": ("train",), "valid": ("test", "_val")}.get(split, ("test",))
    for name, stats in (conversion.get("files") or {}).items():
        if any(s in name for s in sources) and stats.get("skipped_lines"):
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(
                (stats.get("skipped_by_kind") or {}).items()))
            reasons.append(f"{stats['skipped_lines']} of {stats.get('lines')} lines of {name} "
                           f"were skipped ({kinds})")
    dropped = (info.get("purchase_without_click") or {}).get(split)
    if dropped and not (info.get("settings") or {}).get("keep_purchase_without_click"):
        reasons.append(f"{dropped} purchase-without-click rows were dropped "
                       "(--keep-purchase-without-click keeps them)")
    return "; ".join(reasons) or "its input had no rows"


def require_rows(data: Dataset) -> Dataset:
    """Refuse a data set no model can be trained or scored on, instead of reporting AUCs of
    nothing: every split needs rows, and train needs at least one click."""
    for split, part in data.splits.items():
        if len(part) == 0:
            raise EmptySplitError(f"{data.name}: the {split} split has no rows: "
                                  f"{_where_rows_went(data.info, split)}")
    if int(data.train.click.sum()) == 0:
        raise EmptySplitError(f"{data.name}: the train split has {len(data.train):,} rows but "
                              "no click: no model can learn CTR from it")
    return data


def load(dataset: str = "synthetic", data_dir: str | Path | None = None,
         synth_profile: str = "small", seed: int = 0, min_count: int = 10,
         keep_purchase_without_click: bool = False, lenient: bool = False,
         progress: bool = True, out_of_core: bool | None = None,
         allow_empty: bool = False) -> Dataset:
    """out_of_core: None = automatic (by cache size), True/False = forced; raw data only.
    allow_empty: return a data set with an empty split (for `bench data info`) instead of
    raising EmptySplitError."""
    data = _load(dataset, data_dir, synth_profile, seed, min_count, keep_purchase_without_click,
                 lenient, progress, out_of_core)
    return data if allow_empty else require_rows(data)


def _load(dataset, data_dir, synth_profile, seed, min_count, keep_purchase_without_click,
          lenient, progress, out_of_core) -> Dataset:
    settings = PrepSettings(min_count=min_count,
                            keep_purchase_without_click=keep_purchase_without_click)
    if dataset == "synthetic":
        raw_dir = ensure_synthetic(synth_profile, seed, data_dir, progress)
        synth_info = json.loads((raw_dir / "synth_info.json").read_text())
        return load_raw(raw_dir, settings=settings, lenient=lenient, progress=progress,
                        name=f"synthetic-{synth_profile}-seed{seed}",
                        info={"synthetic": synth_info}, out_of_core=out_of_core)
    if dataset == "aliccp":
        if data_dir is None:
            raise ValueError("--dataset aliccp needs --data-dir with the raw Tianchi files "
                             "(see shared/ALICCP.md)")
        return load_raw(Path(data_dir), settings=settings, lenient=lenient, progress=progress,
                        out_of_core=out_of_core)
    if dataset == "aliccp-csv":
        return load_processed_csv(Path(data_dir) if data_dir else None, settings, lenient)
    raise ValueError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")


def load_generated(synth_profile: str, seed: int) -> Dataset:
    """A synthetic profile's data set generated into a temporary folder and loaded in memory:
    the same rows every time, no file left behind (the CI gates; tiny takes seconds)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"ccpbench-{synth_profile}-") as folder:
        raw = ensure_synthetic(synth_profile, seed, Path(folder) / "raw", progress=False)
        return load("synthetic", raw, synth_profile=synth_profile, seed=seed, progress=False,
                    out_of_core=False)
