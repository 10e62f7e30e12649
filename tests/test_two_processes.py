"""Two processes, one data folder: real `python -m bench` processes started at once on the same
--data-dir neither corrupt the cache nor share or spoil a run folder; a process that waits for
another's lock says whom it waits for."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from processes import Bench, copy_raw, records_key, same_cache

from bench import harness
from bench.cli import main
from ccp.folder_lock import LOCK_NAME, folder_lock

MODELS = ["baselines/constant", "baselines/lgbm_ctr"]  # a fast floor and a tree


@pytest.fixture(scope="module")
def reference(tiny_raw_dir, tmp_path_factory):
    """The tiny raw files converted and encoded out of core by one process, and its records."""
    from ccp.data.loader import load

    folder = copy_raw(tiny_raw_dir, tmp_path_factory.mktemp("reference") / "raw")
    load("synthetic", folder, synth_profile="tiny", out_of_core=True, progress=False)
    out = folder.parent / "run"
    assert main(["run", "--models", *MODELS, "--data-dir", str(folder), "--profile", "tiny",
                 "--seeds", "0", "--out-of-core", "on", "--out", str(out), "--quiet",
                 "--no-report", "--no-latency"]) == 0
    return {"raw": folder, "cache": folder / "cache", "records": harness.read_records(out)}


def test_two_prepares_at_once_leave_one_good_cache(reference, tmp_path):
    folder = copy_raw(reference["raw"], tmp_path / "raw")
    jobs = [Bench("data", "prepare", "--data-dir", folder, "--quiet") for _ in range(2)]
    assert [job.finish() for job in jobs] == [0, 0], [job.lines[-3:] for job in jobs]
    reference_parquet = reference["cache"].parent.parent / "converted"
    if not reference_parquet.exists():  # the parquet part of the reference cache
        reference_parquet.mkdir()
        for path in reference["cache"].iterdir():
            if path.is_file() and not path.name.startswith("."):
                os.link(path, reference_parquet / path.name)
    same_cache(folder / "cache", reference_parquet)


def test_two_runs_at_once_share_the_data_but_not_a_run_folder(reference, tmp_path):
    """Both convert nothing twice and corrupt nothing: one waits while the other converts
    and encodes; each writes its own default run folder, with the same records."""
    folder = copy_raw(reference["raw"], tmp_path / "raw")
    reports = tmp_path / "reports"
    args = ["run", "--models", *MODELS, "--data-dir", folder, "--profile", "tiny", "--seeds",
            "0", "--out-of-core", "on", "--no-report", "--no-latency"]  # timings differ
    jobs = [Bench(*args, env={"CCPBENCH_REPORTS": str(reports)}) for _ in range(2)]
    assert [job.finish() for job in jobs] == [0, 0], [job.lines[-3:] for job in jobs]
    runs = sorted((reports / "runs").iterdir())
    assert len(runs) == 2
    expected = records_key(reference["records"])
    for run in runs:
        assert records_key(harness.read_records(run)) == expected
    same_cache(folder / "cache", reference["cache"])
    # The second to take the lock found the cache current: one conversion, not two.
    assert sum(job.saw("converting ") for job in jobs) == 1


def test_a_waiting_process_names_the_holder_and_goes_on_when_it_is_done(reference, tmp_path):
    folder = copy_raw(reference["raw"], tmp_path / "raw")
    cache = folder / "cache"
    with folder_lock(cache):
        job = Bench("data", "prepare", "--data-dir", folder, "--quiet")
        job.wait_for(lambda: job.saw("waiting for PID"))
        assert job.saw(f"waiting for PID {os.getpid()} (lock {cache / LOCK_NAME})")
        assert job.process.poll() is None  # still waiting
    assert job.finish() == 0


def test_runs_started_in_the_same_second_get_their_own_folders(monkeypatch, tmp_path):
    from bench import run_folder

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    monkeypatch.setattr(run_folder, "REPORTS_ROOT", tmp_path)
    monkeypatch.setattr(run_folder, "datetime", Frozen)
    folders = [run_folder.prepare_run_dir(None, "data-tiny", False, False) for _ in range(3)]
    assert [f.name for f in folders] == ["20260102T030405Z-data-tiny",
                                         "20260102T030405Z-data-tiny-2",
                                         "20260102T030405Z-data-tiny-3"]


def test_a_second_run_on_the_same_out_folder_is_refused_while_the_first_runs(reference,
                                                                             tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--models", "baselines/logreg", "--data-dir", str(reference["raw"]),
            "--profile", "tiny", "--seeds", "0", "--out", str(out), "--no-report"]
    first = Bench(*args)
    first.wait_for(lambda: first.saw("[1/1]"))
    assert main(args + ["--overwrite", "--quiet"]) == 2
    assert f"in use by PID {first.process.pid}" in capsys.readouterr().err
    assert first.process.poll() is None  # the refused run let the first one be
    first.kill_after(0)
