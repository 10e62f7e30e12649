"""The report's sections, as render blocks, computed from a loaded Run only."""

from __future__ import annotations

from bench.report import fmt
from bench.report.crosswalk import ENTRIES, LABELS, ROWS, SCORES
from bench.report.render import Bullets, Details, Heading, Para, Table
from bench.report.results import (
    LATENCY_CANDIDATES,
    MAIN_TASKS,
    TASK_ORDER,
    TASK_TITLES,
    ModelResult,
    Run,
    best_vs_runner_up,
    compare,
    ranked,
)

# Ali-CCP's real label counts (shared/ALICCP.md, full scans), shown beside synthetic rates.
ALICCP_REAL = {"train": {"rows": 42_300_135, "clicks": 1_644_256, "conversions": 8_802},
               "test": {"rows": 43_016_840, "clicks": 1_673_447, "conversions": 9_195}}
NOT_SIGNIFICANT = "†"
FEW_POSITIVES = 30  # below this, the summary warns that an AUC rests on too few positives
SHORT_TASK = {"ctr": "CTR", "cvr": "CVR (clicked)", "ctcvr": "CTCVR",
              "cvr_entire": "purchase, entire space"}


def profile_name(run: Run) -> str:
    profile = run.meta.get("profile")
    return profile.get("name", "?") if isinstance(profile, dict) else str(profile or "?")


def run_date(run: Run) -> str:
    return run.meta.get("finished_utc") or run.meta.get("started_utc") or "unknown"


def synthetic_info(run: Run) -> dict | None:
    return (run.meta.get("data_info") or {}).get("synthetic")


def leaderboard_order(models: list[ModelResult]) -> list[ModelResult]:
    """By CTCVR AUC (the end-to-end ranking task), best first; models without one last."""
    return sorted(models, key=lambda m: (m.auc("ctcvr") is None, -(m.auc("ctcvr") or 0),
                                         m.model))


# ---------------------------------------------------------------- header


def header(run: Run) -> list:
    meta = run.meta
    libraries = meta.get("libraries") or {}
    commit = meta.get("git_commit") or "unknown"
    if meta.get("git_dirty"):
        commit += " (uncommitted changes present)"
    rows = [
        ["data set", f"`{meta.get('dataset', '?')}`"],
        ["fingerprint", f"`{meta.get('fingerprint', '?')}`"],
        ["profile", f"`{profile_name(run)}`"],
        ["seeds", fmt.seeds(meta.get("seeds", run.seeds))],
        ["threads per model", str(meta.get("threads", fmt.DASH))],
        ["models", f"{len(run.models)} evaluated"
                   + (f", {len(run.failures)} failed runs" if run.failures else "")],
        ["command", f"`{meta.get('command', '?')}`"],
        ["commit", f"`{commit}`"],
        ["date (UTC, run finished)", run_date(run)],
        ["hardware", f"{meta.get('cpu_model', '?')}, {meta.get('cpu_count', '?')} logical CPUs; "
                     f"{meta.get('platform', '?')}"],
        ["versions", f"Python {meta.get('python', '?')}; "
                     + "; ".join(f"{k} {v}" for k, v in sorted(libraries.items()))],
    ]
    blocks = [Heading(2, "Run and data", "run"), Table(["run", ""], rows, "ll", id="run-table")]
    return blocks


def _rate(numerator, denominator):
    if fmt.missing(numerator) or not denominator:
        return None
    return numerator / denominator


def data_section(run: Run) -> list:
    info = run.meta.get("data_info") or {}
    synth = synthetic_info(run)
    rows = []
    splits = [s for s in ("train", "valid", "test") if s in (info.get("rows") or {})]
    pwc = info.get("purchase_without_click") or {}
    kept = (info.get("settings") or {}).get("keep_purchase_without_click")
    for split in splits:
        n = info["rows"][split]
        clicks = (info.get("clicks") or {}).get(split)
        conversions = (info.get("conversions") or {}).get(split)
        rows.append([split, fmt.count(n), fmt.count((info.get("requests") or {}).get(split)),
                     fmt.count(clicks), fmt.count(conversions), fmt.pct(_rate(clicks, n)),
                     fmt.pct(_rate(conversions, clicks), 3), fmt.pct(_rate(conversions, n), 3),
                     fmt.count(pwc.get(split))])
    if synth:
        for split, real in ALICCP_REAL.items():
            rows.append([f"*Ali-CCP real, {split} file*", fmt.count(real["rows"]), fmt.DASH,
                         fmt.count(real["clicks"]), fmt.count(real["conversions"]),
                         fmt.pct(real["clicks"] / real["rows"]),
                         fmt.pct(real["conversions"] / real["clicks"], 3),
                         fmt.pct(real["conversions"] / real["rows"], 3), fmt.DASH])
    blocks = []
    if rows:
        blocks.append(Table(["split", "rows", "requests", "clicks", "click and purchase",
                             "CTR", "CVR given click", "CTCVR", "purchase without click"],
                            rows, "lrrrrrrrr", id="data-table"))
    else:
        blocks.append(Para("The run's meta.json holds no split counts."))
    notes = []
    if info.get("split_rule"):
        notes.append(f"Splits: {info['split_rule']}.")
    notes.append("Purchase-without-click rows (count per split above): "
                 + ("kept." if kept else "dropped before encoding (the default)."))
    if synth:
        raised = synth.get("rates_raised")
        notes.append("Synthetic data from `bench.data.synth` "
                     f"(profile {synth.get('profile', '?')}, data seed {synth.get('seed', '?')}); "
                     + ("its click and conversion rates are **raised** above Ali-CCP's real "
                        "rates (rows in italics) so that small runs have enough positives."
                        if raised else "its rates target Ali-CCP's real rates (rows in italics)."))
    conversion = info.get("conversion")
    if isinstance(conversion, dict):
        notes.append(input_lines_note(conversion))
    blocks.append(Bullets(notes))
    if isinstance(conversion, dict):
        blocks += input_line_examples(conversion)
    oracle = (synth or {}).get("oracle") or {}
    halves = [h for h in ("test_half", "validation_half") if isinstance(oracle.get(h), dict)]
    if halves:
        blocks.append(Para("Oracle AUCs: the true probabilities of the synthetic generator "
                           "scored like a model; no model can expect to beat them."))
        blocks.append(Table(
            ["half of the test file", "rows", "CTR AUC", "CVR AUC (clicked)", "CTCVR AUC"],
            [[h.replace("_", " "), fmt.count(oracle[h].get("rows")),
              fmt.auc(oracle[h].get("ctr_auc")), fmt.auc(oracle[h].get("cvr_auc")),
              fmt.auc(oracle[h].get("ctcvr_auc"))] for h in halves], "lrrrr"))
    return blocks


def _by_kind(files: dict) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for stats in files.values():
        for kind, count in (stats.get("skipped_by_kind") or {}).items():
            kinds[kind] = kinds.get(kind, 0) + int(count)
    return kinds


def input_lines_note(conversion: dict) -> str:
    """How many input lines were read, skipped (by kind) and repaired: nothing lost unsaid."""
    files = conversion.get("files") or {}
    lines = sum(int(f.get("lines") or 0) for f in files.values())
    skipped, repaired = conversion.get("skipped_lines") or 0, conversion.get("repaired_lines") or 0
    lenient = (conversion.get("settings") or {}).get("lenient")
    mode = ("`--lenient`: bad lines skipped and counted" if lenient
            else "strict: a bad line stops the run")
    text = f"Input lines: {fmt.count(lines)} read from {len(files)} files ({mode}); "
    if skipped:
        kinds = ", ".join(f"{kind} {fmt.count(n)}" for kind, n in sorted(_by_kind(files).items()))
        text += f"**{fmt.count(skipped)} skipped** ({kinds}); "
    else:
        text += "none skipped; "
    if repaired:
        triples = fmt.count(conversion.get("repaired_triples"))
        text += (f"**{fmt.count(repaired)} repaired** ({triples} repeated single-valued "
                 "triples, first kept)")
    else:
        text += "none repaired"
    return text + (". First examples below." if skipped or repaired else ".")


def input_line_examples(conversion: dict) -> list:
    rows = [[str(f), fmt.count(line), str(reason)[:200]]
            for key in ("skipped_examples", "repair_examples")
            for f, line, reason in (conversion.get(key) or [])]
    if not rows:
        return []
    counted = (conversion.get("skipped_lines") or 0) + (conversion.get("repaired_lines") or 0)
    return [Details(f"First {len(rows)} of {fmt.count(counted)} skipped or repaired input lines",
                    [Table(["file", "line", "what"], rows, "lrl")])]


# ---------------------------------------------------------------- leaderboard


def _auc_cell(result, best: bool, mark: bool) -> str:
    if result is None or result.auc is None:
        return fmt.DASH
    if result.constant_output:
        return f"{fmt.auc(result.auc)} (constant output)"
    text = fmt.auc(result.auc)
    if result.auc_std is not None:
        text += f" ± {result.auc_std:.4f}"
    if best:
        text = f"**{text}**" + (NOT_SIGNIFICANT if mark else "")
    return f"{text} {fmt.interval(result.ci_low, result.ci_high)}"


def _latency_cell(model: ModelResult) -> str:
    if not model.latency:
        return "not measured"
    lat = model.latency
    path = f", {lat['path']}" if lat.get("path") else ""
    return f"{fmt.ms(lat['p50_ms'])} ({fmt.ms(lat.get('p99_ms'))}){path}"


def _best_key(models, value, lower: bool = False, skip_floor: bool = False):
    """The model with the best value (the model key breaks ties, so reports are stable)."""
    have = [(value(m) if lower else -value(m), m.model) for m in models
            if not fmt.missing(value(m)) and not (skip_floor and m.group == "floor")]
    return min(have)[1] if have else None


def leaderboard(run: Run) -> list:
    order = leaderboard_order(run.models)
    tasks = [t for t in TASK_ORDER if any(t in m.tasks for m in order)]
    comparisons = {t: best_vs_runner_up(run.models, t) for t in tasks}
    best_auc = {t: (ranked(order, t)[0].model if ranked(order, t) else None) for t in tasks}

    def loss(task):
        return lambda m: m.tasks[task].logloss if task in m.tasks else None

    best_loss = {t: _best_key(order, loss(t), lower=True) for t in MAIN_TASKS}
    best_train = _best_key(order, lambda m: m.train_s, lower=True, skip_floor=True)
    best_latency = _best_key(order, lambda m: m.latency["p50_ms"] if m.latency else None,
                             lower=True, skip_floor=True)
    header_row = (["model", "group"] + [TASK_TITLES[t] for t in tasks]
                  + [f"{SHORT_TASK[t]} log loss" for t in MAIN_TASKS]
                  + ["train time", f"latency @{LATENCY_CANDIDATES:,} cand., p50 (p99) ms",
                     "params"])
    rows = []
    for model in order:
        row = [f"`{model.model}`", model.group]
        for task in tasks:
            comparison = comparisons[task]
            mark = (comparison is not None and comparison.runner_up is not None
                    and comparison.significant is not True)
            row.append(_auc_cell(model.tasks.get(task), model.model == best_auc[task], mark))
        for task in MAIN_TASKS:
            value = fmt.num(loss(task)(model), 5)
            row.append(f"**{value}**" if model.model == best_loss[task] else value)
        train = fmt.seconds(model.train_s)
        row.append(f"**{train}**" if model.model == best_train else train)
        latency = _latency_cell(model)
        row.append(f"**{latency}**" if model.model == best_latency else latency)
        row.append(fmt.size(model.n_params))
        rows.append(row)
    align = "ll" + "r" * (len(header_row) - 2)
    seeds = fmt.seeds(run.seeds)
    notes = [
        f"AUC cells: mean over seeds ({seeds})"
        + (" ± standard deviation over seeds" if len(run.seeds) > 1 else "")
        + f", then the 95% interval of the request-level bootstrap ({run.n_bootstrap or '?'} "
          "resamples of whole requests, identical for every model).",
        "**Bold**: best in the column (highest AUC, lowest log loss; for cost columns the "
        "cheapest model other than the constant floor).",
        f"{NOT_SIGNIFICANT}: the best is **not** significantly better than the runner-up: the "
        "95% interval of their paired bootstrap AUC difference includes 0 (see the next "
        "table). With several seeds, this tests the seed-averaged AUCs against resampling of "
        "requests; the seed-to-seed spread is the ± figure.",
        "(constant output): the model does not model this task and outputs a training prior "
        "(its `prediction_how` says so), e.g. a single-task model's other outputs. "
        "Rows ordered by CTCVR AUC. Train time: mean wall-clock `fit` time over seeds. "
        + ("Latency: median (p99) time to score one request of 1,000 candidates, on the "
           "fewest threads measured, fastest serving path (named), from the run's latency "
           "records (`python -m bench latency --out RUN_DIR`)."
           if any(m.latency for m in order) else
           "Latency: **not measured** in this run (see the costs table for batch prediction "
           "time, which is not serving latency)."),
    ]
    blocks = [Heading(2, "Leaderboard", "leaderboard"),
              Table(header_row, rows, align, id="leaderboard"), Bullets(notes)]
    blocks += significance_table(run, comparisons)
    return blocks


def significance_table(run: Run, comparisons: dict) -> list:
    rows = []
    for task, comparison in comparisons.items():
        if comparison is None:
            continue
        same = ", ".join(f"`{m}`" for m in comparison.same_as_best) or fmt.DASH
        if comparison.runner_up is None:
            rows.append([TASK_TITLES[task], f"`{comparison.best}`", same, fmt.DASH, fmt.DASH,
                         fmt.DASH, fmt.DASH, "no other model to test against"])
            continue
        verdict = {True: "yes", False: f"no {NOT_SIGNIFICANT}", None: "not testable"}[
            comparison.significant]
        rows.append([TASK_TITLES[task], f"`{comparison.best}`", same,
                     f"`{comparison.runner_up}`", fmt.signed(comparison.difference),
                     fmt.interval(comparison.ci_low, comparison.ci_high),
                     fmt.pct(comparison.share_not_better, 1), verdict])
    if not rows:
        return []
    return [Heading(3, "Is the best significantly better than the runner-up?", "significance"),
            Para("The runner-up is the next model whose scores differ from the best's; models "
                 "with the same scores (e.g. a product model that reuses the best's CTR model) "
                 "are named apart and not tested against it."),
            Table(["column", "best", "same scores as best", "runner-up", "AUC difference",
                   "95% CI (paired bootstrap)", "resamples where best ≤ runner-up",
                   "significant"], rows, "llllrrrl")]


# ---------------------------------------------------------------- crosswalk


def crosswalk(run: Run) -> list:
    settings = (run.meta.get("data_info") or {}).get("settings") or {}
    pwc_kept = bool(settings.get("keep_purchase_without_click"))
    rows = []
    for entry in ENTRIES:
        best = ranked(run.models, entry.ours)
        top = best[0].tasks[entry.ours] if best else None
        here = (f"`{best[0].model}` {fmt.auc(top.auc)} {fmt.interval(top.ci_low, top.ci_high)}"
                if best else fmt.DASH)
        what = f"{SCORES[entry.score].split(' (')[0].split(' =')[0]} vs {LABELS[entry.label]}, " \
               f"{ROWS[entry.rows]}"
        note = entry.note
        if entry.needs_pwc_dropped:
            note = (note + "; " if note else "") + (
                "**not** equal to ours in this run: purchase-without-click rows were kept, so "
                "their purchase label has positives our click-and-purchase label lacks"
                if pwc_kept else
                "equal to ours because purchase-without-click rows are dropped")
        rows.append([entry.source, entry.their_name, what, f"`{entry.ours}`", here,
                     entry.published or fmt.DASH, note])
    dataset = run.meta.get("dataset", "")
    caveat = ("This run is on **synthetic** data: its AUCs are not comparable with the published "
              "full-data numbers, only the definitions are." if synthetic_info(run) else
              "Published numbers are on the full data; a sampled run is not comparable with them.")
    return [Heading(2, "Metric crosswalk: which published number is which column", "crosswalk"),
            Para("Papers and libraries disagree on what “CVR AUC” means. The ESMM paper scores "
                 "pCVR on clicked impressions only (our `cvr`); several libraries score purchase "
                 "against all impressions, which is our `ctcvr` when the score is an "
                 "entire-space purchase probability, or our `cvr_entire` when it is a "
                 "conditional pCVR. " + caveat),
            Table(["source", "their name", "computed as", "our column", f"best here ({dataset})",
                   "published (full data)", "note"], rows, "lllllll", id="crosswalk")]


# ---------------------------------------------------------------- oracle, calibration, costs


def oracle_gaps(run: Run) -> list:
    order = leaderboard_order(run.models)
    tasks = [t for t in TASK_ORDER if any(t in m.tasks and m.tasks[t].oracle_auc is not None
                                          for m in order)]
    blocks = [Heading(2, "Oracle gap", "oracle")]
    if not tasks:
        return blocks + [Para("Not available: the true click and conversion probabilities are "
                              "only known on synthetic data.")]
    oracle = {t: next(m.tasks[t].oracle_auc for m in order if t in m.tasks
                      and m.tasks[t].oracle_auc is not None) for t in tasks}
    rows = [[f"`{m.model}`"] + [fmt.num(m.tasks[t].oracle_gap) if t in m.tasks else fmt.DASH
                                for t in tasks] for m in order]
    return blocks + [
        Para("Oracle AUC minus the model's AUC (mean over seeds) on the same test rows: how "
             "much ranking quality the model leaves on the table. Oracle AUCs here: "
             + "; ".join(f"{SHORT_TASK[t]} {fmt.auc(oracle[t])}" for t in tasks) + "."),
        Table(["model"] + [f"{SHORT_TASK[t]} gap" for t in tasks], rows, id="oracle-table")]


def calibration(run: Run) -> list:
    order = leaderboard_order(run.models)
    # The observed rate is a property of the test rows, the same for every model.
    observed = {t: next((m.tasks[t].label_rate for m in order if t in m.tasks), None)
                for t in MAIN_TASKS}
    rows = []
    for m in order:
        row = [f"`{m.model}`"]
        for t in MAIN_TASKS:
            r = m.tasks.get(t)
            row.append(fmt.DASH if r is None else
                       f"{fmt.num(r.calibration_ratio, 3)} ({fmt.pct(r.mean_prediction, 3)})")
        for t in MAIN_TASKS:
            r = m.tasks.get(t)
            row.append(fmt.DASH if r is None else
                       f"{fmt.auc(r.gauc)} ({fmt.pct(r.gauc_row_share, 0)})")
        rows.append(row)
    return [
        Heading(2, "Calibration and GAUC (secondary)", "calibration"),
        Para("Predicted / observed: the mean prediction over the task's rows divided by the "
             "observed label rate of those rows, given in the column title (1.000 = calibrated "
             "on average; the reliability figure shows "
             "it bin by bin). GAUC: the AUC within each user (field 101), averaged with weights "
             "equal to the user's rows; users with only one class, rare users (code 1: every "
             "user seen fewer than --min-count times in train shares that code, so they cannot "
             "be told apart) and absent users are left out; the share of the task's rows that "
             "took part is in brackets. Means over seeds."),
        Table(["model"] + [f"{SHORT_TASK[t]} predicted / observed (mean predicted); "
                           f"observed {fmt.pct(observed.get(t), 3)}" for t in MAIN_TASKS]
              + [f"{SHORT_TASK[t]} GAUC (rows used)" for t in MAIN_TASKS], rows,
              id="calibration-table")]


def costs(run: Run) -> list:
    order = leaderboard_order(run.models)
    rows = []
    for m in order:
        lat = m.latency or {}
        how = m.tasks.get("ctcvr") or next(iter(m.tasks.values()))
        rows.append([f"`{m.model}`", fmt.seconds(m.train_s)
                     + (f" ± {fmt.seconds(m.train_s_std)}" if m.train_s_std is not None else ""),
                     fmt.ms(m.predict_ms_per_1k),
                     fmt.ms(lat.get("p50_ms")) if lat else "not measured",
                     fmt.ms(lat.get("p99_ms")) if lat else fmt.DASH,
                     fmt.ms(lat.get("assembly_p50_ms")) if lat else fmt.DASH,
                     fmt.count(lat.get("candidates_per_s")) if lat else fmt.DASH,
                     f"{lat.get('path') or fmt.DASH}, {lat.get('threads', fmt.DASH)}"
                     if lat else fmt.DASH,
                     fmt.count(m.n_params), how.prediction_how or fmt.DASH])
    blocks = [Heading(2, "Costs", "costs"),
              Para("Training and prediction are timed apart by the harness; batch prediction "
                   "scores the whole test split at once and is **not** serving latency. Latency "
                   f"columns: scoring one request of {LATENCY_CANDIDATES:,} candidates (feature "
                   "assembly timed apart), fastest serving path on the fewest threads measured; "
                   "every latency record is listed below the table.")]
    if order:
        blocks.append(Table(
            ["model", "train time", "batch predict, ms per 1k rows",
             f"latency p50 @{LATENCY_CANDIDATES:,} (ms)", "p99 (ms)", "assembly p50 (ms)",
             "candidates/s", "path, threads", "parameters", "how pCTCVR is formed"], rows,
            "lrrrrrrlrl", id="costs-table"))
    if run.latency_records:
        blocks += latency_records(run.latency_records)
    return blocks


# The plain references a serving path is compared with, where the model has them (neural).
SPEEDUP_REFERENCES = ("eager_per_candidate", "eager")


def _speedup(record: dict, p50_by_path: dict, reference: str) -> str:
    reference_ms, ms = p50_by_path.get(reference), record.get("p50_ms")
    if not reference_ms or not ms:
        return fmt.DASH
    return f"{reference_ms / ms:.2f}×"


def _auc_change(record: dict) -> str:
    changes = [record.get(f"auc_change_{task}") for task in MAIN_TASKS]
    if all(fmt.missing(c) for c in changes):
        return fmt.DASH
    return " / ".join(fmt.signed(c, 5) for c in changes)


def latency_records(records: list[dict]) -> list:
    """Every latency record, with its speed-up over the plain forward of the same request."""
    listed = sorted(records, key=lambda r: (
        r["model"], r.get("n_candidates") or 0, str(r.get("path")), r.get("threads") or 0))
    p50 = {}  # (model, N, threads) -> {path: p50 ms}
    for r in listed:
        if not r.get("error") and r.get("p50_ms"):
            key = (r["model"], r.get("n_candidates"), r.get("threads"))
            p50.setdefault(key, {})[r.get("path")] = r["p50_ms"]
    rows = []
    for r in listed:
        same = p50.get((r["model"], r.get("n_candidates"), r.get("threads")), {})
        diff = r.get("max_abs_diff_vs_library")
        rows.append([f"`{r['model']}`", str(r.get("path") or fmt.DASH),
                     fmt.count(r["n_candidates"]), str(r.get("threads") or fmt.DASH),
                     fmt.ms(r.get("p50_ms")), fmt.ms(r.get("p99_ms")),
                     fmt.ms(r.get("assembly_p50_ms")), fmt.count(r.get("repeats")),
                     fmt.DASH if fmt.missing(diff) else f"{diff:.1e}",
                     *(_speedup(r, same, ref) for ref in SPEEDUP_REFERENCES),
                     _roofline(r), _auc_change(r), (r.get("error") or "")[:120]])
    return [Details(f"All {len(listed)} latency records", [
        Para("Scoring time per request of N candidates, one user each, built from test rows "
             "(assembly from the cached arrays timed apart), after warm-up, on the stated "
             "threads. *max abs diff*: largest difference of any output from the model's own "
             "predict over every timed request (paths above 1e-5, and int8/bf16, are never "
             "picked for the leaderboard). *speed-up*: p50 of the reference path over this "
             "path's, same model, "
             "N and threads; `eager_per_candidate` is the plain forward with the user context "
             "copied into every candidate, `eager` the plain forward that already embeds and "
             "pools each request's user lists once. *MACs, % of peak*: multiply-adds the path "
             "performs per request (counted from the shapes of the operations it runs; "
             "neural/roofline.py) and the share of this process's measured sgemm peak at the "
             "same threads that its p50 represents. *test AUC change* (CTR / CVR / CTCVR): for "
             "paths that do not score equal (int8, bf16), their test AUC minus the model's."),
        Table(["model", "path", "candidates", "threads", "p50 (ms)", "p99 (ms)",
               "assembly p50 (ms)", "repeats", "max abs diff",
               *(f"speed-up vs {ref}" for ref in SPEEDUP_REFERENCES), "MACs, % of peak",
               "test AUC change", "error"], rows, "llrrrrrrrrrrll")])]


def _roofline(record: dict) -> str:
    macs, fraction = record.get("macs_per_request"), record.get("fraction_of_sgemm_peak")
    if fmt.missing(macs):
        return fmt.DASH
    text = f"{macs / 1e6:,.1f} M"
    return text if fmt.missing(fraction) else f"{text}, {fraction:.0%}"


def failures(run: Run) -> list:
    if not run.failures:
        return []
    rows = [[f"`{r['model']}`", str(r.get("seed")), (r.get("error") or "").splitlines()[0][:200]]
            for r in run.failures]
    return [Heading(2, "Failed runs", "failures"),
            Para("A failed model is recorded, not hidden; these (model, seed) pairs have no "
                 "results above."),
            Table(["model", "seed", "error"], rows, "lll")]


def definitions(run: Run) -> list:
    defs = {}
    for m in run.models:
        for t, r in m.tasks.items():
            if r.definition:
                defs.setdefault(t, r.definition)
    items = [f"`{t}` ({TASK_TITLES[t]}): {defs[t]}." for t in TASK_ORDER if t in defs]
    items.append("Groups: `neural` is the registry's neural family; within `baselines`, GBDT "
                 "models (LightGBM, XGBoost) are told apart from the linear and constant "
                 "(`floor`) baselines by name.")
    return [Heading(2, "Definitions", "definitions"), Bullets(items)]


# ---------------------------------------------------------------- summary in plain words


def _headroom(result) -> str:
    if result.oracle_auc is None or result.auc is None or result.oracle_auc <= 0.5:
        return ""
    share = (result.auc - 0.5) / (result.oracle_auc - 0.5)
    return f"; it reaches {100 * share:.0f}% of the oracle's lift over 0.5"


def _cost_phrase(a: ModelResult, b: ModelResult) -> str:
    if a.latency and b.latency:
        x, y = a.latency["p50_ms"], b.latency["p50_ms"]
        what = f"latency at {LATENCY_CANDIDATES:,} candidates {fmt.ms(x)} ms vs {fmt.ms(y)} ms"
    elif a.predict_ms_per_1k and b.predict_ms_per_1k:
        x, y = a.predict_ms_per_1k, b.predict_ms_per_1k
        what = (f"serving latency not measured; batch prediction {fmt.ms(x)} vs {fmt.ms(y)} ms "
                "per 1,000 rows")
    else:
        return "cost not comparable (no timings)"
    if not x or not y:
        return what
    return (f"{what}: the leader costs {x / y:.1f}× as much" if x >= y else
            f"{what}: the leader is also {y / x:.1f}× cheaper")


def title(run: Run) -> list:
    return [Heading(1, f"ccpbench report: {run.meta.get('dataset', '?')}, profile "
                       f"{profile_name(run)}"),
            Para(f"Run finished {run_date(run)} (UTC). Built from this run folder's "
                 "`results.jsonl` and `meta.json` alone; `python -m bench report RUN_DIR` "
                 "rebuilds it.")]


def summary(run: Run) -> list:
    groups = sorted({m.group for m in run.models if m.group != "floor"})
    synth = synthetic_info(run)
    opening = (f"{len(run.models)} models ({', '.join(groups) or 'no groups'}"
               f"{' and the constant floor' if any(m.group == 'floor' for m in run.models) else ''}"
               f") on `{run.meta.get('dataset', '?')}`, profile {profile_name(run)}, "
               f"seed(s) {fmt.seeds(run.seeds)}.")
    if synth:
        opening += (" The data is synthetic: the numbers describe this generator, not "
                    "Ali-CCP itself.")
    if not run.models:
        return [Heading(2, "Summary", "summary"), Para(opening + " No model produced results.")]
    items = []
    for task in MAIN_TASKS:
        order = ranked(run.models, task)
        if not order:
            continue
        top = order[0]
        result = top.tasks[task]
        comparison = best_vs_runner_up(run.models, task)
        text = (f"**{SHORT_TASK[task]}**: best `{top.model}` ({top.group}) AUC "
                f"{fmt.auc(result.auc)} {fmt.interval(result.ci_low, result.ci_high)}"
                f"{_headroom(result)}.")
        if result.n_positives is not None and result.n_positives < FEW_POSITIVES:
            text += (f" Only {result.n_positives} positive(s) on {fmt.count(result.n_rows)} "
                     "rows: this AUC and its interval say little.")
        if comparison and comparison.runner_up:
            verdict = {True: "significantly", False: "not significantly",
                       None: "(untested)"}[comparison.significant]
            text += (f" It is {verdict} better than the runner-up `{comparison.runner_up}` "
                     f"({fmt.signed(comparison.difference)}, 95% CI "
                     f"{fmt.interval(comparison.ci_low, comparison.ci_high)}).")
        bests = {}
        for m in order:
            if m.group != "floor":
                bests.setdefault(m.group, m)
        if len(bests) >= 2:
            text += " Best of each group: " + "; ".join(
                f"{g} `{m.model}` {fmt.auc(m.auc(task))}" for g, m in bests.items()) + "."
            (g1, m1), (g2, m2) = list(bests.items())[:2]
            diff, low, high, _ = compare(m1, m2, task)
            lead = g1[:1].upper() + g1[1:]
            if low is not None and low > 0:
                verdict = f"{lead} wins over {g2}"
                sig = "significant"
            else:
                verdict = f"{lead} is ahead of {g2}"
                sig = ("not significant: no group clearly wins this task here"
                       if low is not None else "untested")
            text += (f" {verdict} by {fmt.signed(diff)} AUC (95% CI {fmt.interval(low, high)}, "
                     f"{sig}); {_cost_phrase(m1, m2)}; training {fmt.seconds(m1.train_s)} vs "
                     f"{fmt.seconds(m2.train_s)}.")
        elif len(bests) == 1:
            text += f" Only one group ({next(iter(bests))}) has results."
        floor = next((m for m in run.models if m.group == "floor"), None)
        if floor is not None and floor.auc(task) is not None:
            below = [m.model for m in order if m.group != "floor"
                     and not m.tasks[task].constant_output
                     and m.auc(task) is not None and m.auc(task) <= floor.auc(task)]
            if below:
                text += f" Not above the constant floor: {', '.join(f'`{b}`' for b in below)}."
        items.append(text)
    conversion = (run.meta.get("data_info") or {}).get("conversion") or {}
    if conversion.get("skipped_lines") or conversion.get("repaired_lines"):
        items.append(f"{fmt.count(conversion.get('skipped_lines') or 0)} input line(s) were "
                     f"skipped and {fmt.count(conversion.get('repaired_lines') or 0)} repaired "
                     "while reading the data (see Run and data).")
    if run.failures:
        items.append(f"{len(run.failures)} (model, seed) run(s) failed: "
                     + ", ".join(sorted({f'`{r["model"]}`' for r in run.failures}))
                     + " (see Failed runs).")
    return [Heading(2, "Summary", "summary"), Para(opening), Bullets(items)]
