"""Crashes lose nothing: real `python -m bench` processes killed with SIGKILL at random points,
then run again, end with the same cache and the same records as an uninterrupted run.

Each kill waits for a sign that the work is under way (the work folder of the conversion or of
the encoding appearing; a model's "[k/N]" progress line), then a random delay drawn from the
time the uninterrupted work took, so the kills land inside the work, not in Python's start-up.
Two seeds each by default; `-m slow` runs six more."""

from __future__ import annotations

import json
import random
import shutil
import time

import pytest
from processes import Bench, copy_raw, has_entry, records_key, same_cache

from bench import harness
from bench.cli import main

SEEDS = [0, 1] + [pytest.param(s, marks=pytest.mark.slow) for s in range(2, 8)]
MODELS = ["baselines/constant", "baselines/logreg", "baselines/lgbm_ctr"]


@pytest.fixture(scope="module")
def reference(tiny_raw_dir, tmp_path_factory):
    """An uninterrupted conversion and out-of-core encoding of a copy of the tiny raw files,
    with how long each took here."""
    from ccp.data import raw
    from ccp.data.loader import load

    folder = copy_raw(tiny_raw_dir, tmp_path_factory.mktemp("reference") / "raw")
    started = time.perf_counter()
    raw.convert_raw(folder, folder / "cache", progress=False)
    convert_s = time.perf_counter() - started
    converted = shutil.copytree(folder / "cache", folder.parent / "converted")
    started = time.perf_counter()
    load("synthetic", folder, synth_profile="tiny", out_of_core=True, progress=False)
    encode_s = time.perf_counter() - started
    return {"raw": folder, "cache": folder / "cache", "converted": converted,
            "convert_s": convert_s, "encode_s": encode_s}


def _kill_during(start, under_way, delay: float) -> None:
    """Start a process, wait until its work is under way, SIGKILL it `delay` s later; if it
    had already finished (this machine's speed varies), again with half the delay."""
    for _ in range(4):
        job = start()
        job.wait_for(under_way)
        if job.kill_after(delay):
            return
        delay /= 2
    pytest.fail(f"the process always finished before the kill; last stderr {job.lines[-3:]}")


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_prepare_then_prepare_again_gives_the_same_cache(seed, reference, tmp_path,
                                                                  capsys):
    rng = random.Random(seed)
    folder = copy_raw(reference["raw"], tmp_path / "raw")
    cache = folder / "cache"
    delay = rng.uniform(0, reference["convert_s"])
    _kill_during(lambda: Bench("data", "prepare", "--data-dir", folder, "--quiet"),
                 lambda: has_entry(cache, ".converting-"), delay)
    assert main(["data", "prepare", "--data-dir", str(folder), "--quiet"]) == 0
    same_cache(cache, reference["converted"])


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_out_of_core_encoding_then_again_gives_the_same_arrays(seed, reference,
                                                                       tmp_path, capsys):
    rng = random.Random(100 + seed)
    folder = copy_raw(reference["raw"], tmp_path / "raw", with_cache=reference["cache"])
    cache = folder / "cache"
    info = ["data", "info", "--dataset", "synthetic", "--profile", "tiny", "--data-dir",
            folder, "--out-of-core", "on"]
    delay = rng.uniform(0, reference["encode_s"])
    _kill_during(lambda: Bench(*info), lambda: has_entry(cache, ".encoding-"), delay)
    assert main([str(a) for a in info]) == 0
    assert not has_entry(cache, ".encoding-") and not has_entry(cache, ".replaced-")
    same_cache(cache, reference["cache"])


def _run_args(folder, out, *extra):
    # --no-latency: serving latency records are timings, never equal between two runs.
    return ["run", "--models", *MODELS, "--dataset", "synthetic", "--data-dir", str(folder),
            "--profile", "tiny", "--seeds", "0", "--out", str(out), "--no-report",
            "--no-latency", *extra]


@pytest.fixture(scope="module")
def reference_records(reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference-run") / "run"
    assert main(_run_args(reference["raw"], out, "--quiet")) == 0
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_run_then_resume_gives_the_same_records(seed, reference, reference_records,
                                                       tmp_path, capsys):
    """Killed while fitting a model or between two (after `step`'s line, within 1 s)."""
    rng = random.Random(200 + seed)
    folder = copy_raw(reference["raw"], tmp_path / "raw", with_cache=reference["cache"])
    out = tmp_path / "run"
    step = rng.randint(1, len(MODELS))  # killed while fitting model `step`, or just after
    job = Bench(*_run_args(folder, out))
    job.wait_for(lambda: job.saw(f"[{step}/{len(MODELS)}]"))
    assert job.kill_after(rng.uniform(0, 1.0)) or step == len(MODELS)
    assert main(_run_args(folder, out, "--resume", "--quiet")) == 0
    assert records_key(harness.read_records(out)) == records_key(
        harness.read_records(reference_records))
    assert json.loads((out / harness.META_FILE).read_text())["models"] == sorted(MODELS)


def test_a_line_cut_mid_write_is_named_dropped_and_run_again_on_resume(
        reference, reference_records, tmp_path, capsys):
    """The end of a results file as a kill in the middle of lgbm_ctr's write leaves it: its
    first task line whole, the second cut. Reading warns and names it; --resume removes both
    and runs lgbm_ctr again; the folder then equals the uninterrupted run's."""
    out = tmp_path / "run"
    out.mkdir()
    lines = (reference_records / harness.RESULTS_FILE).read_bytes().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if b"baselines/lgbm_ctr" in line)
    cut = lines[first + 1][:len(lines[first + 1]) // 3]
    (out / harness.RESULTS_FILE).write_bytes(b"".join(lines[:first + 1]) + cut)
    shutil.copyfile(reference_records / harness.META_FILE, out / harness.META_FILE)

    records = harness.read_records(out)
    assert len(records) == first + 1
    warning = capsys.readouterr().err
    assert f"line {first + 2} was cut mid-write" in warning
    assert 'model "baselines/lgbm_ctr", seed 0' in warning

    assert main(_run_args(reference["raw"], out, "--resume", "--quiet")) == 0
    err = capsys.readouterr().err
    assert "runs again" in err and "has records for some tasks only" in err
    assert records_key(harness.read_records(out)) == records_key(
        harness.read_records(reference_records))


def test_a_record_appended_after_a_cut_line_stays_whole(tmp_path, capsys):
    """`bench latency --out` appends to a run folder that a killed run left with a cut line:
    the new record gets a line of its own, and the cut one is named and dropped."""
    whole = {"kind": "accuracy", "model": "baselines/constant", "seed": 0, "task": "ctr"}
    harness.append_record(tmp_path, whole)
    with open(tmp_path / harness.RESULTS_FILE, "ab") as out:
        out.write(harness.record_line({**whole, "task": "cvr"}).encode()[:60])
    harness.append_record(tmp_path, {"kind": "latency", "model": "baselines/constant",
                                     "seed": 0, "p50_ms": 1.5})
    records = harness.read_records(tmp_path)
    assert [r["kind"] for r in records] == ["accuracy", "latency"]
    err = capsys.readouterr().err
    assert "line 2 is not a whole JSON record" in err and 'model "baselines/constant"' in err


def test_the_next_load_removes_what_killed_processes_left(reference, tmp_path, capsys):
    from ccp.data.loader import load

    folder = copy_raw(reference["raw"], tmp_path / "raw", with_cache=reference["converted"])
    cache = folder / "cache"
    left = [cache / ".converting-k1l2m3", cache / ".encoding-x9y8", cache / ".replaced-z7"]
    for work in left:
        work.mkdir()
        (work / "skeleton_train.parquet").write_bytes(b"half a file")
    (cache / ".manifest.json.4242.tmp").write_text("{")
    mine = cache / "notes.tmp"  # not a name ccpbench writes: left alone
    mine.write_text("the user's")
    load("synthetic", folder, synth_profile="tiny", progress=True)
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == [".lock"]
    assert mine.exists()
    assert "removed what an interrupted run left" in capsys.readouterr().err
