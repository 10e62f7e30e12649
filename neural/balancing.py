"""Loss balancing for multi-task networks: how a loss's named terms become one update.

The setting `loss_balancing` (neural/config.py) picks one; a network's `loss_terms` gives the
terms (one per task; AITM's calibrator and ESCM2's counterfactual risk count as terms).
- "none": the plain sum, the network's own `loss` (exactly the unbalanced code path).
- "fixed": each term times its weight from the setting `loss_weights` (a term not named
  weighs 1).
- "gradnorm" (Chen et al., ICML 2018): learned weights that equalise the tasks' training rates
  through their gradient norms at the last shared layer (neural/gradnorm.py).
- "uncertainty" (Kendall, Gal & Cipolla, CVPR 2018): a learned log-variance s_t per term,
  loss = sum_t exp(-s_t) L_t + s_t; the s_t are network parameters, so the dense Adam fits
  them (s_t = 0 at the start: the first step is the plain sum's).
- "pcgrad" (Yu et al., NeurIPS 2020): per-term gradients; on the parameters that two or more
  terms reach, each term's gradient loses its component along any other term's gradient it
  conflicts with (negative inner product), the others taken in a random order; the projected
  gradients are summed. A parameter only one term reaches gets that term's gradient.
"""

from __future__ import annotations

import functools
import operator

import torch
from torch import nn

from neural.config import parse_loss_weights
from neural.distributed import ranks


def sum_terms(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """Terms added left to right, as `a + b + c` (no leading 0: the same float operations)."""
    return functools.reduce(operator.add, terms.values())


BALANCERS = ("none", "fixed", "uncertainty", "gradnorm", "pcgrad")


def make_balancer(network_cls: type, config, own: str | None = None) -> nn.Module | None:
    """The balancer of a network class: its own (a registered variant's) or the run setting
    (`config`: the run's NeuralConfig)."""
    setting = config.loss_balancing
    if own is not None and setting not in ("none", own):
        raise ValueError(f"setting loss_balancing={setting} conflicts with model "
                         f"{network_cls.__name__}'s own loss_balancing={own}")
    kind = own or setting
    if config.loss_weights and kind != "fixed":
        raise ValueError(f"setting loss_weights={config.loss_weights} needs "
                         f"loss_balancing=fixed (it is {kind})")
    if kind == "none":
        return None
    n_terms = network_cls.N_LOSS_TERMS
    if n_terms < 2:
        raise ValueError(f"setting loss_balancing={kind} needs a multi-task model: "
                         f"{network_cls.__name__} trains one loss term (allowed: none)")
    if kind == "fixed":
        return FixedWeights(parse_loss_weights(config.loss_weights), network_cls.__name__)
    if kind == "uncertainty":
        return UncertaintyWeights(n_terms)
    if kind == "gradnorm":
        from neural.gradnorm import GradNorm

        return GradNorm(n_terms, config.gradnorm_alpha)
    if kind == "pcgrad":
        return PCGrad()
    raise ValueError(f"setting loss_balancing={kind!r} is not one of {', '.join(BALANCERS)}")


def backward(network: nn.Module, out: dict, batch) -> torch.Tensor:
    """Gradients of one batch's loss into .grad (as `loss.backward()`); returns the plain sum
    of the terms, so the logged training loss means the same under every balancer."""
    module = getattr(network, "module", network)  # DDP wraps the network
    if module.balancer is None:
        loss = network.loss(out, batch)
        loss.backward()
        return loss
    terms = module.loss_terms(out, batch)
    module.balancer.backward(terms, module, out)
    return sum(t.detach() for t in terms.values())


def describe(network: nn.Module) -> dict:
    """For the fit's model info: the balancer, and its term weights as they ended (fixed: as
    set; uncertainty: exp(-s_t); gradnorm: w_t), in the order of the model's loss terms."""
    balancer = network.balancer
    if balancer is None:
        return {"loss_balancing": "none"}
    info = {"loss_balancing": balancer.KIND}
    if hasattr(balancer, "term_weights"):
        info["loss_term_weights"] = ",".join(f"{w:.4g}" for w in balancer.term_weights())
    return info


def after_step(network: nn.Module) -> None:
    """After the optimiser step: a balancer that constrains its weights (GradNorm) does so."""
    balancer = getattr(network, "module", network).balancer
    if balancer is not None and hasattr(balancer, "after_step"):
        balancer.after_step()


class FixedWeights(nn.Module):
    KIND = "fixed"

    def __init__(self, weights: dict[str, float], model_name: str):
        super().__init__()
        self.weights, self.model_name = weights, model_name
        self.term_names: list[str] = []  # as the last combine saw them

    def term_weights(self) -> list[float]:
        return [self.weights.get(name, 1.0) for name in self.term_names]

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        unknown = sorted(set(self.weights) - set(terms))
        if unknown:
            raise ValueError(f"setting loss_weights names {', '.join(unknown)}: "
                             f"{self.model_name}'s loss terms are {', '.join(terms)}")
        self.term_names = list(terms)
        return sum_terms({name: loss * self.weights.get(name, 1.0)
                          for name, loss in terms.items()})

    def backward(self, terms: dict[str, torch.Tensor], network: nn.Module, out=None) -> None:
        self.combine(terms).backward()


class UncertaintyWeights(nn.Module):
    KIND = "uncertainty"

    def __init__(self, n_terms: int):
        super().__init__()
        self.log_variance = nn.Parameter(torch.zeros(n_terms))

    def term_weights(self) -> list[float]:
        return torch.exp(-self.log_variance.detach()).tolist()

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        losses = torch.stack(list(terms.values()))
        return (torch.exp(-self.log_variance) * losses + self.log_variance).sum()

    def backward(self, terms: dict[str, torch.Tensor], network: nn.Module, out=None) -> None:
        self.combine(terms).backward()


def project_conflicts(grads: list[torch.Tensor], order: list[list[int]]) -> list[torch.Tensor]:
    """PCGrad on flat per-task gradients: task i's gradient, projected onto the normal plane of
    each original g_j (j in `order[i]`) it has a negative inner product with."""
    projected = []
    for i, g in enumerate(grads):
        g = g.clone()
        for j in order[i]:
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g -= dot / grads[j].square().sum() * grads[j]
        projected.append(g)
    return projected


class PCGrad(nn.Module):
    """Under torchrun each term's gradient is averaged over the ranks first (the global
    batch's, as one process would compute it), then projected alike on every rank: the
    per-term passes bypass DDP's all-reduce, which fires only for a plain backward."""

    KIND = "pcgrad"

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum_terms(terms)

    def backward(self, terms: dict[str, torch.Tensor], network: nn.Module, out=None) -> None:
        leaves = [p for p in network.parameters() if p.requires_grad]
        touched = network.inputs.touched  # "rows" gradients: the batch's table rows
        if touched is not None:
            leaves.append(touched[1])
        if network.inputs.gradients == "sparse":
            raise ValueError("setting loss_balancing=pcgrad needs dense table gradients: "
                             "embedding_gradients=auto, rows or dense (not sparse)")
        if touched is not None and ranks() > 1:
            raise ValueError("setting loss_balancing=pcgrad under torchrun needs "
                             "embedding_gradients=dense (each rank's batch has its own rows)")
        values = list(terms.values())
        per_term = [torch.autograd.grad(loss, leaves, retain_graph=k < len(values) - 1,
                                        allow_unused=True) for k, loss in enumerate(values)]
        reached = [k for k in range(len(leaves)) if any(g[k] is not None for g in per_term)]
        # (terms, reached weights): a term's gradient, 0 where it does not reach.
        matrix = torch.stack([torch.cat([g[k].reshape(-1) if g[k] is not None
                                         else torch.zeros(leaves[k].numel()) for k in reached])
                              for g in per_term])
        n = len(values)
        orders = torch.stack([torch.randperm(n) for _ in range(n)])
        if ranks() > 1:
            torch.distributed.all_reduce(matrix)
            matrix /= ranks()
            torch.distributed.broadcast(orders, 0)
        # Weights two or more terms reach are projected; the others keep their one gradient.
        shared = torch.cat([torch.full((leaves[k].numel(),),
                                       sum(g[k] is not None for g in per_term) >= 2)
                            for k in reached]) if reached else torch.zeros(0, dtype=torch.bool)
        combined = matrix.sum(0)
        if shared.any():
            order = [[j for j in orders[i].tolist() if j != i] for i in range(n)]
            combined[shared] = torch.stack(project_conflicts(list(matrix[:, shared]),
                                                             order)).sum(0)
        for leaf in leaves:
            leaf.grad = None
        start = 0
        for k in reached:
            size = leaves[k].numel()
            leaves[k].grad = combined[start:start + size].view_as(leaves[k])
            start += size
