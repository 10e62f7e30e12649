"""Reports: built from results.jsonl + meta.json alone, deterministic, complete, and honest.

Most tests use a small in-memory data set with known click and conversion probabilities and
fake models of graded quality, run through the real harness, so the records are exactly what a
real run writes, without waiting for real models or data generation.
"""

from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest

from bench import harness
from ccp.data.dataset import Dataset, Ragged, Split
from ccp.data.schema import DENSE_FEATURES, IMPRESSION_SINGLE, USER_SINGLE
from ccp.model import ModelSpec

# ---------------------------------------------------------------- a small run, built in memory


def _split(name: str, rng: np.random.Generator, n_requests: int, per: int = 12) -> Split:
    n = n_requests * per
    request = np.repeat(np.arange(n_requests), per)
    user_codes = np.zeros((n_requests, len(USER_SINGLE)), dtype=np.int64)
    # Users 2..61 known, one request in five from a rare user (code 1).
    user_codes[:, 0] = np.where(rng.random(n_requests) < 0.2, 1,
                                rng.integers(2, 62, n_requests))
    user_effect = rng.normal(0, 0.5, n_requests)[request]
    item_effect = rng.normal(0, 1.0, n)
    p_click = 1 / (1 + np.exp(-(-2.3 + item_effect + user_effect)))
    p_conversion = 1 / (1 + np.exp(-(-2.0 + 0.8 * item_effect + rng.normal(0, 0.7, n))))
    click = (rng.random(n) < p_click).astype(np.int8)
    purchase = (click & (rng.random(n) < p_conversion)).astype(np.int8)
    empty = Ragged(np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                   np.zeros(0, dtype=np.float32))
    empty_users = Ragged(np.zeros(n_requests + 1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                         np.zeros(0, dtype=np.float32))
    return Split(name=name, click=click, purchase=purchase, sample_id=np.arange(n),
                 request=request, item_codes=np.zeros((n, len(IMPRESSION_SINGLE)), np.int64),
                 item_multi={"210": empty}, dense=np.zeros((n, len(DENSE_FEATURES)), np.float32),
                 request_key=np.array([f"{name}{i:06d}" for i in range(n_requests)]),
                 user_codes=user_codes, user_multi={"109_14": empty_users},
                 p_click=p_click, p_conversion=p_conversion)


def make_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    splits = {name: _split(name, rng, size) for name, size in
              (("train", 300), ("valid", 150), ("test", 400))}
    info = {"rows": {k: len(s) for k, s in splits.items()},
            "requests": {k: s.n_requests for k, s in splits.items()},
            "clicks": {k: int(s.click.sum()) for k, s in splits.items()},
            "conversions": {k: int((s.click & s.purchase).sum()) for k, s in splits.items()},
            "purchase_without_click": {"train": 0, "test": 0},
            "settings": {"min_count": 1, "keep_purchase_without_click": False},
            "split_rule": "made up in memory for tests",
            "synthetic": {"profile": "test", "seed": seed, "rates_raised": True,
                          "oracle": {"test_half": {"rows": 4800, "ctr_auc": 0.7,
                                                   "cvr_auc": 0.7, "ctcvr_auc": 0.75}}}}
    return Dataset("synthetic-test", f"fp-test-{seed}", splits["train"], splits["valid"],
                   splits["test"], {}, info)


class NoisyTruth:
    """Scores the true probabilities plus noise: less noise, better AUC (a graded fake model)."""

    OUTPUTS_HOW = {"ctr": "own head", "cvr": "own head", "ctcvr": "pCTR x pCVR"}

    def __init__(self, noise: float = 1.0, stream: int = 0):
        self.noise, self.stream = noise, stream
        self.seed = 0

    def fit(self, data, ctx):
        self.seed = ctx.seed

    def predict(self, split):
        rng = np.random.default_rng([self.stream, self.seed])

        def noisy(p):
            logit = np.log(p / (1 - p)) + rng.normal(0, self.noise, len(p))
            return 1 / (1 + np.exp(-logit))

        ctr, cvr = noisy(split.p_click), noisy(split.p_conversion)
        return {"ctr": ctr, "cvr": cvr, "ctcvr": ctr * cvr}

    def n_params(self):
        return int(1000 / self.noise)


SPECS = [
    ModelSpec("lgbm_fake", "baselines", "report_fake_models:NoisyTruth", "fake GBDT",
              {"noise": 1.5}, group="GBDT"),
    ModelSpec("mmoe_fake", "neural", "report_fake_models:NoisyTruth", "fake neural",
              {"noise": 0.4}, group="neural"),
    ModelSpec("esmm_fake", "neural", "report_fake_models:NoisyTruth", "fake neural, as good",
              {"noise": 0.4, "stream": 1}, group="neural"),
    ModelSpec("constant", "baselines", "baselines.constant:ConstantPrior", "floor",
              group="floor"),
]


def make_run(run_dir, seeds=(0,), with_latency=True):
    """A run folder written by the real harness and meta code, from fake models."""
    from bench import meta
    from ccp.profiles import get_profile

    module = types.ModuleType("report_fake_models")
    module.NoisyTruth = NoisyTruth
    sys.modules["report_fake_models"] = module
    data = make_dataset()
    profile = get_profile("tiny")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_meta = meta.collect(["run", "--models", "fake"], dataset=data.name,
                            fingerprint=data.fingerprint, data_info=data.info,
                            profile=profile.__dict__, seeds=list(seeds), threads=1,
                            models=[s.key for s in SPECS], started_utc="2025-01-01T00:00:00Z")
    run_meta["finished_utc"] = "2025-01-01T00:01:00Z"
    (run_dir / "meta.json").write_text(json.dumps(run_meta, default=str))
    harness.run_suite(SPECS, data, profile, seeds, run_dir, threads=1, progress=False)
    if with_latency:
        # Two serving paths and two thread counts, shaped like bench.latency's records.
        for key, p50 in (("baselines/lgbm_fake", 0.8), ("neural/mmoe_fake", 3.0),
                         ("neural/esmm_fake", 2.5)):
            for n in (100, 1000):
                # int8: fastest, and within 1e-5 here, but reduced precision: never picked.
                for path, slower, diff in (("library", 1.5, 0.0), ("fast", 1.0, 1e-7),
                                           ("int8", 0.5, 5e-6)):
                    for threads, speedup in ((1, 1.0), (2, 0.7)):
                        ms = p50 * slower * speedup * n / 1000
                        harness.append_record(run_dir, {
                            "kind": "latency", "model": key, "n_candidates": n,
                            "max_abs_diff_vs_library": diff,
                            "threads": threads, "path": path, "p50_ms": ms,
                            "p99_ms": 1.5 * ms, "mean_ms": 1.1 * ms,
                            "assembly_p50_ms": 0.1, "candidates_per_s": n / (1.1 * ms / 1000),
                            "repeats": 50, "error": None})
    return run_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from bench.report import build

    run_dir = make_run(tmp_path_factory.mktemp("report") / "run", seeds=(0, 1))
    paths = build(run_dir)
    return run_dir, paths


# ---------------------------------------------------------------- the files


def test_build_writes_markdown_html_and_every_figure(built):
    run_dir, paths = built
    names = {p.relative_to(run_dir).as_posix() for p in paths}
    assert {"report.md", "report.html"} <= names
    figures = {n for n in names if n.startswith("figures/")}
    assert figures == {"figures/auc.png", "figures/auc_vs_latency.png",
                       "figures/training_time.png", "figures/roc.png",
                       "figures/reliability.png"}
    for path in paths:
        assert path.stat().st_size > 0
    md = (run_dir / "report.md").read_text()
    for figure in figures:
        assert f"]({figure})" in md  # relative links, so the folder can move
    assert str(run_dir) not in md


def test_report_contents_follow_the_records(built):
    from bench.report.results import load_run

    run_dir, _ = built
    md = (run_dir / "report.md").read_text()
    run = load_run(run_dir)
    records = [r for r in harness.read_records(run_dir) if r.get("task") == "ctcvr"]
    valid = {m: np.mean([r["auc"] for r in records if r["model"] == m and r["split"] == "valid"])
             for m in {r["model"] for r in records if r["model"] != "baselines/constant"}}
    best = max(valid, key=valid.get)
    # The summary names the CTCVR model best on validation; its mean test AUC is in bold.
    mean = np.mean([r["auc"] for r in records if r["model"] == best and r["split"] == "test"])
    assert f"best on validation `{best}`" in md
    # The fake neural models are far better than the fake GBDT: the verdict says so.
    line = next(x for x in md.split("## Summary")[1].splitlines() if x.startswith("- **CTCVR"))
    groups = line.split("Best of group vs best of group: ")[1]
    assert groups.startswith(f"`{best}` (neural, validation AUC {valid[best]:.4f}) and "
                             "`baselines/lgbm_fake` (GBDT")
    assert "test AUC difference +0.1" in groups and ": significant;" in groups
    assert f"**{mean:.4f} ± " in md
    for heading in ("## Summary", "## Leaderboard", "## Metric crosswalk", "## Oracle gap",
                    "## Calibration and GAUC", "## Costs", "## Run and data", "## Figures"):
        assert heading in md
    # Header facts come from meta.json.
    assert run.meta["fingerprint"] in md and "2025-01-01T00:01:00Z" in md
    assert "Ali-CCP real, train file" in md  # synthetic rates beside the real ones
    # Latency at 1,000 candidates: fewest threads, fastest path (mmoe_fake: 3.0 ms, p99 4.5).
    assert "3.00 (4.50), fast" in md
    assert "not measured" in md  # the constant floor has no latency record


def test_markdown_is_identical_when_rebuilt_from_copied_inputs(built, tmp_path):
    from bench.report import build

    run_dir, _ = built
    copy = tmp_path / "elsewhere" / "copied-run"
    copy.mkdir(parents=True)
    for name in ("results.jsonl", "meta.json"):
        shutil.copy(run_dir / name, copy / name)
    build(copy)
    assert (copy / "report.md").read_text() == (run_dir / "report.md").read_text()
    # The figures are byte-identical too (no timestamps in the PNGs).
    assert (copy / "figures/auc.png").read_bytes() == (run_dir / "figures/auc.png").read_bytes()


def test_html_is_self_contained(built):
    import re

    run_dir, _ = built
    page = (run_dir / "report.html").read_text()
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:|//|figures/)', page)
    assert '<table id="leaderboard">' in page


# ---------------------------------------------------------------- headless Chromium


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or \
        shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None,
                    reason="chromium not installed (CI installs it: apt-get install chromium)")
def test_html_renders_in_headless_chromium(built, tmp_path):
    import subprocess
    from html.parser import HTMLParser

    run_dir, _ = built
    args = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'prof'}",
            "--virtual-time-budget=5000"]
    dumped = subprocess.run(args + ["--dump-dom", (run_dir / "report.html").as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert dumped.returncode == 0, dumped.stderr[-2000:]

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.images, self.cells = [], [], 0

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "table":
                self.tables.append(attrs.get("id"))
            if tag == "img":
                self.images.append(attrs)
            if tag == "td":
                self.cells += 1

    dom = Collect()
    dom.feed(dumped.stdout)
    assert "leaderboard" in dom.tables and dom.cells > 20
    figures = [i for i in dom.images if i.get("class") == "figure"]
    assert len(figures) == 5

    # The images must decode: a screenshot-free check via the DOM is not enough, so render a
    # page that reports each image's natural size after load.
    probe = tmp_path / "probe.html"
    page = (run_dir / "report.html").read_text().replace(
        "</body>", "<script>window.onload=()=>{document.title=[...document.images]"
                   ".map(i=>i.naturalWidth).join(',')}</script></body>")
    probe.write_text(page)
    titled = subprocess.run(args + ["--dump-dom", probe.as_uri()], capture_output=True,
                            text=True, timeout=120)
    import re

    widths = re.search(r"<title>([\d,]+)</title>", titled.stdout)
    assert widths, titled.stdout[:500]
    assert all(int(w) > 100 for w in widths.group(1).split(","))

    shot = tmp_path / "shot.png"
    subprocess.run(args + [f"--screenshot={shot}", "--window-size=1300,2000",
                           (run_dir / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.exists() and shot.stat().st_size > 10_000


# ---------------------------------------------------------------- numbers


def test_leaderboard_marks_best_not_significant_over_runner_up(built):
    """mmoe_fake and esmm_fake are equally good (same noise level, other draws)."""
    from bench.report.results import load_run
    from bench.report.verdicts import BEST, run_verdicts
    from ccp import stats

    run_dir, _ = built
    run = load_run(run_dir)
    close = next(v for v in run_verdicts(run) if v.task == "ctr" and BEST in v.kinds)
    assert {close.a.model, close.b.model} == {"neural/mmoe_fake", "neural/esmm_fake"}
    low, high = close.estimate.interval()
    assert close.significant is False and low < 0 < high
    md = (run_dir / "report.md").read_text()
    board = md.split("## Leaderboard")[1].split("## Figures")[0]
    best_row = next(line for line in board.splitlines() if line.startswith(f"| `{close.a.model}`"))
    ctr_cell = best_row.split(" | ")[2]  # model, group, CTR AUC
    assert ctr_cell.startswith("**") and "**†" in ctr_cell, ctr_cell
    assert "** †" not in md
    # Against the far weaker fake GBDT, the gap is significant.
    far = stats.paired_difference(run.model("neural/mmoe_fake").tasks["ctr"].scores,
                                  run.model("baselines/lgbm_fake").tasks["ctr"].scores)
    assert far.interval()[0] > 0 and far.p_value < 0.001


def test_pooled_seed_interval_combines_seeds_and_resampling(built):
    from bench.report.results import load_run
    from ccp import stats

    run_dir, _ = built
    run = load_run(run_dir)
    records = [r for r in harness.read_records(run_dir) if r.get("model") == "neural/mmoe_fake"
               and r.get("task") == "cvr" and r["split"] == "test"]
    assert len(records) == 2
    result = run.model("neural/mmoe_fake").tasks["cvr"]
    expected = stats.combine([r["auc"] for r in records], [r["auc_bootstrap"] for r in records])
    assert (result.ci_low, result.ci_high) == pytest.approx(expected.interval())
    assert result.estimate.seeds_included
    assert result.auc == pytest.approx(np.mean([r["auc"] for r in records]))
    assert result.auc_std == pytest.approx(np.std([r["auc"] for r in records], ddof=1))


def test_pareto_front():
    from bench.report.figures import pareto_front

    points = [(1.0, 0.60, "a"), (2.0, 0.58, "b"), (3.0, 0.65, "c"), (0.5, 0.55, "d"),
              (3.0, 0.64, "e")]
    assert pareto_front(points) == ["d", "a", "c"]


def test_latency_falls_back_to_batch_prediction_clearly_labelled(tmp_path):
    from bench.report import build

    run_dir = make_run(tmp_path / "run", with_latency=False)
    build(run_dir)
    md = (run_dir / "report.md").read_text()
    assert "serving latency was **not measured**" in md
    assert "not measured" in md.split("## Leaderboard")[1].split("## Figures")[0]


def test_latency_records_show_speedups_over_the_plain_forward_of_the_same_request():
    from bench.report.render import Table
    from bench.report.sections import latency_records

    def record(path, p50, n=1000, threads=1, **extra):
        return {"kind": "latency", "model": "neural/m", "path": path, "n_candidates": n,
                "threads": threads, "p50_ms": p50, "p99_ms": p50, "repeats": 9,
                "max_abs_diff_vs_library": 1e-8, "error": None, **extra}

    records = [record("eager_per_candidate", 20.0), record("eager", 16.0),
               record("compiled", 8.0), record("compiled", 4.0, threads=2),
               record("bf16", 5.0, auc_change_ctr=0.0001, auc_change_cvr=-0.0002,
                      auc_change_ctcvr=0.0)]
    table = next(b for b in latency_records(records)[0].blocks if isinstance(b, Table))
    rows = {(r[1], r[3]): dict(zip(table.header, r, strict=True)) for r in table.rows}
    compiled = rows[("compiled", "1")]
    assert compiled["speed-up vs eager_per_candidate"] == "2.50×"
    assert compiled["speed-up vs eager"] == "2.00×"
    # No reference measured on 2 threads: no ratio across thread counts.
    assert rows[("compiled", "2")]["speed-up vs eager"] == "—"
    assert rows[("bf16", "1")]["test AUC change"] == "+0.00010 / -0.00020 / +0.00000"
    assert compiled["test AUC change"] == "—"


def test_batch_prediction_time_is_in_ms_per_1000_rows(built):
    from bench.report import fmt
    from bench.report.results import load_run

    run_dir, _ = built
    records = [r for r in harness.read_records(run_dir)
               if r.get("kind", "accuracy") == "accuracy" and r.get("predict_s") is not None]
    model = load_run(run_dir).models[0]
    mine = {r["seed"]: r for r in records if r["model"] == model.model}
    # predict_s seconds for predict_rows rows: ms per row, times 1,000 rows
    expected = np.mean([r["predict_s"] * 1000 / r["predict_rows"] * 1000 for r in mine.values()])
    assert model.predict_ms_per_1k == pytest.approx(expected)
    md = (run_dir / "report.md").read_text()
    costs = md.split("## Costs")[1]
    assert f"| `{model.model}` | " in costs
    row = next(line for line in costs.splitlines() if line.startswith(f"| `{model.model}` |"))
    assert row.split(" | ")[2] == fmt.ms(expected)


def test_results_of_another_data_set_are_not_pooled(tmp_path):
    from bench.report import build

    run_dir = make_run(tmp_path / "run", with_latency=False)
    records = harness.read_records(run_dir)
    stray = {**records[0], "seed": 7, "fingerprint": "another-data"}
    harness.append_record(run_dir, stray)
    with pytest.raises(ValueError, match="more than one data set.*another-data"):
        build(run_dir)


def test_crosswalk_says_when_kept_purchases_without_click_break_the_match(tmp_path):
    from bench.report import build

    run_dir = make_run(tmp_path / "run", with_latency=False)
    build(run_dir)
    crosswalk = (run_dir / "report.md").read_text().split("## Metric crosswalk")[1]
    assert "equal to ours because purchase-without-click rows are dropped" in crosswalk
    meta_path = run_dir / "meta.json"
    run_meta = json.loads(meta_path.read_text())
    run_meta["data_info"].setdefault("settings", {})["keep_purchase_without_click"] = True
    meta_path.write_text(json.dumps(run_meta))
    build(run_dir)
    crosswalk = (run_dir / "report.md").read_text().split("## Metric crosswalk")[1]
    assert "because purchase-without-click rows are dropped" not in crosswalk
    assert "**not** equal to ours in this run" in crosswalk


def test_a_model_with_the_best_models_scores_is_not_its_runner_up(built):
    import dataclasses

    from bench.report.results import load_run
    from bench.report.verdicts import BEST, task_verdicts

    run_dir, _ = built
    models = load_run(run_dir).models
    before = next(v for v in task_verdicts(models, "ctr") if BEST in v.kinds)
    # Named to sort before the best, so a tie on AUC would rank it first or second.
    twin = dataclasses.replace(before.a, model="a_twin/same_ctr_model")
    after = next(v for v in task_verdicts([*models, twin], "ctr") if BEST in v.kinds)
    assert {after.a.model, *after.same_as_a} == {before.a.model, twin.model}
    assert after.b.model == before.b.model
    assert after.difference == pytest.approx(before.difference)


def _with_conversion(run_dir, skipped, repaired):
    meta_path = run_dir / "meta.json"
    run_meta = json.loads(meta_path.read_text())
    examples = [["sample_skeleton_train.csv", 4 + i, "field click: label \"x\" is not a number"]
                for i in range(skipped)]
    run_meta["data_info"]["conversion"] = {
        "settings": {"lenient": bool(skipped)},
        "files": {"sample_skeleton_train.csv": {"lines": 60, "skipped_by_kind": {
                      "format": skipped}},
                  "common_features_train.csv": {"lines": 9, "skipped_by_kind": {}}},
        "skipped_lines": skipped, "skipped_examples": examples,
        "repaired_lines": repaired, "repaired_triples": 2 * repaired,
        "repair_examples": [["common_features_train.csv", 3, "field 101 appears 2 times"]]
        if repaired else []}
    meta_path.write_text(json.dumps(run_meta))


def test_skipped_and_repaired_input_lines_reach_the_report(tmp_path):
    from bench.report import build

    run_dir = make_run(tmp_path / "run", with_latency=False)
    _with_conversion(run_dir, skipped=3, repaired=1)
    build(run_dir)
    md = (run_dir / "report.md").read_text()
    data = md.split("## Run and data")[1].split("## Leaderboard")[0]
    assert "69 read from 2 files" in data
    assert "**3 skipped** (format 3)" in data and "**1 repaired** (2 repeated" in data
    assert "| sample_skeleton_train.csv | 6 | field click" in data
    assert "| common_features_train.csv | 3 | field 101 appears 2 times |" in data
    summary = md.split("## Summary")[1].split("## Run and data")[0]
    assert "3 input line(s) were skipped and 1 repaired" in summary


def test_a_clean_read_says_nothing_was_skipped(tmp_path):
    from bench.report import build

    run_dir = make_run(tmp_path / "run", with_latency=False)
    _with_conversion(run_dir, skipped=0, repaired=0)
    build(run_dir)
    md = (run_dir / "report.md").read_text()
    assert "none skipped; none repaired." in md
    assert "input line(s) were skipped" not in md


def test_failed_model_is_listed_and_bad_input_is_named(tmp_path):
    from bench.report import build

    run_dir = make_run(tmp_path / "run", with_latency=False)
    harness.append_record(run_dir, {"kind": "accuracy", "model": "neural/broken", "seed": 0,
                                    "task": None, "auc": None, "error": "RuntimeError: boom"})
    build(run_dir)
    md = (run_dir / "report.md").read_text()
    assert "## Failed runs" in md and "RuntimeError: boom" in md

    with open(run_dir / "results.jsonl", "a") as out:
        out.write('{"kind": "accuracy", "model": "x", "seed": 0, "task": "ctr"}\n')
    with pytest.raises(ValueError, match=r"results.jsonl, line \d+: field 'auc' missing"):
        build(run_dir)
    with open(run_dir / "results.jsonl", "a") as out:
        out.write("{not json\n")
    with pytest.raises(ValueError, match=r"line \d+: not JSON"):
        build(run_dir)


def test_report_command_rebuilds_and_reports_missing_folder(built, tmp_path, capsys):
    from bench.cli import main

    run_dir, _ = built
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.jsonl", "meta.json"):
        shutil.copy(run_dir / name, copy / name)
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").exists()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err


# ---------------------------------------------------------------- the crosswalk


def test_crosswalk_entries_compute_what_they_claim():
    """Each entry's stated rows/label/score must be exactly what our column computes."""
    from bench.report.crosswalk import ENTRIES, LABELS, ROWS, SCORES
    from ccp.tasks import TASKS

    rng = np.random.default_rng(0)
    click = (rng.random(400) < 0.3).astype(np.int8)
    purchase = (click & (rng.random(400) < 0.3)).astype(np.int8)
    purchase[:5] = 1  # some purchase-without-click rows
    click[:5] = 0
    dropped = ~((purchase == 1) & (click == 0))
    stated_labels = {"click": click, "purchase": purchase, "click_and_purchase": click & purchase}
    for entry in ENTRIES:
        assert entry.rows in ROWS and entry.label in LABELS and entry.score in SCORES
        task = TASKS[entry.ours]
        assert task.prediction == entry.score, entry
        stated_rows = click == 1 if entry.rows == "clicked" else np.ones(len(click), bool)
        keep = dropped if entry.needs_pwc_dropped else np.ones(len(click), bool)
        c, p = click[keep], purchase[keep]
        ours = task.rows(c)
        assert (ours == stated_rows[keep]).all(), entry
        assert (task.labels(c, p)[ours] == stated_labels[entry.label][keep][ours]).all(), entry
        if entry.needs_pwc_dropped:
            # ...and the match really depends on dropping those rows.
            assert not (task.labels(click, purchase) == stated_labels[entry.label]).all()
    # The ESMM paper's CVR AUC is ours on clicked rows, and the entire-space column exists.
    assert {e.ours for e in ENTRIES if "ESMM" in e.source and e.their_name == "CVR AUC"} == {
        "cvr"}
    assert any(e.ours == "cvr_entire" for e in ENTRIES)


# ---------------------------------------------------------------- end to end


def test_tiny_profile_run_leaves_every_report_file(tiny_raw_dir, tmp_path, monkeypatch):
    """`python -m bench run` on the tiny synthetic data writes results, meta and the report."""
    from bench import run_folder
    from bench.cli import main

    monkeypatch.setattr(run_folder, "REPORTS_ROOT", tmp_path / "reports")
    (tmp_path / "reports").mkdir()
    out = tmp_path / "reports" / "runs" / "tiny"
    code = main(["run", "--models", "baselines/constant", "--dataset", "synthetic",
                 "--data-dir", str(tiny_raw_dir), "--profile", "tiny", "--out", str(out),
                 "--quiet"])
    assert code == 0
    for name in ("results.jsonl", "meta.json", "report.md", "report.html", "figures/auc.png",
                 "figures/auc_vs_latency.png", "figures/training_time.png", "figures/roc.png",
                 "figures/reliability.png"):
        assert (out / name).is_file(), name
    assert (tmp_path / "reports" / "latest").resolve() == out.resolve()
    md = (out / "report.md").read_text()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["fingerprint"] in md and "Ali-CCP real, train file" in md
    # The oracle AUCs of the synthetic data appear, as the harness measured them on test rows.
    ctr = next(r for r in harness.read_records(out) if r.get("task") == "ctr"
               and r["split"] == "test")
    assert f"CTR {ctr['oracle_auc']:.4f}" in md
    # Beside it, the achievable ceiling the generator wrote into the data's info.
    ceiling = meta["data_info"]["synthetic"]["oracle"]["test_half"]["achievable_ctr_auc"]
    assert f"Achievable ceilings: CTR {ceiling:.4f}" in md
    assert ctr["resampling_unit"] == "user" and ctr["resampling_rule"] in md


def test_constant_outputs_are_recognised_and_not_ranked(built):
    import dataclasses

    from bench.report.results import load_run, ranked

    run_dir, _ = built
    run = load_run(run_dir)
    floor = run.model("baselines/constant").tasks["ctr"]
    real = run.model("neural/mmoe_fake").tasks["ctr"]
    assert floor.constant_output and not real.constant_output
    assert "baselines/constant" not in [m.model for m in ranked(run.models, "ctr")]
    # Declared by the model, or not: "assumes a constant CVR" is a real (derived) output.
    declared = dataclasses.replace(real, prediction_how="train CVR prior (constant)")
    derived = dataclasses.replace(real, prediction_how="min(1, pCTCVR / train CVR prior): "
                                                       "assumes a constant CVR")
    assert declared.constant_output and not derived.constant_output
    md = (run_dir / "report.md").read_text()
    assert "0.5000 (constant output)" in md


# ---------------------------------------------------------------- verdicts (ccp.stats rules)


def _verdict_lines(md: str) -> list[str]:
    summary = md.split("## Summary")[1].split("## Run and data")[0]
    return [line for line in summary.splitlines() if line.startswith("- **")]


def test_every_verdict_line_states_choice_interval_corrected_p_and_power(built):
    from bench.report.results import load_run
    from bench.report.verdicts import run_verdicts

    run_dir, _ = built
    md = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    verdicts = run_verdicts(load_run(run_dir))
    assert len(verdicts) >= 4
    lines = _verdict_lines(md)
    sentences = [s for line in lines for s in line.split(". ") if "chosen on validation" in s]
    assert len(sentences) == len(verdicts)
    for sentence, v in zip(sentences, verdicts, strict=True):
        low, high = v.estimate.interval()
        assert f"`{v.a.model}`" in sentence and f"`{v.b.model}`" in sentence
        assert f"95% CI [{low:.4f}, {high:.4f}]" in sentence, sentence
        assert "2 seeds and resampling combined" in sentence
        assert f"Holm-corrected p = {v.p_adjusted:.4f}" in sentence or "p = < 0.0001" in sentence
        assert f"smallest detectable difference {v.detectable:.4f}" in sentence
        assert ("below it: **too small to see here**" in sentence) == (
            v.too_small_to_see and not v.significant)
        assert "above it" in sentence or v.too_small_to_see
    assert "Holm-corrected p" in html and "too small to see here" in html
    protocol = md.split("## Statistical protocol")[1].split("## Figures")[0]
    for i, v in enumerate(verdicts, start=1):
        assert f"| {i} | {v.hypothesis} |" in protocol
    assert "Resampling unit: user (field 101), rows of rare or absent users by request" in md


def _rebuilt_with(run_dir, copy, change):
    """A copy of the run folder whose records are `change(record)`, its report rebuilt."""
    import shutil

    from bench.report import build

    copy.mkdir()
    shutil.copy(run_dir / "meta.json", copy / "meta.json")
    with open(copy / "results.jsonl", "w") as out:
        for record in harness.read_records(run_dir):
            out.write(json.dumps(change(record)) + "\n")
    build(copy)
    return copy


def test_representatives_are_chosen_on_validation_not_test(built, tmp_path):
    """Give the far worse fake GBDT the best validation AUC: it becomes the "best" the report
    compares (and bolds), though its test AUC is the lowest."""
    def changed(record):
        if record.get("split") == "valid" and record["model"] == "baselines/lgbm_fake":
            return {**record, "auc": 0.99}
        return record

    copy = _rebuilt_with(built[0], tmp_path / "run", changed)
    md = (copy / "report.md").read_text()
    for line in _verdict_lines(md):
        assert "best on validation `baselines/lgbm_fake` (GBDT)" in line
        assert "Best vs runner-up and best of group vs best of group: `baselines/lgbm_fake` " \
               "(GBDT, validation AUC 0.9900)" in line
    board = md.split("## Leaderboard")[1].split("###")[0]
    row = next(x for x in board.splitlines() if x.startswith("| `baselines/lgbm_fake`"))
    assert row.split(" | ")[2].startswith("**")


def test_the_correction_is_applied_to_every_mark(built):
    from bench.report.results import load_run
    from bench.report.verdicts import run_verdicts
    from ccp import stats

    run_dir, _ = built
    verdicts = run_verdicts(load_run(run_dir))
    raw = [v.p_value for v in verdicts]
    assert [v.p_adjusted for v in verdicts] == stats.holm(raw)
    assert any(v.p_adjusted > v.p_value for v in verdicts)
    # The mark follows the corrected p-value: raw 0.03 is significant alone, not after Holm.
    close = verdicts[0]
    close.estimate = stats.Estimate(0.01, 0.01 / sp_norm_ppf(1 - 0.03 / 2), 0.003, None,
                                    float("inf"), 1)
    close.p_adjusted = None
    assert close.p_value == pytest.approx(0.03)
    for v, p in zip(verdicts, stats.holm([v.p_value for v in verdicts]), strict=True):
        v.p_adjusted = p
    assert close.p_adjusted > 0.05 and close.significant is False


def sp_norm_ppf(q):
    from scipy.stats import norm

    return norm.ppf(q)


def test_one_seed_verdicts_say_training_variance_is_not_included(tmp_path):
    from bench.report import build

    run_dir = make_run(tmp_path / "run", seeds=(0,), with_latency=False)
    build(run_dir)
    md = (run_dir / "report.md").read_text()
    for line in _verdict_lines(md):
        assert "**training variance not included** (one seed)" in line
    assert "one seed: training variance is not included" in md


def test_achievable_ceiling_from_the_data_info_reaches_the_report(built, tmp_path):
    import shutil

    from bench.report import build

    run_dir, _ = built
    copy = tmp_path / "run"
    copy.mkdir()
    shutil.copy(run_dir / "results.jsonl", copy / "results.jsonl")
    meta = json.loads((run_dir / "meta.json").read_text())
    oracle = {r["task"]: r["oracle_auc"] for r in harness.read_records(run_dir)
              if r.get("split") == "test" and r.get("oracle_auc")}
    half = meta["data_info"]["synthetic"]["oracle"]["test_half"]
    for task in ("ctr", "cvr", "ctcvr"):
        half[f"{task}_auc"] = oracle[task]
        half[f"achievable_{task}_auc"] = 0.5 + 0.8 * (oracle[task] - 0.5)
    (copy / "meta.json").write_text(json.dumps(meta))
    build(copy)
    md = (copy / "report.md").read_text()
    assert "of the achievable ceiling's lift over 0.5" in md
    assert "share of achievable" in md and "Achievable ceilings: CTR " in md
    assert "| test half, achievable |" in md


def test_groups_are_the_declared_ones_in_the_records_not_guessed_from_names(built, tmp_path):
    """A model named like a GBDT whose records say "linear" is reported as linear."""
    def changed(record):
        if record["model"] == "baselines/lgbm_fake" and record["kind"] == "accuracy":
            assert record["group"] == "GBDT"  # as its spec declares
            return {**record, "group": "linear"}
        return record

    copy = _rebuilt_with(built[0], tmp_path / "run", changed)
    board = (copy / "report.md").read_text().split("## Leaderboard")[1].split("###")[0]
    row = next(x for x in board.splitlines() if x.startswith("| `baselines/lgbm_fake`"))
    assert row.split(" | ")[1] == "linear"


def test_records_without_a_group_take_the_registry_declaration():
    from bench.report.results import group_of

    assert group_of({"model": "baselines/lgbm_ctr", "family": "baselines"}) == "GBDT"
    assert group_of({"model": "baselines/logreg", "family": "baselines"}) == "linear"
    assert group_of({"model": "neural/mmoe", "family": "neural"}) == "neural"
    assert group_of({"model": "baselines/xgb_gone", "family": "baselines"}) == "baselines"
