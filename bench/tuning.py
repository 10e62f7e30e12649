"""Equal hyperparameter search for every trainable model (`python -m bench tune`).

Per model, one Optuna study over its declared space (ccp/search_space.py):
- the same number of trials for every model; trial 0 is always the model's defaults, so the
  history says what tuning gained over them on validation;
- TPE, seeded, after STARTUP_TRIALS random trials; successive halving (reduction factor 3)
  prunes a trial at a rung whose intermediate validation score is not in the best third of
  the trials that reached it. Rungs are set from the default trial's length (1/3 and all of
  its validation checks), so a slow learner is compared after a real share of its budget;
- intermediate scores are the fit's own validation checks (FitContext.on_validation): each
  boosting round's validation metric of the model's first forest (log loss negated; a pair's
  second forest trains unpruned), each neural validation check. Every check up to step 10,
  then every 10th, is reported (each report is a write to the storage). Halving compares
  trials at equal rounds, so a low learning rate is judged early: pruning trades some of the
  search's reach for its cost;
- a trial is fitted by bench.harness.fit_model, the harness's one fit path, on a data view
  without the test split, and scored by its mean validation AUC over the outputs the model
  estimates itself (those not in its CONSTANT_OUTPUTS): the test split is never read;
- the study lives in Optuna's storage (SQLite by default, any database URL Optuna accepts),
  so an interrupted tuning resumes: finished trials are kept, and only trials that ended
  by completing, pruning or a fit error count towards the trial count (an interrupted trial,
  or one a killed process left running, is run again).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ccp import metrics
from ccp.model import check_outputs
from ccp.search_space import space_digest, space_for, split_by_target
from ccp.tasks import MAIN_TASKS, TASKS

DEFAULT_TRIALS = 12
STARTUP_TRIALS = 4
REDUCTION_FACTOR = 3
REPORT_ALL_UP_TO, REPORT_EVERY = 10, 10
STORAGE_ROOT = Path(__file__).resolve().parents[1] / "data" / "tuning"
OBJECTIVE = ("mean validation AUC over the outputs the model estimates itself (ctr, cvr, "
             "ctcvr less its CONSTANT_OUTPUTS)")


def default_storage(dataset: str, profile: str) -> str:
    STORAGE_ROOT.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{STORAGE_ROOT / f'{dataset}-{profile}.sqlite3'}"


def validation_score(outputs: dict, valid, constant_outputs=()) -> tuple[float, dict]:
    """(mean AUC, AUC per task) on the validation rows ccp.tasks defines for each task."""
    aucs = {}
    for name in MAIN_TASKS:
        task = TASKS[name]
        if task.prediction in constant_outputs:
            continue
        aucs[name] = metrics.auc(*task.scored(valid, outputs))
    finite = [v for v in aucs.values() if np.isfinite(v)]
    if not finite:
        raise ValueError("no validation AUC is defined (every task's rows are one class)")
    return float(np.mean(finite)), aucs


def counted(trials, limit: int | None = None) -> list:
    """Trials that count towards the trial count, first `limit` by number: completed, pruned,
    or failed by a fit error (not interrupted or left running)."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and "error" in t.user_attrs)]
    return sorted(done, key=lambda t: t.number)[:limit]


def open_study(spec, data, profile_name: str, storage: str, seed: int, space):
    """The model's study in `storage`, created or resumed; refused if made on other data or
    another declared space."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # A trial whose process died stops beating: after grace_period it is marked failed
        # (and is not counted: it has no "error"), so a resumed tuning runs it again.
        rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=60, grace_period=180)
    study = optuna.create_study(
        storage=rdb, study_name=f"{data.name}-{profile_name}-{spec.key}", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS),
        load_if_exists=True)
    expected = {"fingerprint": data.fingerprint, "space": space_digest(space)}
    stored = {key: study.user_attrs.get(key) for key in expected}
    if not study.trials:
        for key, value in expected.items():
            study.set_user_attr(key, value)
    elif stored != expected:
        raise ValueError(f"the stored study {study.study_name!r} in {storage} was made with "
                         f"{stored}, not {expected} (other data or another search space); "
                         "pass --overwrite to start it again, or another --storage")
    return study


def pruner_for(study):
    """Successive halving with rungs at 1/3 and all of the default trial's checks;
    nothing is pruned until the default trial has completed."""
    import optuna
    from optuna.trial import TrialState

    default = [t for t in study.trials if t.user_attrs.get("default")
               and t.state == TrialState.COMPLETE and t.last_step is not None]
    if not default:
        return optuna.pruners.NopPruner()
    # The first rung at a third of the default's checks: at a ninth (measured, LightGBM pair
    # on small data), all 6 trials after the first two were pruned at round 20, where a high
    # learning rate always leads.
    min_resource = max(1, default[0].last_step // REDUCTION_FACTOR)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource,
                                                  reduction_factor=REDUCTION_FACTOR)


def make_objective(spec, view, profile, space, seed: int, threads: int):
    """The trial function: suggest, fit through the harness (pruned on its validation checks),
    score on validation."""
    import optuna

    from bench.harness import fit_model

    def objective(trial) -> float:
        def on_validation(step: int, score: float) -> None:
            if step > REPORT_ALL_UP_TO and step % REPORT_EVERY:
                return
            trial.report(score, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"step {step}: validation {score:.5f}")

        cpu_started = time.process_time()
        try:
            values = {param.key: param.suggest(trial) for param in space}
            model, train_s = fit_model(spec, view, profile, seed, threads, progress=False,
                                       config={"settings": split_by_target(values)},
                                       on_validation=on_validation)
            outputs = check_outputs(model.predict(view.valid), len(view.valid))
            score, aucs = validation_score(outputs, view.valid,
                                           getattr(model, "CONSTANT_OUTPUTS", ()))
        except optuna.TrialPruned:
            trial.set_user_attr("cpu_s", round(time.process_time() - cpu_started, 3))
            raise
        except KeyboardInterrupt:
            raise
        except Exception as error:  # a failed configuration is a result of its trial
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:500])
            raise
        trial.set_user_attr("valid_auc", {k: round(v, 6) for k, v in aucs.items()})
        trial.set_user_attr("train_s", round(train_s, 3))
        # CPU seconds of the whole trial: on a shared machine wall time follows the load.
        trial.set_user_attr("cpu_s", round(time.process_time() - cpu_started, 3))
        return score

    return objective


def tune_model(spec, data, profile, storage: str, trials: int, seed: int = 0,
               threads: int | None = None, progress: bool = True) -> dict:
    """Run the model's study until `trials` trials count; its entry for the tuned file."""
    import optuna
    from optuna.trial import TrialState

    space = space_for(spec)
    if not space:
        raise ValueError(f"{spec.key} has no search space: {spec.untuned_why}")
    # Tuning never reads the test split, and fits on the rows every run's models train on.
    from bench.harness import train_rows_of

    view = dataclasses.replace(data, train=train_rows_of(data.train, profile), test=None)
    threads = threads or profile.threads
    model_seed = profile.seeds[0]
    study = open_study(spec, data, profile.name, storage, seed, space)
    if not any(t.user_attrs.get("default") for t in counted(study.trials)) and not any(
            t.state == TrialState.WAITING for t in study.trials):
        study.enqueue_trial(default_values(spec, space, profile), user_attrs={"default": True})
    objective = make_objective(spec, view, profile, space, model_seed, threads)
    while len(counted(study.trials)) < trials:
        study.pruner = pruner_for(study)
        left = trials - len(counted(study.trials))
        # Until the default trial has completed, one trial at a time: the rungs come from it.
        one_by_one = isinstance(study.pruner, optuna.pruners.NopPruner)
        study.optimize(objective, n_trials=1 if one_by_one else left, catch=(Exception,),
                       callbacks=[_progress(spec, trials)] if progress else None)
    return entry_of(spec, study, trials, seed, model_seed, space)


def _progress(spec, trials: int):
    def show(study, trial) -> None:
        n = len(counted(study.trials))
        value = f"{trial.value:.5f}" if trial.value is not None else "-"
        print(f"  {spec.key} trial {n}/{trials}: {trial.state.name.lower()} {value}",
              file=sys.stderr, flush=True)

    return show


def entry_of(spec, study, trials: int, seed: int, model_seed: int, space) -> dict:
    """The tuned file's entry: chosen settings, every counted trial, counts and wall time."""
    from optuna.trial import TrialState

    used = counted(study.trials, trials)
    complete = [t for t in used if t.state == TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"{spec.key}: none of its {len(used)} trials completed "
                         f"(first error: {used[0].user_attrs.get('error') if used else None})")
    best = max(complete, key=lambda t: (t.value, -t.number))  # a tie keeps the earlier trial
    default = next((t for t in used if t.user_attrs.get("default")), None)
    # A pruned trial's Optuna value is its last intermediate score (log loss negated, for
    # trees): kept apart from the validation AUC of completed trials.
    history = [{"number": t.number, "default": bool(t.user_attrs.get("default")),
                "state": t.state.name.lower(),
                "value": t.value if t.state == TrialState.COMPLETE else None,
                "last_intermediate": t.intermediate_values.get(t.last_step),
                "params": t.params, "valid_auc": t.user_attrs.get("valid_auc"),
                "error": t.user_attrs.get("error"), "last_step": t.last_step,
                "train_s": t.user_attrs.get("train_s"), "cpu_s": t.user_attrs.get("cpu_s"),
                "duration_s": _duration(t)} for t in used]
    return {
        "params": best.params, "settings": split_by_target(best.params),
        "best_trial": best.number, "best_valid_score": best.value,
        "default_valid_score": default.value if default is not None else None,
        "trials": len(used),
        "n_complete": len(complete),
        "n_pruned": sum(t.state == TrialState.PRUNED for t in used),
        "n_failed": sum(t.state == TrialState.FAIL for t in used),
        "n_interrupted": sum(t.state in (TrialState.FAIL, TrialState.RUNNING)
                             and "error" not in t.user_attrs for t in study.trials),
        "wall_s": round(sum(_duration(t) for t in used), 3),
        "objective": OBJECTIVE, "space_digest": space_digest(space),
        "space": {p.key: list(p.choices) if p.choices else [p.low, p.high, "log" if p.log
                                                            else "linear"] for p in space},
        "sampler": f"TPE seed {seed}, {STARTUP_TRIALS} random startup trials after the default",
        "pruner": f"successive halving, reduction factor {REDUCTION_FACTOR}, rungs from the "
                  "default trial's length",
        "model_seed": model_seed, "study": study.study_name, "history": history,
    }


def _duration(trial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 3)


def default_values(spec, space, profile) -> dict:
    """Each parameter's value when nothing is tuned (the study's first trial)."""
    import inspect

    from neural.config import NeuralConfig  # a dataclass only: no torch import

    neural = NeuralConfig()
    values = {}
    for param in space:
        if param.target == "profile":
            value = getattr(profile, param.name)
        elif param.target == "neural":
            value = getattr(neural, param.name)
            value = ",".join(str(v) for v in value) if isinstance(value, tuple) else value
        else:
            value = spec.params.get(param.name, inspect.Parameter.empty)
            if value is inspect.Parameter.empty:
                value = constructor_default(spec, param.name)
        values[param.key] = value
    return values


def constructor_default(spec, name: str):
    """A constructor keyword's default: of the class, or of a neural ranker's network."""
    import importlib
    import inspect

    target = spec.params.get("network", spec.target)
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    parameter = inspect.signature(cls).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise ValueError(f"{spec.key}: search parameter {name!r} is no constructor keyword "
                         f"with a default of {cls.__name__}")
    return parameter.default
