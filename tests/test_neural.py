"""The neural zoo: every registered network, its losses, the shared input layer and trainer.

Parameterised over neural/registry.py, so a model is tested the day it is registered. Networks
are kept tiny (embedding 4, MLP [16, 8]) so the whole file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench.harness import fitted  # noqa: E402
from ccp.data import schema  # noqa: E402
from ccp.data.dataset import Dataset, Ragged, Split  # noqa: E402
from ccp.model import check_outputs  # noqa: E402
from neural.config import NeuralConfig  # noqa: E402
from neural.inputs import Bags, FeatureEmbedding, FieldLayout, TensorSplit  # noqa: E402
from neural.registry import SPECS  # noqa: E402
from neural.trainer import epoch_order, priors_of, resolve  # noqa: E402

IDS = [s.name for s in SPECS]
# Models that are one network (the pair dnn_ctr_x_cvr is two registered ones, fitted apart).
NETWORKS = [s for s in SPECS if "network" in s.params]
NETWORK_IDS = [s.name for s in NETWORKS]
TINY = {"embedding_dim": 4, "mlp_dims": (16, 8), "tower_dims": (4,), "n_experts": 2,
        "n_shared_experts": 1, "n_task_experts": 1, "predict_batch_size": 64}
VOCAB = {f: 12 for f in schema.ALL_FIELDS}


# ---- random data in the Dataset layout (labels guaranteed on every split) ----

def _ragged(rng, n_rows, vocab, max_len):
    lengths = rng.integers(0, max_len + 1, n_rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    codes = rng.integers(0, vocab, offsets[-1]).astype(np.int64)
    return Ragged(offsets, codes, rng.uniform(0.5, 3.0, offsets[-1]).astype(np.float32))


def random_split(name, n, n_requests, rng):
    request = np.sort(rng.integers(0, n_requests, n)).astype(np.int64)
    click = (rng.random(n) < 0.3).astype(np.int8)
    click[:4] = 1
    purchase = (click & (rng.random(n) < 0.4)).astype(np.int8)
    purchase[:2] = 1
    return Split(
        name=name, click=click, purchase=purchase, sample_id=np.arange(n, dtype=np.int64),
        request=request,
        item_codes=rng.integers(0, 12, (n, len(schema.IMPRESSION_SINGLE))).astype(np.int64),
        item_multi={f: _ragged(rng, n, 12, 3) for f in schema.ITEM_MULTI},
        dense=rng.random((n, len(schema.DENSE_FEATURES))).astype(np.float32),
        request_key=np.array([f"r{i}" for i in range(n_requests)]),
        user_codes=rng.integers(0, 12, (n_requests, len(schema.USER_SINGLE))).astype(np.int64),
        user_multi={f: _ragged(rng, n_requests, 12, 8) for f in schema.USER_MULTI})


@pytest.fixture(scope="module")
def random_data():
    rng = np.random.default_rng(7)
    return Dataset(name="random", fingerprint="random", train=random_split("train", 96, 12, rng),
                   valid=random_split("valid", 48, 6, rng), test=random_split("test", 48, 6, rng),
                   vocab_sizes=dict(VOCAB))


def build(spec, data=None, **config):
    params = dict(spec.params)
    cls = resolve(params.pop("network"))
    vocab = data.vocab_sizes if data is not None else VOCAB
    priors = priors_of(data.train) if data is not None else {"ctr": .3, "cvr": .4, "ctcvr": .12}
    torch.manual_seed(0)
    return cls(FieldLayout.from_vocab_sizes(vocab),
               NeuralConfig.with_overrides({**TINY, **config}), priors, **params)


def batch_of(split, pooling="mean"):
    data = TensorSplit(split, FieldLayout.from_vocab_sizes(VOCAB), pooling)
    return data.batch(torch.arange(len(data)))


def fit(spec, data, seed=0, profile=None, **config):
    from ccp.profiles import get_profile

    return fitted(spec, data, get_profile("tiny").with_overrides(profile or {}), seed,
                  threads=1, extra={**TINY, **config})


# ---- every registered network ----

@pytest.mark.parametrize("spec", NETWORKS, ids=NETWORK_IDS)
def test_forward_shapes_ranges_and_finite_loss(spec, random_data):
    network = build(spec)
    batch = batch_of(random_data.train)
    out = network(batch)
    for task in ("ctr", "cvr", "ctcvr"):
        assert out[task].shape == (len(batch),), task
        assert torch.isfinite(out[task]).all(), task
        assert ((out[task] >= 0) & (out[task] <= 1)).all(), task
    assert torch.isfinite(network.loss(out, batch))
    assert set(network.OUTPUTS_HOW) == {"ctr", "cvr", "ctcvr"}


@pytest.mark.parametrize("spec", NETWORKS, ids=NETWORK_IDS)
def test_every_parameter_receives_a_gradient(spec, random_data):
    # Dense table gradients, so that the table's gradient is an ordinary .grad.
    network = build(spec, embedding_gradients="dense")
    batch = batch_of(random_data.train)
    network.loss(network(batch), batch).backward()
    starved = [name for name, p in network.named_parameters()
               if p.grad is None or not torch.any(p.grad != 0)]
    assert not starved, f"no gradient reaches {starved}"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_same_seed_same_predictions_other_seed_other(spec, random_data):
    first = fit(spec, random_data, seed=5).predict(random_data.test)
    again = fit(spec, random_data, seed=5).predict(random_data.test)
    other = fit(spec, random_data, seed=6).predict(random_data.test)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert any(not np.array_equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_runs_on_the_real_sample_rows(spec, sample_data):
    model = fit(spec, sample_data)
    outputs = check_outputs(model.predict(sample_data.test), len(sample_data.test))
    assert all(np.isfinite(v).all() for v in outputs.values())
    for ranker in getattr(model, "parts", {"": model}).values():
        assert ranker.info["steps_run"] >= 1
    assert model.n_params() > 0


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_early_stopping_reads_the_models_stop_tasks(spec, random_data):
    """Multi-task models keep the check with the best mean validation AUC of CTR, CVR and
    CTCVR; a single-task model the check best on its own task (README, "Early stopping"); the
    pair dnn_ctr_x_cvr stops each of its two networks on its own task."""
    model = fit(spec, random_data, profile={"neural_max_epochs": 6, "neural_patience": 100})
    for ranker in getattr(model, "parts", {"": model}).values():
        single = getattr(ranker.network_cls, "TASK", "")
        expected = (single,) if single else ("ctr", "cvr", "ctcvr")
        info = ranker.info
        assert info["early_stop_tasks"] == ",".join(expected)
        history = json.loads(info["history"])
        assert len(history) == 6 and info["stopped_by"] == "cap"
        means = [np.mean([check[f"valid_auc_{task}"] for task in expected]) for check in history]
        assert info["best_check"] == 1 + int(np.argmax(np.round(means, 5)))
        assert info["best_step"] == history[info["best_check"] - 1]["step"]


# ---- the training budget: checks within epochs, best check kept, patience, cap ----

def _spec(name):
    return next(s for s in SPECS if s.name == name)


def test_checks_within_an_epoch_and_the_cap(random_data):
    """Batches of 8 rows: 12 steps per epoch of the 96 rows, a check every 3 steps; with
    patience out of reach the fit runs to the cap and says so."""
    model = fit(_spec("mmoe"), random_data, profile={
        "neural_batch_size": 8, "neural_checks_per_epoch": 4, "neural_max_epochs": 2,
        "neural_patience": 100})
    info = model.info
    history = json.loads(info["history"])
    assert [c["step"] for c in history] == [3, 6, 9, 12, 15, 18, 21, 24]
    assert [c["epochs_seen"] for c in history[:4]] == [0.25, 0.5, 0.75, 1.0]
    assert info["stopped_by"] == "cap" and info["steps_run"] == info["max_steps"] == 24
    assert info["checks_run"] == 8 and info["epochs_run"] == 2


def test_patience_stops_and_the_best_check_is_restored(random_data):
    """Patience 2: the fit ends two checks after its best, and the kept weights are the best
    check's (their validation AUCs are the ones recorded at that check)."""
    from neural.validation import validation_aucs

    model = fit(_spec("mmoe"), random_data, learning_rate=3e-2, profile={
        "neural_batch_size": 8, "neural_max_epochs": 50, "neural_patience": 2})
    info = model.info
    history = json.loads(info["history"])
    assert info["stopped_by"] == "patience"
    assert info["checks_run"] == info["best_check"] + 2 < info["max_checks"]
    best = history[info["best_check"] - 1]
    assert best["step"] < history[-1]["step"]  # so restoring the best changes the weights
    aucs = validation_aucs(model.predict(random_data.valid), random_data.valid,
                           ("ctr", "cvr", "ctcvr"))
    for task, value in aucs.items():
        assert round(value, 6) == best[f"valid_auc_{task}"], task


def test_clicked_row_model_gets_the_steps_of_an_all_rows_model(random_data):
    """dnn_cvr trains on the clicked rows (27 of 96): the same steps as dnn_ctr, so several
    epochs of its own rows where dnn_ctr runs two, checked at least 4 times per such epoch."""
    profile = {"neural_batch_size": 8, "neural_max_epochs": 2, "neural_patience": 100}
    ctr = fit(_spec("dnn_ctr"), random_data, profile=profile).info
    cvr = fit(_spec("dnn_cvr"), random_data, profile=profile).info
    assert cvr["steps_run"] == ctr["steps_run"] == cvr["max_steps"] == 24
    clicked = int(random_data.train.click.sum())
    assert cvr["n_train_rows"] == clicked
    own_epoch_steps = -(-clicked // 8)  # its last batch of an epoch is short
    assert cvr["epochs_run"] == pytest.approx(24 / own_epoch_steps, abs=1)
    assert cvr["epochs_run"] > 2 * ctr["epochs_run"]
    assert ctr["check_every_steps"] == 3 and cvr["check_every_steps"] == 1
    assert cvr["checks_run"] == 24


def test_chunked_training_checks_alike(random_data):
    """Out of core (chunks of 40 rows: 3 train chunks, 2 validation chunks): the same steps,
    checks within the epoch, and a check scored chunk by chunk equals one scored whole."""
    profile = {"neural_batch_size": 8, "neural_max_epochs": 2, "neural_patience": 100}
    whole = fit(_spec("esmm"), random_data, profile=profile)
    chunked = fit(_spec("esmm"), random_data, profile={**profile, "neural_chunk_rows": 40})
    info = chunked.info
    assert info["train_chunks"] == 3 and info["epoch_steps_all_rows"] == 5 + 5 + 2
    assert info["steps_run"] == whole.info["steps_run"] == 24
    history = json.loads(info["history"])
    assert [c["step"] for c in history[:4]] == [3, 6, 9, 12]
    outputs = chunked.score_split(random_data.valid)
    np.testing.assert_allclose(outputs["ctr"], chunked.score_split(
        random_data.valid, TensorSplit(random_data.valid, chunked.layout, "mean"))["ctr"],
        rtol=1e-6)


def test_check_plan_in_steps():
    """small: 196 steps per epoch of all rows; dnn_cvr's clicked rows take 10 per epoch."""
    from ccp.profiles import get_profile
    from neural.stopping import CheckPlan

    profile = get_profile("small")
    all_rows = CheckPlan.from_profile(profile, 196, 196)
    clicked = CheckPlan.from_profile(profile, 196, 10)
    assert (all_rows.check_every, all_rows.patience, all_rows.max_steps) == (49, 2, 196 * 8)
    assert all_rows.max_checks == 4 * 8
    # Checked every 3 steps (4 times per epoch of its rows); patience and cap: the same steps.
    assert (clicked.check_every, clicked.max_steps) == (3, 196 * 8)
    assert clicked.patience * clicked.check_every >= all_rows.patience * all_rows.check_every
    assert (clicked.patience - 1) * clicked.check_every < 2 * 49
    # Fewer steps than checks: a check after every step, never past the cap.
    tiny = CheckPlan.from_profile(profile, 2, 2)
    assert (tiny.check_every, tiny.max_checks, tiny.steps_before(tiny.max_checks)) == (1, 16, 1)


def test_check_plan_floor_gives_a_small_train_set_the_proportions_of_a_large_one():
    """2,000 rows at batch 2,048 is one step per epoch; floored at 50,000 rows the unit is
    25 steps, and a clicked-row model's own epoch is scaled alike."""
    from ccp.profiles import get_profile
    from neural.stopping import CheckPlan

    profile = get_profile("small").with_overrides({"neural_min_epoch_rows": 50_000})
    small = CheckPlan.from_profile(profile, 1, 1, batch_size=2048)
    assert (small.epoch_steps, small.check_every, small.max_steps) == (25, 7, 25 * 8)
    assert small.patience * small.check_every >= 2 * 7
    clicked = CheckPlan.from_profile(profile, 1, 1, batch_size=2048)  # own rows: one step too
    assert clicked.max_steps == small.max_steps
    # Large data, or no floor: unchanged.
    large = CheckPlan.from_profile(profile, 196, 10, batch_size=2048)
    assert large == CheckPlan.from_profile(get_profile("small"), 196, 10, batch_size=2048)
    unfloored = CheckPlan.from_profile(get_profile("small"), 1, 1, batch_size=2048)
    assert (unfloored.max_steps, unfloored.check_every) == (8, 1)


def test_a_check_scores_only_its_task_rows_and_builds_nothing(random_data, monkeypatch):
    """The CVR-only check scores the clicked validation rows; a check reuses batches built
    once (no TensorSplit.batch call)."""
    from neural.validation import ValidationChecks

    model = fit(_spec("dnn_cvr"), random_data)
    cvr_checks = ValidationChecks(model, random_data.valid, ("cvr",))
    assert len(cvr_checks.split) == int(random_data.valid.click.sum())
    all_checks = ValidationChecks(model, random_data.valid, ("ctr", "cvr", "ctcvr"))
    assert len(all_checks.split) == len(random_data.valid)
    # The clicked-rows check gives the same CVR AUC as scoring every row.
    assert cvr_checks.aucs()["cvr"] == all_checks.aucs()["cvr"]
    calls = []
    batch = TensorSplit.batch
    monkeypatch.setattr(TensorSplit, "batch", lambda self, rows: (calls.append(1),
                                                                  batch(self, rows))[1])
    all_checks.aucs()
    assert not calls


def test_check_rows_keep_every_clicked_row_and_weigh_a_share_of_the_rest(random_data):
    from neural.validation import check_rows

    valid = random_data.valid
    sample, weights = check_rows(valid, ("ctr", "cvr", "ctcvr"), 0.25)
    assert int(sample.click.sum()) == int(valid.click.sum())
    unclicked = int((valid.click == 0).sum())
    assert abs(int((sample.click == 0).sum()) - 0.25 * unclicked) < 5 * (0.25 * unclicked) ** 0.5
    assert set(weights[sample.click == 1]) == {1.0} and set(weights[sample.click == 0]) == {4.0}
    again, _ = check_rows(valid, ("ctr", "cvr", "ctcvr"), 0.25)  # the same rows every time
    assert np.array_equal(again.sample_id, sample.sample_id)
    assert check_rows(valid, ("ctr",), 1.0)[0] is valid
    assert len(check_rows(valid, ("cvr",), 0.25)[0]) == int(valid.click.sum())


def test_weighted_check_auc_estimates_the_full_auc_without_bias(monkeypatch):
    """CTCVR's negatives are clicked non-buyers (all kept) and unclicked rows (a share kept):
    unweighted, the sample over-represents the former and the AUC is biased; weighted by
    1/share it is not (mean over many samples within a few standard errors of the full AUC)."""
    from ccp.metrics import auc
    from neural import validation

    rng = np.random.default_rng(0)
    n = 20_000
    click = (rng.random(n) < 0.1).astype(np.int8)
    buy = (click == 1) & (rng.random(n) < 0.3)
    # Clicked non-buyers score high, unclicked rows low: their mix decides the AUC.
    score = np.where(buy, 1.0, np.where(click == 1, 0.8, 0.0)) + rng.normal(0, 0.5, n)

    class Rows:
        name = "valid"

        def __init__(self, rows):
            self.click, self.buy, self.score = click[rows], buy[rows], score[rows]

        def __len__(self):
            return len(self.click)

        def take(self, rows, name=None):
            kept = Rows(np.arange(0))
            kept.click, kept.buy, kept.score = self.click[rows], self.buy[rows], self.score[rows]
            return kept

    full = auc(buy, score)
    weighted, plain = [], []
    for seed in range(40):
        monkeypatch.setattr(validation, "CHECK_ROWS_SEED", seed)
        sample, weights = validation.check_rows(Rows(np.arange(n)), ("ctcvr",), 0.25)
        weighted.append(auc(sample.buy, sample.score, weights))
        plain.append(auc(sample.buy, sample.score))
    se = np.std(weighted) / np.sqrt(len(weighted))
    assert abs(np.mean(weighted) - full) < 4 * se + 1e-4
    assert abs(np.mean(plain) - full) > 10 * se  # the bias the weights remove


def test_dnn_ctr_x_cvr_is_dnn_ctr_times_dnn_cvr(random_data):
    """The pair's pCTR is dnn_ctr's, its pCVR dnn_cvr's (same seed, same fits), pCTCVR their
    product; its record carries both fits' budgets."""
    pair = fit(_spec("dnn_ctr_x_cvr"), random_data, seed=2)
    ctr = fit(_spec("dnn_ctr"), random_data, seed=2).predict(random_data.test)
    cvr = fit(_spec("dnn_cvr"), random_data, seed=2).predict(random_data.test)
    got = pair.predict(random_data.test)
    np.testing.assert_array_equal(got["ctr"], ctr["ctr"])
    np.testing.assert_array_equal(got["cvr"], cvr["cvr"])
    np.testing.assert_array_equal(got["ctcvr"], ctr["ctr"] * cvr["cvr"])
    assert not np.array_equal(got["ctcvr"], ctr["ctcvr"])  # dnn_ctr's uses the CVR prior
    assert pair.info["ctr_early_stop_tasks"] == "ctr" and pair.info["cvr_train_rows"] == "clicked"
    assert pair.info["ctr_stopped_by"] in ("patience", "cap")
    assert pair.CONSTANT_OUTPUTS == () and set(pair.OUTPUTS_HOW) == {"ctr", "cvr", "ctcvr"}


# ---- what each loss trains on ----

def _cvr_grad_only_through_product(network, batch) -> bool:
    """Whether d loss / d CVR logit is that of the pCTCVR = pCTR x pCVR term alone."""
    from neural.network import product_bce

    out = network(batch)
    grad_logit, = torch.autograd.grad(network.loss(out, batch), [out["cvr_logit"]])
    through_product, = torch.autograd.grad(product_bce(out, batch.conversion),
                                           [out["cvr_logit"]])
    return torch.allclose(grad_logit, through_product, rtol=1e-4, atol=1e-9)


def test_esmm_cvr_tower_gets_no_direct_purchase_loss(random_data):
    batch = batch_of(random_data.train)
    spec = next(s for s in SPECS if s.name == "esmm")
    assert _cvr_grad_only_through_product(build(spec), batch)
    # The check can fail: MMoE's default loss fits pCVR to purchases on clicked rows.
    mmoe = next(s for s in SPECS if s.name == "mmoe")
    assert not _cvr_grad_only_through_product(build(mmoe), batch)


def _exact_product_bce(a, b, y):
    """Per-row BCE of sigmoid(a) x sigmoid(b) and its d/da, in float64 without cancellation."""
    a, b, y = (np.asarray(v, dtype=np.float64) for v in (a, b, y))
    log_p = -np.log1p(np.exp(-a)) - np.log1p(np.exp(-b))
    # 1 - p = p (e^-a + e^-b + e^-(a+b)): exact where p is near 1; log1p(-p) where p is small
    log_1mp = np.where(log_p < -np.log(2), np.log1p(-np.exp(np.minimum(log_p, -np.log(2)))),
                       np.log(np.exp(-a) + np.exp(-b) + np.exp(-a - b)) + log_p)
    loss = -(y * log_p + (1 - y) * log_1mp)
    sigmoid_minus_a = 1 / (1 + np.exp(a))  # d log p / da
    grad_a = -(y * sigmoid_minus_a - (1 - y) * np.exp(log_p - log_1mp) * sigmoid_minus_a)
    return loss, grad_a


def test_product_loss_is_the_exact_bce_of_the_product():
    """pCTR x pCVR far below 1e-7 or near 1: the loss and its gradient stay exact."""
    from neural.network import product_log_loss

    values = [-30.0, -16.0, -9.0, -4.0, 0.0, 4.0, 9.0, 16.0, 30.0]
    a, b = (v.ravel() for v in np.meshgrid(values, values))
    a, b, y = np.tile(a, 2), np.tile(b, 2), np.repeat([0.0, 1.0], len(a))
    want_loss, want_grad = _exact_product_bce(a, b, y)
    logit_a = torch.tensor(a, dtype=torch.float32, requires_grad=True)
    loss = product_log_loss(logit_a, torch.tensor(b, dtype=torch.float32),
                            torch.tensor(y, dtype=torch.float32))
    grad, = torch.autograd.grad(loss.sum(), [logit_a])
    np.testing.assert_allclose(loss.detach().numpy(), want_loss, rtol=1e-5, atol=0)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-5, atol=0)
    # The check can fail: BCE on the product clipped to [1e-7, 1 - 1e-7] (the old loss) is
    # 16.1 instead of 18.0 on a positive row at logits -9 / -9, with zero gradient.
    p = torch.sigmoid(torch.tensor(a)) * torch.sigmoid(torch.tensor(b))
    clipped = torch.nn.functional.binary_cross_entropy(p.clamp(1e-7, 1 - 1e-7), torch.tensor(y),
                                                       reduction="none")
    assert not np.allclose(clipped.numpy(), want_loss, rtol=1e-5, atol=0)


def test_entire_space_loss_pushes_a_very_unlikely_conversion_up():
    """A converting row with logits -9 / -9 (pCTCVR 1.5e-8): both towers get a gradient."""
    from types import SimpleNamespace

    from neural.network import clicked_then_product, from_logits, sum_terms

    ctr, cvr = (torch.tensor([-9.0, 0.0], requires_grad=True) for _ in range(2))
    out = from_logits(ctr=ctr, cvr=cvr)
    out["ctcvr"] = out["ctr"] * out["cvr"]
    batch = SimpleNamespace(click=torch.tensor([1.0, 0.0]), conversion=torch.tensor([1.0, 0.0]))
    loss = sum_terms(clicked_then_product(out, batch, "entire_space"))
    grad_ctr, grad_cvr = torch.autograd.grad(loss, [ctr, cvr])
    want_loss, want_grad = _exact_product_bce([-9.0, 0.0], [-9.0, 0.0], [1.0, 0.0])
    # mean over 2 rows of CTR BCE + CTCVR BCE; the CVR logit only sees the CTCVR term
    assert float(grad_cvr[0]) == pytest.approx(want_grad[0] / 2, rel=1e-5)
    assert float(grad_cvr[0]) < -0.49 and float(grad_ctr[0]) < -0.99
    assert float(loss.detach()) == pytest.approx(
        (want_loss.sum() + np.log1p(np.exp(9.0)) + np.log(2)) / 2, rel=1e-5)


def test_esmm_loss_ignores_purchase_labels_of_unclicked_rows(random_data):
    spec = next(s for s in SPECS if s.name == "esmm")
    network = build(spec)
    batch = batch_of(random_data.train)
    out = network(batch)
    changed = dataclasses.replace(batch, purchase=torch.where(batch.click == 1, batch.purchase,
                                                              1 - batch.purchase))
    assert torch.equal(network.loss(out, batch), network.loss(out, changed))


def test_dnn_cvr_trains_on_clicked_rows_only(random_data):
    spec = next(s for s in SPECS if s.name == "dnn_cvr")
    model = fit(spec, random_data)
    assert model.info["n_train_rows"] == int(random_data.train.click.sum())
    # Scrambling the features of unclicked training rows changes nothing ...
    train = random_data.train
    unclicked = train.click == 0
    rng = np.random.default_rng(1)
    scrambled = dataclasses.replace(
        train, item_codes=np.where(unclicked[:, None], rng.integers(0, 12, train.item_codes.shape),
                                   train.item_codes),
        dense=np.where(unclicked[:, None], rng.random(train.dense.shape, dtype=np.float32),
                       train.dense))
    other = dataclasses.replace(random_data, train=scrambled)
    same = fit(spec, other).predict(random_data.test)
    base = model.predict(random_data.test)
    np.testing.assert_array_equal(base["cvr"], same["cvr"])
    # ... while a model trained on all rows notices (so the check can fail).
    ctr_spec = next(s for s in SPECS if s.name == "dnn_ctr")
    assert not np.array_equal(fit(ctr_spec, random_data).predict(random_data.test)["ctr"],
                              fit(ctr_spec, other).predict(random_data.test)["ctr"])


def test_weighted_loss_outputs_match_the_train_rates(tiny_data, tiny_profile):
    """The one score's per-task constants make each output's train mean the task's rate
    (pCVR over clicked rows); the loss alone does not (it fits a weighted mean)."""
    spec = next(s for s in SPECS if s.name == "weighted_loss")
    model = fitted(spec, tiny_data, tiny_profile, 0, threads=1)
    train = tiny_data.train
    predicted = model.predict(train)
    clicked = train.click == 1
    assert predicted["ctr"].mean() == pytest.approx(train.click.mean(), rel=1e-3)
    assert predicted["cvr"][clicked].mean() == pytest.approx(train.purchase[clicked].mean(),
                                                              rel=1e-3)
    assert predicted["ctcvr"].mean() == pytest.approx((train.click & train.purchase).mean(),
                                                      rel=1e-3)


def test_escm2_dr_trains_stably(random_data):
    spec = next(s for s in SPECS if s.name == "escm2_dr")
    model = fit(spec, random_data, learning_rate=1e-2)
    assert all(np.isfinite(v).all() for v in model.predict(random_data.test).values())


# ---- the shared input layer ----

def test_bags_take_matches_ragged_take():
    rng = np.random.default_rng(0)
    ragged = _ragged(rng, 20, 12, 5)
    bags = Bags(torch.from_numpy(ragged.offsets), torch.from_numpy(ragged.codes),
                torch.from_numpy(ragged.weights))
    rows = np.array([3, 3, 0, 19, 7])
    want = ragged.take(rows)
    got = bags.take(torch.from_numpy(rows))
    np.testing.assert_array_equal(got.offsets.numpy(), want.offsets)
    np.testing.assert_array_equal(got.index.numpy(), want.codes)
    np.testing.assert_array_equal(got.weight.numpy(), want.weights)


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_input_layer_equals_a_per_row_reference(random_data, pooling):
    """Per-request pooling indexed back equals pooling each impression's lists one by one."""
    split = random_data.train
    layout = FieldLayout.from_vocab_sizes(VOCAB)
    emb = FeatureEmbedding(layout, 3, "dense")
    rows = torch.tensor([5, 0, 40, 41, 95])
    x = emb(TensorSplit(split, layout, pooling).batch(rows))
    table = emb.table.detach()

    def field_vector(field, code):
        return table[layout.offsets[field] + code]

    def pooled(field, ragged, row):
        lo, hi = ragged.offsets[row], ragged.offsets[row + 1]
        total = sum((float(w) * field_vector(field, int(c))
                     for c, w in zip(ragged.codes[lo:hi], ragged.weights[lo:hi])),
                    torch.zeros(3))
        return total / max(hi - lo, 1) if pooling == "mean" else total

    for i, row in enumerate(rows.tolist()):
        r = split.request[row]
        parts = [field_vector(f, split.user_codes[r, k]) for k, f in
                 enumerate(schema.USER_SINGLE)]
        parts += [pooled(f, split.user_multi[f], r) for f in schema.USER_MULTI]
        parts += [field_vector(f, split.item_codes[row, k]) for k, f in
                  enumerate(schema.IMPRESSION_SINGLE)]
        parts += [pooled(f, split.item_multi[f], row) for f in schema.ITEM_MULTI]
        parts.append(torch.from_numpy(split.dense[row]))
        torch.testing.assert_close(x[i].detach(), torch.cat(parts), rtol=1e-5, atol=1e-6)


def test_compacted_batch_gives_the_same_outputs(random_data):
    spec = next(s for s in SPECS if s.name == "mmoe")
    network = build(spec).eval()
    batch = batch_of(random_data.train)
    with torch.no_grad():
        plain, compact = network(batch), network(batch.compact())
    assert len(batch.compact().table_rows) < FieldLayout.from_vocab_sizes(VOCAB).n_rows
    for key in ("ctr", "cvr", "ctcvr"):
        torch.testing.assert_close(plain[key], compact[key])


def test_row_adam_matches_sparse_adam(random_data):
    """The rows optimiser is SparseAdam's arithmetic, without sparse tensors."""
    from neural.optim import RowAdam

    layout = FieldLayout.from_vocab_sizes(VOCAB)
    data = TensorSplit(random_data.train, layout, "mean")
    torch.manual_seed(0)
    rows_emb = FeatureEmbedding(layout, 3, "rows")
    sparse_emb = FeatureEmbedding(layout, 3, "sparse")
    sparse_emb.table.data.copy_(rows_emb.table.data)
    rows_opt = RowAdam(rows_emb, lr=0.05)
    sparse_opt = torch.optim.SparseAdam([sparse_emb.table], lr=0.05)
    target = torch.randn(8, rows_emb.out_dim)
    for step in range(3):
        batch = data.batch(torch.arange(step * 8, step * 8 + 8))
        for emb, opt, b in ((rows_emb, rows_opt, batch.compact()), (sparse_emb, sparse_opt, batch)):
            opt.zero_grad()
            ((emb(b) - target) ** 2).sum().backward()
            opt.step()
    torch.testing.assert_close(rows_emb.table.detach(), sparse_emb.table.detach())
    assert not torch.equal(rows_emb.table.detach(), FeatureEmbedding(layout, 3).table.detach())


def test_out_of_vocabulary_code_is_a_clear_error(random_data):
    small = {**VOCAB, "205": 3}
    with pytest.raises(ValueError, match="field 205"):
        TensorSplit(random_data.train, FieldLayout.from_vocab_sizes(small), "sum")


# ---- trainer pieces ----

def test_epoch_order_is_a_permutation_that_keeps_requests_together():
    request = torch.from_numpy(np.repeat(np.arange(200), 50))  # 200 requests x 50 rows
    generator = torch.Generator().manual_seed(0)
    grouped = epoch_order(request, 200, generator)
    shuffled = epoch_order(request, 0, generator)
    for order in (grouped, shuffled):
        assert torch.equal(torch.sort(order).values, torch.arange(len(request)))

    def requests_per_batch(order):
        return np.mean([len(torch.unique(request[b])) for b in order.split(100)])

    assert requests_per_batch(grouped) <= 6 < 40 < requests_per_batch(shuffled)


@pytest.mark.parametrize("before", [False, True])
def test_fit_restores_the_deterministic_setting(random_data, monkeypatch, before):
    """Deterministic kernels while training; the caller's process-wide setting after fit."""
    from neural.trainer import Trainer

    seen = []
    step = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self, rows: (
        seen.append(torch.are_deterministic_algorithms_enabled()), step(self, rows))[1])
    was = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(before)
    try:
        fit(next(s for s in SPECS if s.name == "esmm"), random_data)
        assert torch.are_deterministic_algorithms_enabled() is before
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
    assert seen and all(seen)


def test_config_rejects_unknown_settings():
    with pytest.raises(ValueError, match="unknown neural setting"):
        NeuralConfig.with_overrides({"embeding_dim": 8})
    with pytest.raises(ValueError, match="pooling"):
        NeuralConfig.with_overrides({"pooling": "max"})
    config = NeuralConfig.with_overrides({"mlp_dims": "32,16", "embedding_dim": "8"})
    assert config.mlp_dims == (32, 16) and config.embedding_dim == 8


def test_fused_experts_equal_separate_mlps():
    from neural.layers import ExpertBank

    torch.manual_seed(0)
    bank = ExpertBank(10, (6, 5), n_groups=2, per_group=3)
    x = torch.randn(7, 10)
    out = bank(x)  # (6 experts, 7, 5)
    for e in range(6):
        group, k = divmod(e, 3)
        w1 = bank.first_weight[:, group, k * 6:(k + 1) * 6]
        b1 = bank.first_bias[e * 6:(e + 1) * 6]
        hidden = torch.relu(x @ w1 + b1)
        want = torch.relu(hidden @ bank.weights[0][e] + bank.biases[0][e])
        torch.testing.assert_close(out[e], want)
    per_group = bank(torch.stack([x, 2 * x]))  # an input per group
    torch.testing.assert_close(per_group[:3], out[:3])
    assert not torch.allclose(per_group[3:], out[3:])


@pytest.mark.parametrize("gradients", ["rows", "sparse", "dense"])
def test_training_moves_the_embeddings_and_weights(random_data, gradients):
    """Every way of updating the table really updates it (and the dense weights too)."""
    from neural.trainer import Trainer

    spec = next(s for s in SPECS if s.name == "mmoe")
    network = build(spec, embedding_gradients=gradients)
    before = {k: v.detach().clone() for k, v in network.state_dict().items()}
    config = NeuralConfig.with_overrides({**TINY, "embedding_gradients": gradients})
    data = TensorSplit(random_data.train, FieldLayout.from_vocab_sizes(VOCAB), "mean")
    trainer = Trainer(network, config, data, torch.arange(len(data)), 32, seed=0)
    network.train()
    for rows in trainer.epoch_batches():
        trainer.step(rows)
    after = network.state_dict()
    unchanged = [k for k, v in before.items() if k != "prior" and torch.equal(v, after[k])]
    assert not unchanged, f"{gradients}: training left {unchanged} unchanged"


def test_auto_embedding_gradients_follow_table_size():
    from neural.config import DENSE_TABLE_MAX_ROWS

    config = NeuralConfig()
    assert config.gradients_for(DENSE_TABLE_MAX_ROWS) == "dense"
    assert config.gradients_for(DENSE_TABLE_MAX_ROWS + 1) == "rows"
    assert NeuralConfig.with_overrides({"embedding_gradients": "sparse"}).gradients_for(10) == \
        "sparse"
