"""Loss balancing (neural/balancing.py) and the named loss terms every network exposes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from test_neural import NETWORKS, batch_of, build, random_split  # noqa: E402

from neural import balancing  # noqa: E402
from neural.gradnorm import GradNorm  # noqa: E402
from neural.network import bce, product_bce, sum_terms  # noqa: E402
from neural.registry import SPECS  # noqa: E402

BY_NAME = {s.name: s for s in SPECS}


@pytest.fixture(scope="module")
def train():
    """A random train split in the zoo tests' layout (labels on every task)."""
    return random_split("train", 96, 12, np.random.default_rng(7))


def reference_loss(network, out, batch):
    """Each network's loss as one expression, written out as it was before it had terms."""
    name = type(network).__name__
    if name == "DnnCtr":
        return bce(out, "ctr", batch.click)
    if name == "DnnCvr":
        return bce(out, "cvr", batch.purchase, mask=batch.click)
    if name == "DnnCtcvr":
        return bce(out, "ctcvr", batch.conversion)
    if name == "WeightedLoss":
        weight = 1.0 + network.beta * batch.conversion
        return (bce(out, "score", batch.click, weight=weight)
                / (1.0 + network.beta * network.prior[2]))
    if name == "AITM":
        calibrator = torch.relu(out["ctcvr"] - out["ctr"]).mean()
        return (bce(out, "ctr", batch.click) + bce(out, "ctcvr", batch.conversion)
                + network.calibrator_weight * calibrator)
    ctr = bce(out, "ctr", batch.click)
    if getattr(network, "cvr_loss", "entire_space") == "clicked":
        return ctr + bce(out, "cvr", batch.purchase, mask=batch.click)
    base = ctr + product_bce(out, batch.conversion)
    if name != "ESCM2":
        return base
    propensity = out["ctr"].detach().clamp(min=network.min_propensity)
    error = F.binary_cross_entropy_with_logits(out["cvr_logit"], batch.purchase,
                                               reduction="none")
    if network.estimator == "ipw":
        return base + network.counterfactual_weight * (batch.click * error / propensity).mean()
    imputed = out["imputed"]
    imputed_error = F.binary_cross_entropy_with_logits(out["cvr_logit"], imputed.detach(),
                                                       reduction="none")
    risk = (imputed_error + batch.click * (error - imputed_error) / propensity).mean()
    fitted = F.binary_cross_entropy_with_logits(out["cvr_logit"].detach(), imputed,
                                                reduction="none")
    risk = risk + (batch.click * (error.detach() - fitted) ** 2 / propensity).mean()
    return base + network.counterfactual_weight * risk


# One network each (a model of fitted parts, dnn_ctr_x_cvr, is its parts: dnn_ctr, dnn_cvr).
UNBALANCED = [s for s in NETWORKS if "loss_balancing" not in s.params]


@pytest.mark.parametrize("spec", UNBALANCED, ids=[s.name for s in UNBALANCED])
def test_summed_terms_and_gradients_are_bit_identical_to_one_expression(spec, train):
    batch = batch_of(train)
    old, new = build(spec, embedding_gradients="dense"), build(spec, embedding_gradients="dense")
    old_loss = reference_loss(old, old(batch), batch)
    old_loss.backward()
    out = new(batch)
    assert len(new.loss_terms(out, batch)) == new.N_LOSS_TERMS
    new_loss = balancing.backward(new, out, batch)
    assert torch.equal(old_loss, new_loss)
    for (name, a), b in zip(old.named_parameters(), new.parameters()):
        assert torch.equal(a.grad, b.grad), name


@pytest.mark.parametrize("name", ["dnn_ctr", "dnn_cvr", "dnn_ctcvr", "weighted_loss"])
@pytest.mark.parametrize("kind", ["fixed", "uncertainty", "gradnorm", "pcgrad"])
def test_single_task_models_refuse_a_balancer(name, kind):
    network_class = BY_NAME[name].params["network"].split(":")[1]
    with pytest.raises(ValueError, match=rf"loss_balancing={kind}.*{network_class}"):
        build(BY_NAME[name], loss_balancing=kind)


def test_uncertainty_loss_is_the_formula_and_its_weights_learn(train):
    network = build(BY_NAME["mmoe"], loss_balancing="uncertainty", embedding_gradients="dense")
    weights = network.balancer
    assert "balancer.log_variance" in dict(network.named_parameters())
    with torch.no_grad():
        weights.log_variance.copy_(torch.tensor([0.3, -0.2]))
    batch = batch_of(train)
    out = network(batch)
    terms = network.loss_terms(out, batch)
    expected = (torch.exp(torch.tensor(-0.3)) * terms["ctr"] + 0.3
                + torch.exp(torch.tensor(0.2)) * terms["cvr"] - 0.2)
    assert torch.allclose(weights.combine(terms), expected)
    assert torch.equal(network.loss(out, batch), weights.combine(terms))
    assert balancing.describe(network) == {"loss_balancing": "uncertainty",
                                           "loss_term_weights": "0.7408,1.221"}
    logged = balancing.backward(network, out, batch)
    assert torch.allclose(logged, (terms["ctr"] + terms["cvr"]).detach())
    assert weights.log_variance.grad is not None
    assert torch.all(weights.log_variance.grad != 0)


def test_pcgrad_removes_conflicts_between_two_tasks():
    generator = torch.Generator().manual_seed(3)
    conflicts = 0
    for _ in range(50):
        g1, g2 = torch.randn(2, 20, generator=generator, dtype=torch.float64)
        p1, p2 = balancing.project_conflicts([g1, g2], [[1], [0]])
        if torch.dot(g1, g2) < 0:
            conflicts += 1
            for a, b in ((p1, g2), (p2, g1), (p1, p2)):
                assert torch.dot(a, b) >= -1e-12
        else:
            assert torch.equal(p1 + p2, g1 + g2)
    assert conflicts > 10  # the check above ran on conflicting pairs


def test_pcgrad_on_a_constructed_pair():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    p1, p2 = balancing.project_conflicts([g1, g2], [[1], [0]])
    assert torch.allclose(p1, torch.tensor([0.5, 0.5]))  # g1 minus its part along g2
    assert torch.allclose(p2, torch.tensor([0.0, 1.0]))
    same = balancing.project_conflicts([g1, torch.tensor([1.0, 1.0])], [[1], [0]])
    assert torch.equal(same[0] + same[1], torch.tensor([2.0, 1.0]))


@pytest.mark.parametrize("gradients", ["dense", "rows"])
def test_pcgrad_task_parameters_get_their_own_gradient(gradients, train):
    spec = BY_NAME["mmoe"]
    plain = build(spec, embedding_gradients="dense")
    network = build(spec, loss_balancing="pcgrad", embedding_gradients=gradients)
    batch = batch_of(train)
    if gradients == "rows":
        batch = batch.compact()
    terms = plain.loss_terms(plain(batch_of(train)), batch_of(train))
    ctr_only = torch.autograd.grad(terms["ctr"], list(plain.ctr_tower.parameters()))
    balancing.backward(network, network(batch), batch)
    for own, p in zip(ctr_only, network.ctr_tower.parameters()):
        assert torch.allclose(own, p.grad)
    shared = [p.grad for p in network.experts.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in shared)
    if gradients == "rows":
        assert network.inputs.touched[1].grad is not None


def test_a_model_with_its_own_balancer_refuses_another():
    from neural.config import NeuralConfig
    from neural.models.mmoe import MMoE

    plain = NeuralConfig()
    assert isinstance(balancing.make_balancer(MMoE, plain, "pcgrad"), balancing.PCGrad)
    with pytest.raises(ValueError, match="loss_balancing=uncertainty conflicts"):
        balancing.make_balancer(MMoE, NeuralConfig(loss_balancing="uncertainty"), "pcgrad")


@pytest.mark.parametrize("name, kind", [("mmoe_uncertainty", balancing.UncertaintyWeights),
                                        ("mmoe_pcgrad", balancing.PCGrad),
                                        ("mmoe_gradnorm", GradNorm)])
def test_registered_variants_carry_their_balancer(name, kind):
    assert isinstance(build(BY_NAME[name]).balancer, kind)


@pytest.mark.parametrize("spec", [BY_NAME["mmoe"], BY_NAME["esmm"], BY_NAME["aitm"]],
                         ids=["mmoe", "esmm", "aitm"])
def test_fixed_weights_multiply_the_named_terms_and_their_gradients(spec, train):
    batch = batch_of(train)
    plain = build(spec, embedding_gradients="dense")
    terms = plain.loss_terms(plain(batch), batch)
    names = list(terms)
    expected = sum_terms({n: t * (0.25 if n == names[1] else 1.0) for n, t in terms.items()})
    expected.backward()
    fixed = build(spec, loss_balancing="fixed", loss_weights=f"{names[1]}:0.25",
                  embedding_gradients="dense")
    out = fixed(batch)
    assert torch.equal(fixed.loss(out, batch), expected.detach())
    logged = balancing.backward(fixed, out, batch)
    assert torch.equal(logged, sum_terms(terms).detach())  # the log keeps the plain sum
    for (name, a), b in zip(plain.named_parameters(), fixed.parameters()):
        assert torch.equal(a.grad, b.grad), name
    weights = ",".join("0.25" if n == names[1] else "1" for n in names)
    assert balancing.describe(fixed) == {"loss_balancing": "fixed", "loss_term_weights": weights}


def test_fixed_weights_name_the_model_terms_when_a_name_is_unknown(train):
    network = build(BY_NAME["mmoe"], loss_balancing="fixed", loss_weights="ctcvr:2")
    batch = batch_of(train)
    with pytest.raises(ValueError, match="loss_weights names ctcvr: MMoE's loss terms are "
                                         "ctr, cvr"):
        network.loss(network(batch), batch)
    with pytest.raises(ValueError, match="loss_weights=cvr:2 needs loss_balancing=fixed"):
        build(BY_NAME["mmoe_pcgrad"], loss_weights="cvr:2")


@pytest.mark.parametrize("text", ["cvr", "cvr:0", "cvr:-1", "cvr:x", ":2", "cvr:1,cvr:2",
                                  "cvr:nan"])
def test_bad_loss_weights_are_one_error_naming_the_setting(text):
    from neural.config import NeuralConfig

    with pytest.raises(ValueError, match=f"setting loss_weights={text} is out of range: "
                                         "allowed name:weight pairs"):
        NeuralConfig.with_overrides({"loss_balancing": "fixed", "loss_weights": text})
    assert NeuralConfig.with_overrides(
        {"loss_weights": " ctr : 0.5, cvr:2 "}).loss_weights == " ctr : 0.5, cvr:2 "
