"""Run a study grid: generate each point's data, run its models through `bench run`'s own code
path (bench.cli.main(["run", ...]), one run folder per point), skip what is already done.

Study folder layout:
    study.json                       the grid, models, seeds, engine and points (written first)
    data/cvr<r>-rel<q>/              generated raw files (shared by the point's train sizes)
    runs/cvr<r>-rel<q>-n<rows>/      results.jsonl + meta.json, as `bench run` writes them
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.study.grid import Grid, data_name, point_name

STUDY_FILE = "study.json"


def registered_models(wanted: tuple[str, ...], quiet: bool = False) -> list[str]:
    """The registry keys of `wanted` (globs); names not registered are skipped with a note."""
    from bench.registry import select

    keys = []
    for pattern in wanted:
        try:
            keys += [s.key for s in select([pattern]) if s.key not in keys]
        except ValueError:
            if not quiet:
                print(f"note: {pattern} is not registered; the study runs without it",
                      file=sys.stderr)
    if not keys:
        raise ValueError(f"--models: none of {list(wanted)} is registered; "
                         "see `python -m bench list`")
    return keys


def ensure_data(folder: Path, grid: Grid, cvr: float, relatedness: float, data_seed: int,
                progress: bool) -> Path:
    """The point's raw files, generated unless a complete set with these settings is there."""
    from ccp.data import synth

    overrides = {"target_cvr": cvr, "relatedness": relatedness}
    info_path = folder / synth.INFO_NAME
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if (info.get("overrides") == overrides and info.get("seed") == data_seed
                and info.get("profile") == grid.synth_profile):
            return folder
    synth.generate(folder, grid.synth_profile, seed=data_seed, progress=progress,
                   overrides=overrides)
    return folder


def point_is_done(run_dir: Path, models: list[str], seeds: tuple[int, ...]) -> bool:
    from bench import harness

    if not (run_dir / harness.META_FILE).exists():
        return False
    done = harness.complete_pairs(harness.read_records(run_dir))
    return all((m, s) in done for m in models for s in seeds)


def run_argv(grid: Grid, point: dict, data_dir: Path, run_dir: Path, models: list[str],
             data_seed: int, engine: str, workers: int, quiet: bool) -> list[str]:
    sets = [*grid.budgets, ("max_train_rows", str(point["train_rows"]))]
    return ["run", "--dataset", "synthetic", "--data-dir", str(data_dir),
            "--data-seed", str(data_seed), "--profile", grid.run_profile,
            *[x for key, value in sets for x in ("--set", f"{key}={value}")],
            "--models", *models, "--seeds", ",".join(map(str, grid.seeds)),
            "--out", str(run_dir), "--resume", "--no-report", "--no-latency",
            "--engine", engine, "--workers", str(workers), *(["--quiet"] if quiet else [])]


def write_study_file(study_dir: Path, grid: Grid, models: list[str], data_seed: int,
                     engine: str, argv: list[str]) -> None:
    from bench.study.grid import REFERENCE
    from ccp import atomic

    path = study_dir / STUDY_FILE
    if path.exists():
        before = json.loads(path.read_text())
        if before.get("grid") != grid.name or before.get("data_seed") != data_seed:
            raise ValueError(f"{path}: made with --grid {before.get('grid')} and data seed "
                             f"{before.get('data_seed')}; use another folder")
        models = list(dict.fromkeys([*before.get("models", []), *models]))
    points = [{**p, "data": f"data/{data_name(p['cvr'], p['relatedness'])}",
               "run": f"runs/{point_name(p)}"} for p in grid.points()]
    atomic.write_json(path, {"grid": grid.name, "synth_profile": grid.synth_profile,
                             "run_profile": grid.run_profile, "budgets": dict(grid.budgets),
                             "seeds": list(grid.seeds), "models": models,
                             "reference": REFERENCE, "data_seed": data_seed,
                             "engine": engine, "command": ["python", "-m", "bench", *argv],
                             "points": points}, indent=2, sort_keys=True)


def run_study(study_dir: Path, grid: Grid, models: list[str], data_seed: int = 0,
              engine: str = "local", workers: int = 2, quiet: bool = False,
              argv: list[str] | None = None, jobs: int = 1) -> dict:
    """Run every point not yet complete; return {"ran": [...], "skipped": [...], "failed": [...]}.

    A point is complete when its run folder holds an error-free record of every task for
    every (model, seed): then neither its data nor its run is touched. With `jobs` > 1 that
    many points run at once, each a `python -m bench run` process at 1 thread (on 2 cores two
    1-thread fits do more than one 2-thread fit of these small networks); the records say
    the threads they ran with."""
    study_dir.mkdir(parents=True, exist_ok=True)
    write_study_file(study_dir, grid, models, data_seed, engine, argv or [])
    outcome = {"ran": [], "skipped": [], "failed": []}
    todo = []
    for point in grid.points():
        name = point_name(point)
        run_dir = study_dir / "runs" / name
        if point_is_done(run_dir, models, grid.seeds):
            outcome["skipped"].append(name)
            continue
        # Generated before any point runs: the points of one data set may run at once.
        data_dir = ensure_data(study_dir / "data" / data_name(point["cvr"],
                                                              point["relatedness"]),
                               grid, point["cvr"], point["relatedness"], data_seed,
                               not quiet)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        todo.append((name, point["train_rows"],
                     run_argv(grid, point, data_dir, run_dir, models, data_seed, engine,
                              workers, quiet)))
    for name, status in _run_points(todo, jobs, quiet):
        outcome["ran" if status == 0 else "failed"].append(name)
    return outcome


def _run_points(todo: list[tuple[str, int, list[str]]], jobs: int, quiet: bool):
    """(name, exit status) of each point's `bench run` ((name, train rows, argv) each): in
    this process, or `jobs` at once."""
    if jobs <= 1:
        from bench.cli import main as bench_main

        for i, (name, _, argv) in enumerate(todo, 1):
            if not quiet:
                print(f"study: point {i}/{len(todo)} {name}", file=sys.stderr, flush=True)
            yield name, bench_main(argv)
        return
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    def run(item):
        name, _, argv = item
        if not quiet:
            print(f"study: point {name} started", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", "bench", *argv, "--threads", "1", "--jobs", "1"]
        return name, subprocess.run(command, check=False).returncode

    # The largest train sizes first, so that no long point starts last.
    order = sorted(todo, key=lambda item: -item[1])
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(run, order)
