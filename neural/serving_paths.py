"""Every serving path a neural model offers (bench.latency times them): the eager forward per
candidate and per request, the request-shared path (neural/serving.py), the projected path
(neural/projected.py), ONNX Runtime's compiled graph, and the reduced-precision variants.
A model made of fitted parts (neural/dnn_ctr_x_cvr) gets each path composed from its parts'."""

from __future__ import annotations

from collections.abc import Callable

from ccp.tasks import MAIN_TASKS, TASKS
from neural.serving import OnnxScorer, RequestScorer


def _projected(model):
    """neural.projected's path, or a path that fails with the reason it could not be built."""
    from neural.projected import ProjectedScorer

    try:
        return ProjectedScorer(model)
    except Exception as error:  # recorded by bench.latency as the path's error, not a crash
        def failed(split, error=error):
            raise RuntimeError(f"projected path not built: {error}") from error
        return failed


class _Composed:
    """One path of a model made of fitted parts (`parts`, `compose`: neural/dnn_ctr_x_cvr)
    from the same path of each part ({task: path}), composed as its predict composes them."""

    def __init__(self, model, paths: dict):
        self.model, self.paths = model, paths

    def __call__(self, split):
        return self.model.compose({task: path(split) for task, path in self.paths.items()})

    @property
    def calibrated(self) -> bool:
        return all(getattr(path, "calibrated", True) for path in self.paths.values())

    def calibrate(self, requests) -> None:
        for path in self.paths.values():
            if hasattr(path, "calibrate"):
                path.calibrate(requests)

    def mac_source(self, split) -> None:
        """What neural.roofline counts: each part's counted graph (a runtime outside torch,
        such as ONNX Runtime, is invisible to it; its `mac_source` is the torch graph)."""
        for path in self.paths.values():
            getattr(path, "mac_source", path)(split)


def _whole_split(model, **precision) -> Callable:
    """The request-shared path over whole splits, at the given precision."""
    parts = getattr(model, "parts", None)
    if parts is None:
        return RequestScorer(model, **precision).predict
    return _Composed(model, {task: RequestScorer(part, **precision).predict
                             for task, part in parts.items()})


def serving_paths(model) -> dict:
    """The neural paths for bench.latency ("compiled" only where onnxruntime is installed)."""
    parts = getattr(model, "parts", None)
    if parts is not None:
        per_part = {task: serving_paths(part) for task, part in parts.items()}
        return {name: _Composed(model, {task: paths[name] for task, paths in per_part.items()})
                for name in per_part["ctr"] if all(name in p for p in per_part.values())}
    scorer = RequestScorer(model)
    paths = {"eager_per_candidate": scorer.per_candidate, "eager": scorer.eager,
             "request_shared": scorer.shared, "projected": _projected(model)}
    try:
        paths["compiled"] = OnnxScorer(scorer)
    except ImportError:
        pass  # onnxruntime not installed: the path is left out, not faked
    paths["int8"] = RequestScorer(model, int8=True).shared
    paths["bf16"] = RequestScorer(model, bf16=True).shared
    return paths


REDUCED_PRECISION = ("int8", "bf16")  # paths whose scores differ from eager


def auc_change(model, split, path: str = "int8") -> dict[str, float]:
    """Test AUCs of a reduced-precision path and their change from the library's predict."""
    from ccp.metrics import auc

    if path not in REDUCED_PRECISION:
        raise ValueError(f"auc_change is for {REDUCED_PRECISION}, not {path!r}")
    library = model.predict(split)
    reduced = _whole_split(model, int8=path == "int8", bf16=path == "bf16")(split)
    fields = {}
    for task in MAIN_TASKS:
        labels, before_scores = TASKS[task].scored(split, library)
        before = auc(labels, before_scores)
        after = auc(*TASKS[task].scored(split, reduced))
        fields[f"auc_{task}"] = after
        fields[f"auc_change_{task}"] = after - before
    return fields
