"""The neural fast paths score exactly like the plain forward (max abs difference <= 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from bench import harness  # noqa: E402
from bench.latency import assemble, max_abs_diff, plan_requests  # noqa: E402
from bench.registry import get  # noqa: E402

TOLERANCE = 1e-5
# Small sizes keep fitting fast; mmoe also runs at the target size below.
SMALL = {"embedding_dim": 8, "mlp_dims": (32, 16), "tower_dims": (8,)}


@pytest.fixture(scope="module")
def fitted(tiny_data, tiny_profile):
    cache = {}

    def fit(key, extra):
        name = (key, tuple(sorted(extra.items())))
        if name not in cache:
            cache[name] = harness.fitted(get(key), tiny_data, tiny_profile, seed=0, threads=1,
                                         extra=extra)
        return cache[name]

    return fit


@pytest.mark.parametrize("key", ["neural/mmoe", "neural/ple", "neural/aitm",
                                 "neural/dnn_ctr_x_cvr"])
def test_request_shared_and_compiled_equal_the_plain_forward(key, fitted, tiny_data):
    """dnn_ctr_x_cvr: each path of its two networks, composed as its predict composes them."""
    from neural.serving_paths import serving_paths

    model = fitted(key, SMALL)
    paths = serving_paths(model)
    assert {"eager_per_candidate", "eager", "request_shared", "int8", "bf16"} <= set(paths)
    for n in (1, 1000):
        for plan in plan_requests(tiny_data.test, n, n_requests=1, seed=n):
            request = assemble(tiny_data.test, plan)
            library = model.predict(request)
            for name in ("eager_per_candidate", "eager", "request_shared", "compiled"):
                if name not in paths:
                    continue
                diff = max_abs_diff(paths[name](request), library)
                assert diff <= TOLERANCE, f"{key} {name} N={n}: max abs diff {diff:.2e}"


def test_mmoe_at_the_target_size_is_shared_where_it_matters(fitted, tiny_data):
    """4 experts [256, 128], embedding 16, towers [64]: the first layers read the split input."""
    from neural import serving

    model = fitted("neural/mmoe", {})
    assert (model.config.n_experts, model.config.mlp_dims, model.config.embedding_dim,
            model.config.tower_dims) == (4, (256, 128), 16, (64,))
    scorer = serving.RequestScorer(model)
    built = []
    real = serving.RequestInput.materialize

    def spy(self):
        built.append(True)
        return real(self)

    request = assemble(tiny_data.test, plan_requests(tiny_data.test, 1000, n_requests=1)[0])
    serving.RequestInput.materialize = spy
    try:
        shared = scorer.shared(request)
    finally:
        serving.RequestInput.materialize = real
    assert not built, "the full per-candidate input was built: nothing was shared"
    assert len(scorer.weights.cache) == 2  # the expert bank's first layer and the gates
    assert max_abs_diff(shared, model.predict(request)) <= TOLERANCE
    compiled = serving.OnnxScorer(scorer) if _have("onnxruntime") else None
    if compiled is not None:
        assert max_abs_diff(compiled(request), model.predict(request)) <= TOLERANCE


def test_shared_path_over_a_whole_split_equals_predict(fitted, tiny_data):
    """Many requests per batch: each row gathers its own user's term."""
    from neural.serving import RequestScorer

    model = fitted("neural/mmoe", SMALL)
    expected = model.predict(tiny_data.test)
    got = RequestScorer(model).predict(tiny_data.test, batch_size=777)
    assert max_abs_diff(got, expected) <= TOLERANCE


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precision_is_close_but_not_the_same(precision, fitted, tiny_data):
    from neural.serving import RequestScorer

    model = fitted("neural/mmoe", SMALL)
    request = assemble(tiny_data.test, plan_requests(tiny_data.test, 500, n_requests=1)[0])
    scorer = RequestScorer(model, **{precision: True})
    diff = max_abs_diff(scorer.shared(request), model.predict(request))
    assert 0 < diff < 0.05
    # Over a whole split (many requests per batch) it is the same path, batch by batch.
    assert max_abs_diff(scorer.predict(request), model.predict(request)) < 0.05


def test_bf16_keeps_the_logits_in_float32(fitted, tiny_data):
    """bfloat16 logits would make many candidates' scores tie (8 bits of mantissa)."""
    from neural.serving import RequestScorer

    model = fitted("neural/mmoe", SMALL)
    request = assemble(tiny_data.test, plan_requests(tiny_data.test, 1000, n_requests=1)[0])
    scores = RequestScorer(model, bf16=True).shared(request)["ctr"]
    assert len(np.unique(scores)) > 0.9 * len(np.unique(model.predict(request)["ctr"]))


def test_a_network_that_uses_its_input_otherwise_stays_correct(fitted, tiny_data):
    """Anything but a linear layer on x builds the full input: slower, never wrong."""
    from neural.serving import RequestScorer

    model = fitted("neural/mmoe", SMALL)
    scorer = RequestScorer(model)
    network = scorer.network
    original = network.score

    def score_with_extra_use(x):
        out = original(x)
        bump = (x[:, :1] * 0).squeeze(1)  # indexing x: materialised, adds exactly zero
        return {k: v + bump for k, v in out.items()}

    network.score = score_with_extra_use
    try:
        request = assemble(tiny_data.test, plan_requests(tiny_data.test, 50, n_requests=1)[0])
        assert max_abs_diff(scorer.shared(request), model.predict(request)) <= TOLERANCE
    finally:
        del network.score  # back to the class's method


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("key, precision", [("neural/mmoe", "int8"), ("neural/mmoe", "bf16"),
                                            ("neural/dnn_ctr_x_cvr", "int8")])
def test_reduced_precision_auc_change_is_measured_on_the_test_split(key, precision, fitted,
                                                                    tiny_data):
    from neural.serving_paths import auc_change

    change = auc_change(fitted(key, SMALL), tiny_data.test, precision)
    assert set(change) == {f"auc_{t}" for t in ("ctr", "cvr", "ctcvr")} | {
        f"auc_change_{t}" for t in ("ctr", "cvr", "ctcvr")}
    assert 0.5 < change["auc_ctr"] < 1 and abs(change["auc_change_ctr"]) < 0.02


def _neural_keys() -> list[str]:
    from bench.registry import all_specs

    return [s.key for s in all_specs() if s.family == "neural"]


@pytest.mark.parametrize("key", _neural_keys())
def test_projected_path_equals_predict_for_every_neural_model(key, fitted, tiny_data):
    """The projected tables and the probed first layers give the model's own scores."""
    from neural.projected import ProjectedScorer
    from neural.serving_paths import serving_paths

    model = fitted(key, SMALL)
    # A model of fitted parts (dnn_ctr_x_cvr) serves each part's projected path, composed.
    for part in (getattr(model, "parts", None) or {"": model}).values():
        built = ProjectedScorer(part)
        assert not built.fallback_fields and built.layers
    scorer = serving_paths(model)["projected"]
    # At N = 1000 the first requests calibrate the pruning (neural/pruned.py), the later ones
    # are scored pruned.
    from neural.projected import CALIBRATION_ROWS

    for n, n_requests in ((1, 2), (1000, CALIBRATION_ROWS // 1000 + 2)):
        for plan in plan_requests(tiny_data.test, n, n_requests=n_requests, seed=n):
            request = assemble(tiny_data.test, plan)
            diff = max_abs_diff(scorer(request), model.predict(request))
            assert diff <= TOLERANCE, f"{key} projected N={n}: max abs diff {diff:.2e}"


@pytest.mark.parametrize("cross_ids", [True, False])
def test_cross_ids_are_scored_on_the_candidate_side_of_every_path(cross_ids, fitted, tiny_data):
    """With and without the user x item cross ids (item-side fields), every exact path gives
    the library's scores."""
    from neural.serving_paths import serving_paths

    model = fitted("neural/mmoe", {**SMALL, "cross_ids": cross_ids})
    assert (model.layout.crosses is not None) == cross_ids
    paths = serving_paths(model)
    request = assemble(tiny_data.test, plan_requests(tiny_data.test, 1000, n_requests=1)[0])
    library = model.predict(request)
    for name in ("eager_per_candidate", "eager", "request_shared", "projected", "compiled"):
        if name in paths:
            diff = max_abs_diff(paths[name](request), library)
            assert diff <= TOLERANCE, f"cross_ids={cross_ids} {name}: max abs diff {diff:.2e}"


def test_projected_path_falls_back_per_field_over_its_memory_budget(fitted, tiny_data):
    """Fields whose tables do not fit keep their embeddings and are multiplied: same scores."""
    from neural.projected import ProjectedScorer

    model = fitted("neural/mmoe", {})
    full = ProjectedScorer(model)
    sizes = model.layout.sizes()
    smallest = sorted(full.projected_fields, key=lambda f: sizes[f])
    budget = sum(sizes[f] for f in smallest[:4]) * full.width * 4
    partial = ProjectedScorer(model, budget_bytes=budget)
    assert sorted(partial.projected_fields) == sorted(smallest[:4])
    assert partial.table_bytes <= budget
    assert len(partial.fallback_fields) == len(model.layout.item_fields) - 4
    assert full.table_bytes == sum(sizes[f] for f in full.projected_fields) * full.width * 4
    none = ProjectedScorer(model, budget_bytes=0)
    assert none.projected_fields == []
    request = assemble(tiny_data.test, plan_requests(tiny_data.test, 1000, n_requests=1)[0])
    for scorer in (partial, none):
        assert max_abs_diff(scorer(request), model.predict(request)) <= TOLERANCE


def test_projected_path_rebuilds_its_tables_when_the_weights_change(fitted, tiny_data):
    import torch

    from neural.projected import ProjectedScorer

    model = fitted("neural/mmoe", SMALL)
    scorer = ProjectedScorer(model)
    request = assemble(tiny_data.test, plan_requests(tiny_data.test, 100, n_requests=1)[0])
    table = model.network.inputs.table
    saved = table.detach().clone()
    try:
        with torch.no_grad():
            table.mul_(3.0)
        assert max_abs_diff(scorer(request), model.predict(request)) <= TOLERANCE
    finally:
        with torch.no_grad():
            table.copy_(saved)


def test_mac_count_of_mmoe_matches_an_independent_count(fitted, tiny_data):
    """Multiply-adds counted from the dispatched operations equal a count by hand from the
    reference MMoE's sizes, for the eager forward and for the projected path."""
    from neural.projected import ProjectedScorer
    from neural.roofline import request_macs
    from neural.serving import RequestScorer

    model = fitted("neural/mmoe", {})
    config, d = model.config, model.config.embedding_dim
    experts, (h1, h2), (t,) = config.n_experts, config.mlp_dims, config.tower_dims
    n = 1000
    request = assemble(tiny_data.test, plan_requests(tiny_data.test, n, n_requests=1)[0])
    user_ids = sum(len(r.codes) for r in request.user_multi.values())
    list_ids = sum(len(r.codes) for r in request.item_multi.values())
    n_single = len(model.layout.item_single)  # 9 impression fields, 12 with the cross ids
    in_dim = (13 + n_single + 1) * d + 12
    rest = (experts * h1 * h2  # second expert layer
            + 2 * experts * h2  # two gated mixes of the experts
            + 2 * (h2 * t + t))  # two towers
    # Eager: the whole first layer (experts and gates) per candidate, lists pooled once.
    eager = n * (in_dim * (experts * h1 + 2 * experts) + rest) + d * (user_ids + list_ids)
    assert request_macs(RequestScorer(model).eager, request) == eager
    # Projected: per candidate, its single ids + its list ids + 4 dense rows + the user row
    # summed at the full first-layer width; the user term once; user lists pooled once. The
    # second expert layer reads only the units active on some candidate (neural/pruned.py),
    # counted here from the plain network's own first layer.
    import torch

    network = model.network
    with torch.inference_mode():
        x = network.inputs(RequestScorer(model).batch(request))
        first = torch.relu(x @ network.experts.first_weight.flatten(1)
                           + network.experts.first_bias)
    active = int((first > 0).any(0).sum())  # over all experts
    assert active < experts * h1  # some unit is zero on every candidate: pruning has work
    width = experts * h1 + 2 * experts
    user_dim = 13 * d + 8
    projected = (n * (rest - experts * h1 * h2 + active * h2)
                 + width * (n * (n_single + 4 + 1) + list_ids) + user_dim * width
                 + d * user_ids)
    from neural.projected import CALIBRATION_ROWS

    scorer = ProjectedScorer(model)
    for _ in range(CALIBRATION_ROWS // n):  # the first requests calibrate the pruning
        scorer(request)
    assert scorer.calibrated
    assert request_macs(scorer, request) == projected


def test_roofline_fields_use_the_measured_peak():
    from neural.roofline import roofline_fields, sgemm_peak_flops

    peak = sgemm_peak_flops(1)
    assert 1e8 < peak < 1e13  # between 0.1 and 10,000 GFLOP/s: a measurement, not a constant
    fields = roofline_fields(10**9, 20.0, 1)
    assert fields["macs_per_request"] == 10**9
    assert fields["fraction_of_sgemm_peak"] == pytest.approx(2e9 / 0.02 / peak)
    assert roofline_fields(None, 20.0, 1) == {"macs_per_request": None}


def test_report_latency_table_shows_macs_and_fraction_of_peak():
    from bench.report.render import Table
    from bench.report.sections import latency_records

    base = {"model": "neural/mmoe", "n_candidates": 1000, "threads": 1, "error": None}
    records = [{**base, "path": "eager", "p50_ms": 10.0, "macs_per_request": 540_800_000,
                "fraction_of_sgemm_peak": 0.6},
               {**base, "path": "library", "p50_ms": 11.0}]
    table = next(b for b in latency_records(records)[0].blocks if isinstance(b, Table))
    column = table.header.index("MACs, % of peak")
    cells = {row[1]: row[column] for row in table.rows}
    assert cells == {"eager": "540.8 M, 60%", "library": "—"}


def test_self_calibrating_paths_calibrate_on_other_requests_before_timing(fitted, tiny_data):
    """bench.latency hands a path with a `calibrate` method requests of the largest N that are
    not the timed ones; the projected path is calibrated after them, and still exact."""
    from bench.latency import calibrate_paths
    from neural.serving_paths import serving_paths

    seen = []

    class Tuning:
        def __call__(self, split):
            return None

        def calibrate(self, requests):
            seen.extend(requests)

    class Tuned(Tuning):
        calibrated = True

        def calibrate(self, requests):
            raise AssertionError("a calibrated path is calibrated again")

    model = fitted("neural/mmoe", SMALL)
    paths = {"tuning": Tuning(), "tuned": Tuned(), **serving_paths(model)}
    calibrate_paths(paths, tiny_data.test, 1000, seed=0)
    timed = {r.user_row for r in plan_requests(tiny_data.test, 1000, seed=0)}
    assert seen and all(len(r) == 1000 for r in seen)
    assert not {int(r.name.split("-")[1]) for r in seen} & timed
    assert paths["projected"].calibrated
    request = assemble(tiny_data.test, plan_requests(tiny_data.test, 1000, n_requests=1)[0])
    assert max_abs_diff(paths["projected"](request), model.predict(request)) <= TOLERANCE


def test_projected_path_names_the_field_of_a_code_outside_its_vocabulary(fitted, tiny_data):
    import dataclasses

    from neural.projected import ProjectedScorer

    model = fitted("neural/mmoe", SMALL)
    request = assemble(tiny_data.test, plan_requests(tiny_data.test, 10, n_requests=1)[0])
    column = list(model.layout.item_single).index("207")
    codes = request.item_codes.copy()
    codes[3, column] = model.layout.sizes()["207"]  # one past the last code
    with pytest.raises(ValueError, match="field 207 has code"):
        ProjectedScorer(model)(dataclasses.replace(request, item_codes=codes))


def test_one_request_user_side_equals_the_general_conversion(fitted, tiny_data):
    """The serving shortcut for one request's user rows gives the general path's tensors to
    the bit, and names the field of a code outside its vocabulary."""
    import dataclasses

    import torch

    from ccp.data import schema
    from neural.inputs import _singles, field_bags, user_side

    model = fitted("neural/mmoe", SMALL)
    layout, pooling = model.layout, model.config.pooling
    for plan in plan_requests(tiny_data.test, 20, n_requests=5):
        request = assemble(tiny_data.test, plan)
        single, bags = user_side(request, layout, pooling)
        assert torch.equal(single, _singles(request.user_codes, schema.USER_SINGLE, layout, ""))
        general = field_bags(schema.USER_MULTI, request.user_multi, layout, pooling, "")
        for part in ("offsets", "index", "weight"):
            assert torch.equal(getattr(bags, part), getattr(general, part)), part
    codes = request.user_codes.copy()
    codes[0, 2] = -1
    with pytest.raises(ValueError, match=f"field {schema.USER_SINGLE[2]} has code"):
        user_side(dataclasses.replace(request, user_codes=codes), layout, pooling)


def test_a_composed_path_counts_the_multiply_adds_of_its_parts(fitted, tiny_data):
    """dnn_ctr_x_cvr's paths are composed from its two networks' paths; every one of them,
    ONNX Runtime's too, counts the parts' multiply-adds (it counted none for `compiled`)."""
    from neural.roofline import request_macs
    from neural.serving_paths import serving_paths

    model = fitted("neural/dnn_ctr_x_cvr", SMALL)
    request = assemble(tiny_data.test, plan_requests(tiny_data.test, 50, n_requests=1)[0])
    paths = serving_paths(model)
    parts = {task: serving_paths(part) for task, part in model.parts.items()}
    for name in ("eager", "request_shared", "compiled"):
        if name in paths:
            expected = sum(request_macs(p[name], request) for p in parts.values())
            assert request_macs(paths[name], request) == expected > 0, name


def test_measure_model_calibrates_on_the_split_it_is_given_for_calibration(fitted, tiny_data):
    """bench latency, the run's latency step and the gate calibrate on validation requests:
    the unit order is a choice, made off the test rows."""
    import numpy as np

    from bench.latency import measure_model

    seen = []

    class Tuning:
        def __call__(self, split):
            return model.predict(split)

        def calibrate(self, requests):
            seen.extend(requests)

    model = fitted("neural/mmoe", SMALL)
    measure_model(model, {"library": model.predict, "tuning": Tuning()}, tiny_data.test,
                  candidates=(10,), threads=(1,), calibration=tiny_data.valid, warmup=1,
                  min_repeats=2, budget_s=0.0)
    ids = np.concatenate([r.sample_id for r in seen])
    assert len(ids) and np.isin(ids, tiny_data.valid.sample_id).all()
    assert not np.isin(ids, tiny_data.test.sample_id).any()
