"""Run folders: where a run's records, meta and report live, how a run claims one, resumes
one, and how reports/latest points at the newest."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

# CCPBENCH_REPORTS moves the default run folders (tests start real processes with it).
REPORTS_ROOT = Path(os.environ.get("CCPBENCH_REPORTS",
                                   Path(__file__).resolve().parents[1] / "reports"))


def new_run_dir(name: str) -> Path:
    """A folder of its own under reports/runs/, named by the UTC second; a run that starts in
    the same second as another (or finds the name taken) gets -2, -3, ...: mkdir either
    creates the folder or fails, so two processes never get the same one."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = REPORTS_ROOT / "runs"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        run_dir = root / (f"{stamp}-{name}" + (f"-{attempt}" if attempt > 1 else ""))
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name under {root} for {stamp}-{name}")


def prepare_run_dir(out: str | None, name: str, overwrite: bool, resume: bool) -> Path:
    """The run folder, held by this process until it exits (ccp.folder_lock.claim): a second
    run given the same --out stops with an error naming the first's PID."""
    from bench.harness import META_FILE, RESULTS_FILE
    from ccp.folder_lock import claim

    run_dir = new_run_dir(name) if out is None else Path(out)
    claim(run_dir)
    results = run_dir / RESULTS_FILE
    if results.exists() and not (overwrite or resume):
        raise ValueError(f"{run_dir} already holds results; pass --overwrite or --resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for stale in (results, run_dir / META_FILE):
            stale.unlink(missing_ok=True)
    return run_dir


# What must not change between a run and its --resume: results of other data, budgets or
# network settings would be pooled into one mean and one "paired" comparison.
RESUME_MUST_MATCH = ("fingerprint", "profile", "neural_settings", "model_keywords")


def check_resumable(run_dir: Path, previous: dict, fingerprint: str | None, profile: dict,
                    neural_settings: dict, model_keywords: dict | None = None) -> None:
    """fingerprint None: check the rest only (before the data is loaded, which can take long)."""
    now = {"fingerprint": fingerprint, "profile": profile, "neural_settings": neural_settings,
           "model_keywords": model_keywords or {}}
    now = json.loads(json.dumps(now, default=str))  # compare as meta.json stores them
    differ = [key for key in RESUME_MUST_MATCH if key in previous and now[key] is not None
              and previous[key] != now[key]]
    if differ:
        detail = "; ".join(f"{key}: {previous[key]!r} then, {now[key]!r} now" for key in differ)
        raise ValueError(f"cannot --resume {run_dir}: its results were made with another "
                         f"{', '.join(differ)} ({detail}); use a new --out or the same "
                         "--dataset/--data-dir/--profile/--set as that run")


def resumed_meta(previous: dict, current: dict) -> dict:
    """meta.json of a resumed run: this invocation's fields, the union of seeds and models,
    the earlier invocations kept, and latency runs appended to the folder kept."""
    merged = dict(current)
    merged["seeds"] = sorted(set(previous.get("seeds") or []) | set(current["seeds"]))
    merged["models"] = sorted(set(previous.get("models") or []) | set(current["models"]))
    earlier = previous.get("earlier_invocations") or []
    merged["earlier_invocations"] = earlier + [
        {k: previous.get(k) for k in ("command", "git_commit", "seeds", "models",
                                      "started_utc", "finished_utc")}]
    if previous.get("latency_runs"):
        merged["latency_runs"] = previous["latency_runs"]
    return merged


def link_latest(run_dir: Path) -> None:
    """reports/latest points at the newest run folder under reports/runs/ (a relative symlink,
    replaced atomically); a folder elsewhere (--out /tmp/...) leaves the link alone."""
    if (REPORTS_ROOT / "runs").resolve() not in Path(run_dir).resolve().parents:
        return
    latest = REPORTS_ROOT / "latest"
    try:
        target = os.path.relpath(run_dir.resolve(), REPORTS_ROOT.resolve())
        tmp = REPORTS_ROOT / ".latest.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, latest)
    except OSError as error:
        print(f"note: could not link reports/latest: {error}", file=sys.stderr)


def build_report(run_dir: Path) -> None:
    try:
        from bench.report import build
    except ModuleNotFoundError:
        return
    paths = build(run_dir)
    for path in paths:
        print(f"report: {path}")
