"""The report's sections, as render blocks, computed from a loaded Run only."""

from __future__ import annotations

from bench.report import fmt
from bench.report import verdicts as hypotheses
from bench.report.crosswalk import ENTRIES, LABELS, ROWS, SCORES
from bench.report.render import Bullets, Details, Heading, Para, Table
from bench.report.results import (
    LATENCY_CANDIDATES,
    ModelResult,
    Run,
)
from bench.report.verdict_sections import (
    NOT_SIGNIFICANT,
    seed_words,
    significance_table,
    unit_words,
    verdict_sentence,
)
from ccp import stats
from ccp.tasks import MAIN_TASKS, TASK_ORDER, TASKS

# Ali-CCP's real label counts (shared/ALICCP.md, full scans), shown beside synthetic rates.
ALICCP_REAL = {"train": {"rows": 42_300_135, "clicks": 1_644_256, "conversions": 8_802},
               "test": {"rows": 43_016_840, "clicks": 1_673_447, "conversions": 9_195}}
FEW_POSITIVES = 30  # below this, the summary warns that an AUC rests on too few positives


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
        notes.append("Synthetic data from `ccp.data.synth` "
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
        blocks.append(Para(
            "Oracle AUCs: the true probabilities of the synthetic generator scored like a "
            "model; they include request, impression and conversion noise no model observes. "
            "Achievable ceiling: the same truth with that noise integrated out (the best any "
            "model can predict from what it observes), scored the same way; model quality is "
            "expressed against it."))
        rows = [[f"{h.replace('_', ' ')}, {what}", fmt.count(oracle[h].get("rows"))]
                + [fmt.auc(oracle[h].get(f"{prefix}{t}_auc")) for t in MAIN_TASKS]
                for h in halves for what, prefix in (("oracle", ""), ("achievable", "achievable_"))]
        blocks.append(Table(["half of the test file", "rows", "CTR AUC", "CVR AUC (clicked)",
                             "CTCVR AUC"], rows, "lrrrr", id="oracle-data-table"))
    return blocks


def _by_kind(files: dict) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for file_stats in files.values():
        for kind, count in (file_stats.get("skipped_by_kind") or {}).items():
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


def _latency_cell(lat: dict | None) -> str:
    if not lat:
        return "not measured"
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
    verdicts = hypotheses.run_verdicts(run)
    best = {v.task: v for v in verdicts if hypotheses.BEST in v.kinds}
    chosen = dict.fromkeys(tasks)
    for t in tasks:
        have = hypotheses.eligible(order, t)
        if have:
            chosen[t] = hypotheses.by_choice(have, t, hypotheses.chosen_on(have, t))[0].model

    def loss(task):
        return lambda m: m.tasks[task].logloss if task in m.tasks else None

    best_loss = {t: _best_key(order, loss(t), lower=True) for t in MAIN_TASKS}
    best_train = _best_key(order, lambda m: m.train_s, lower=True, skip_floor=True)
    best_latency = _best_key(order, lambda m: m.latency["p50_ms"] if m.latency else None,
                             lower=True, skip_floor=True)
    header_row = (["model", "group"] + [TASKS[t].title for t in tasks]
                  + [f"{TASKS[t].short} log loss" for t in MAIN_TASKS]
                  + ["train time", f"latency @{LATENCY_CANDIDATES:,} cand., p50 (p99) ms",
                     "params"])
    rows = []
    for model in order:
        row = [f"`{model.model}`", model.group]
        for task in tasks:
            mark = task in best and best[task].significant is not True
            row.append(_auc_cell(model.tasks.get(task), model.model == chosen[task], mark))
        for task in MAIN_TASKS:
            value = fmt.num(loss(task)(model), 5)
            row.append(f"**{value}**" if model.model == best_loss[task] else value)
        train = fmt.seconds(model.train_s)
        row.append(f"**{train}**" if model.model == best_train else train)
        latency = _latency_cell(model.latency)
        row.append(f"**{latency}**" if model.model == best_latency else latency)
        row.append(fmt.size(model.n_params))
        rows.append(row)
    align = "ll" + "r" * (len(header_row) - 2)
    seeds = fmt.seeds(run.seeds)
    notes = [
        f"AUC cells: test AUC, mean over seeds ({seeds})"
        + (" ± standard deviation over seeds" if len(run.seeds) > 1 else "")
        + f", then its 95% interval combining {seed_words(run)} and the unit bootstrap "
          f"({run.n_bootstrap or '?'} resamples of {unit_words(run)}, identical for every "
          "model); see Statistical protocol.",
        "**Bold**: in AUC columns, the best model **chosen on the validation split** (highest "
        "mean validation AUC), measured here on test; it need not have the highest test AUC. "
        "In the other columns: lowest log loss; for cost columns the cheapest model other "
        "than the constant floor.",
        f"{NOT_SIGNIFICANT}: the bold model is **not** significantly better than the runner-up "
        f"chosen on validation (paired test, {stats.CORRECTION}-corrected over every hypothesis "
        "of this report; see the next table). Columns without a test "
        f"({', '.join(TASKS[t].short for t in tasks if t not in MAIN_TASKS) or 'none'}) carry "
        "no mark.",
        "(constant output): the model does not model this task and outputs a training prior "
        "(its `prediction_how` says so), e.g. a single-task model's other outputs. "
        "Rows ordered by CTCVR AUC. Train time: mean wall-clock `fit` time over seeds. "
        + ("Latency: median (p99) time to score one request of 1,000 candidates, on the "
           "fewest threads measured, fastest serving path that scores equal to the model's "
           "own predict (named), from the run's latency records (measured by `bench run` on "
           "each fitted model, or added by `python -m bench latency --out RUN_DIR`)."
           if any(m.latency for m in order) else
           "Latency: **not measured** in this run (see the costs table for batch prediction "
           "time, which is not serving latency)."),
    ]
    blocks = [Heading(2, "Leaderboard", "leaderboard"),
              Table(header_row, rows, align, id="leaderboard"), Bullets(notes)]
    blocks += significance_table(run, verdicts)
    return blocks


# ---------------------------------------------------------------- crosswalk


def crosswalk(run: Run) -> list:
    settings = (run.meta.get("data_info") or {}).get("settings") or {}
    pwc_kept = bool(settings.get("keep_purchase_without_click"))
    rows = []
    for entry in ENTRIES:
        have = hypotheses.eligible(run.models, entry.ours)
        best = hypotheses.by_choice(have, entry.ours, hypotheses.chosen_on(have, entry.ours))
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
            Table(["source", "their name", "computed as", "our column",
                   f"best here ({dataset}; chosen on validation, test AUC)",
                   "published (full data)", "note"], rows, "lllllll", id="crosswalk")]


# ---------------------------------------------------------------- oracle, calibration, costs


def oracle_gaps(run: Run) -> list:
    order = leaderboard_order(run.models)
    tasks = [t for t in TASK_ORDER if any(t in m.tasks and m.tasks[t].oracle_auc is not None
                                          for m in order)]
    blocks = [Heading(2, "Oracle gap and achievable ceiling", "oracle")]
    if not tasks:
        return blocks + [Para("Not available: the true click and conversion probabilities are "
                              "only known on synthetic data.")]
    first = {t: next(m.tasks[t] for m in order if t in m.tasks
                     and m.tasks[t].oracle_auc is not None) for t in tasks}
    ceiling = {t: achievable_auc(run, t, first[t]) for t in tasks}

    def cells(m, t):
        if t not in m.tasks:
            return [fmt.DASH, fmt.DASH]
        share = _lift_share(m.tasks[t].auc, ceiling[t])
        return [fmt.num(m.tasks[t].oracle_gap),
                fmt.DASH if share is None else f"{100 * share:.0f}%"]

    rows = [[f"`{m.model}`"] + [c for t in tasks for c in cells(m, t)] for m in order]
    header = ["model"] + [h for t in tasks for h in (f"{TASKS[t].short} oracle gap",
                                                      f"{TASKS[t].short} share of achievable")]
    missing = [TASKS[t].short for t in tasks if ceiling[t] is None]
    return blocks + [
        Para("Oracle gap: oracle AUC minus the model's AUC (mean over seeds) on the same test "
             "rows. Share of achievable: the model's lift over 0.5 as a share of the achievable "
             "ceiling's (100% = all that can be learnt from what a model observes). Oracle AUCs "
             "here: " + "; ".join(f"{TASKS[t].short} {fmt.auc(first[t].oracle_auc)}"
                                  for t in tasks)
             + ". Achievable ceilings: " + "; ".join(f"{TASKS[t].short} {fmt.auc(ceiling[t])}"
                                                      for t in tasks) + "."
             + (f" No ceiling for {', '.join(missing)}: the data's info has none for these "
                "rows (older data, another row rule, or not a main task)." if missing else "")),
        Table(header, rows, id="oracle-table")]


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
        Table(["model"] + [f"{TASKS[t].short} predicted / observed (mean predicted); "
                           f"observed {fmt.pct(observed.get(t), 3)}" for t in MAIN_TASKS]
              + [f"{TASKS[t].short} GAUC (rows used)" for t in MAIN_TASKS], rows,
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
                     _latency_cell(m.latency_single),
                     fmt.ms(lat.get("assembly_p50_ms")) if lat else fmt.DASH,
                     fmt.count(lat.get("candidates_per_s")) if lat else fmt.DASH,
                     f"{lat.get('path') or fmt.DASH}, {lat.get('threads', fmt.DASH)}"
                     if lat else fmt.DASH,
                     fmt.count(m.n_params), how.prediction_how or fmt.DASH])
    blocks = [Heading(2, "Costs", "costs"),
              Para("Training and prediction are timed apart by the harness; batch prediction "
                   "scores the whole test split at once and is **not** serving latency. Latency "
                   f"columns: scoring one request of {LATENCY_CANDIDATES:,} candidates, and of "
                   "one candidate (feature assembly timed apart), fastest serving path that "
                   "scores equal to the model's predict, on the fewest threads measured; every "
                   "latency record, the library's own path included, is listed below the "
                   "table."), *_latency_step_note(run)]
    if order:
        blocks.append(Table(
            ["model", "train time", "batch predict, ms per 1k rows",
             f"latency p50 @{LATENCY_CANDIDATES:,} (ms)", "p99 (ms)", "p50 (p99) @1 (ms)",
             "assembly p50 (ms)", "candidates/s", "path, threads", "parameters",
             "how pCTCVR is formed"], rows, "lrrrrrrrlrl", id="costs-table"))
    if run.latency_records:
        blocks += latency_records(run.latency_records)
    return blocks


def _latency_step_note(run: Run) -> list:
    """How long the run's own latency step took (meta.json, bench.run_latency)."""
    step = run.meta.get("serving_latency")
    if not step:
        return []
    share = ""
    if step.get("process_cpu_seconds"):
        share = (f", {100 * step['cpu_seconds'] / step['process_cpu_seconds']:.0f}% of the "
                 "command's CPU time")
    return [Para(f"The run measured serving latency on each fitted model right after its fit "
                 f"({len(step.get('models', []))} models, {step.get('threads')} thread, N = "
                 f"{', '.join(f'{n:,}' for n in step.get('candidates', []))}); this took "
                 f"{fmt.seconds(step.get('seconds'))} of wall-clock time{share}.")]


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
    items = [f"`{t}` ({TASKS[t].title}): {defs[t]}." for t in TASK_ORDER if t in defs]
    items.append("Groups: each model's registry entry declares its group (`GBDT`, `neural`, "
                 "`linear`, or `floor`: the constant training prior), and its records carry it.")
    return [Heading(2, "Definitions", "definitions"), Bullets(items)]


# ---------------------------------------------------------------- summary in plain words


def achievable_auc(run: Run, task: str, result) -> float | None:
    """The achievable ceiling's AUC (synthetic data) on this task's test rows: from the data's
    info, used only where its oracle AUC equals the records' (the same rows were scored)."""
    half = ((synthetic_info(run) or {}).get("oracle") or {}).get("test_half") or {}
    ceiling, oracle = half.get(f"achievable_{task}_auc"), half.get(f"{task}_auc")
    if ceiling is None or oracle is None or result is None or result.oracle_auc is None:
        return None
    return ceiling if abs(oracle - result.oracle_auc) < 1e-9 else None


def _lift_share(auc, ceiling) -> float | None:
    if auc is None or ceiling is None or ceiling <= 0.5:
        return None
    return (auc - 0.5) / (ceiling - 0.5)


def _headroom(run: Run, task: str, result) -> str:
    if result.oracle_auc is None or result.auc is None:
        return ""
    text = ""
    reachable = _lift_share(result.auc, achievable_auc(run, task, result))
    if reachable is not None:
        text += (f"; it reaches {100 * reachable:.0f}% of the achievable ceiling's lift over 0.5 "
                 f"(ceiling {fmt.auc(achievable_auc(run, task, result))})")
    oracle = _lift_share(result.auc, result.oracle_auc)
    if oracle is not None:
        text += (f"{' and' if text else '; it reaches'} {100 * oracle:.0f}% of the oracle's "
                 f"(oracle {fmt.auc(result.oracle_auc)}, which sees the unobservable noise)")
    return text


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
    verdicts = hypotheses.run_verdicts(run)
    for task in MAIN_TASKS:
        have = hypotheses.eligible(run.models, task)
        if not have:
            continue
        on = hypotheses.chosen_on(have, task)
        top = hypotheses.by_choice(have, task, on)[0]
        result = top.tasks[task]
        low, high = result.ci_low, result.ci_high
        text = (f"**{TASKS[task].short}**: best on {on} `{top.model}` ({top.group}), test AUC "
                f"{fmt.auc(result.auc)} (95% CI {fmt.interval(low, high)})"
                f"{_headroom(run, task, result)}.")
        if result.n_positives is not None and result.n_positives < FEW_POSITIVES:
            text += (f" Only {result.n_positives} positive(s) on {fmt.count(result.n_rows)} "
                     "rows: this AUC and its interval say little.")
        for v in (v for v in verdicts if v.task == task):
            text += f" {verdict_sentence(v, _cost_phrase)}"
        leaders = hypotheses.group_leaders(run.models, task, on)
        if len(leaders) == 1:
            text += f" Only one group ({next(iter(leaders))}) has results."
        floor = next((m for m in run.models if m.group == "floor"), None)
        if floor is not None and floor.auc(task) is not None:
            below = [m.model for m in have if m.group != "floor"
                     and m.auc(task) <= floor.auc(task)]
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
