"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018): task weights that balance how
fast the tasks train, learned from the gradient norms at the last shared layer.

The network is trained on sum_i w_i L_i. With g_i = |grad_W L_i| at the shared weights W, each
task's weighted gradient norm is G_i = w_i g_i; a task's inverse training rate is
r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0)), and its target norm is mean_j G_j x r_i^alpha
(the target held constant). The weights alone minimise sum_i |G_i - target_i|; since G_i is
linear in w_i, that loss's gradient is sign(G_i - target_i) g_i, computed here without a
second backward pass. After each optimiser step the weights are clipped to stay positive and
rescaled to sum to the number of tasks.

W, "the last shared layer", is found on the first batch from the autograd graph: among the
weight tensors (two or more dimensions) that every task's logit and every loss term reach, the
one nearest to the logits (fewest graph nodes from the farthest logit). Logits, not losses:
ESMM's CTCVR loss reaches the CTR tower through pCTR x pCVR, but that tower is not shared.
For MMoE, PLE and shared-bottom it is the last layer of the shared experts or bottom, for AITM
the click body's last layer; for ESMM and ESCM2, whose towers share only the embedding table,
it is the table (or the rows of it that a batch touched).
Under torchrun the weights' gradient is averaged over the ranks, so every rank keeps the same
weights.
"""

from __future__ import annotations

import torch
from torch import nn

from neural.distributed import ranks

MIN_WEIGHT = 1e-4  # a weight's floor before renormalising: weights stay positive


def leaf_depths(loss: torch.Tensor) -> dict[int, tuple[torch.Tensor, int]]:
    """Every tensor whose .grad the loss reaches, by id: (tensor, fewest graph nodes away)."""
    depths: dict[int, tuple[torch.Tensor, int]] = {}
    frontier, seen, depth = [loss.grad_fn], set(), 0
    while frontier:
        following = []
        for node in frontier:
            if node is None or node in seen:
                continue
            seen.add(node)
            variable = getattr(node, "variable", None)  # an AccumulateGrad node
            if variable is not None:
                depths.setdefault(id(variable), (variable, depth))
            following += [fn for fn, _ in node.next_functions]
        frontier, depth = following, depth + 1
    return depths


def last_shared_weight(out: dict[str, torch.Tensor], terms: dict[str, torch.Tensor],
                       network: nn.Module) -> torch.Tensor:
    """The weight tensor that every task's logit and every loss term reach, nearest to the
    logits (module docstring); ties go to the larger tensor, then the first registered."""
    logits = [value for key, value in out.items() if key.endswith("_logit")]
    reach = [leaf_depths(tensor) for tensor in logits]
    common = set.intersection(*(set(depths) for depths in reach + [leaf_depths(loss) for loss
                                                                   in terms.values()]))
    registered = {id(p): index for index, p in enumerate(network.parameters())}
    candidates = [(max(depths[key][1] for depths in reach), -reach[0][key][0].numel(),
                   registered.get(key, len(registered)), key)
                  for key in common if reach[0][key][0].dim() >= 2] if len(reach) >= 2 else []
    if not candidates:
        raise ValueError(f"setting loss_balancing=gradnorm needs a layer that every task's "
                         f"output and loss term reach; {type(network).__name__} has none")
    return reach[0][min(candidates)[-1]][0]


def gradient_norm(gradient: torch.Tensor | None) -> torch.Tensor:
    if gradient is None:
        return torch.zeros(())
    if gradient.is_sparse:
        gradient = gradient.coalesce().values()
    return torch.linalg.vector_norm(gradient)


class GradNorm(nn.Module):
    KIND = "gradnorm"

    def __init__(self, n_terms: int, alpha: float):
        super().__init__()
        self.alpha = alpha
        self.weights = nn.Parameter(torch.ones(n_terms))
        # Each term's first positive loss (0 until then: a term that starts at 0, as AITM's
        # calibrator can, has its rate measured from the first batch where it is positive).
        self.register_buffer("initial_losses", torch.zeros(n_terms))
        # W once found: [a parameter], or [] with `shared_is_touched_rows` (a list, so that the
        # parameter is not registered a second time as this module's).
        self.shared_parameter: list[nn.Parameter] = []
        self.shared_is_touched_rows = False  # W is the embedding rows of the batch

    def term_weights(self) -> list[float]:
        return self.weights.detach().tolist()

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return (self.weights * torch.stack(list(terms.values()))).sum()

    def shared_weight(self, out: dict[str, torch.Tensor], terms: dict[str, torch.Tensor],
                      network: nn.Module) -> torch.Tensor:
        """W for this batch: found once, then the same parameter (or this batch's table rows)."""
        touched = getattr(getattr(network, "inputs", None), "touched", None)
        if not self.shared_parameter and not self.shared_is_touched_rows:
            found = last_shared_weight(out, terms, network)
            self.shared_is_touched_rows = touched is not None and found is touched[1]
            self.shared_parameter = [] if self.shared_is_touched_rows else [found]
        return touched[1] if self.shared_is_touched_rows else self.shared_parameter[0]

    def backward(self, terms: dict[str, torch.Tensor], network: nn.Module,
                 out: dict[str, torch.Tensor]) -> None:
        shared = self.shared_weight(out, terms, network)
        norms = torch.stack([
            gradient_norm(torch.autograd.grad(loss, shared, retain_graph=True,
                                              allow_unused=True)[0])
            for loss in terms.values()])
        # The weights stay in the graph (DDP expects every parameter to get a gradient); their
        # gradient is then replaced by GradNorm's.
        self.combine(terms).backward()
        losses = torch.stack([loss.detach() for loss in terms.values()])
        self.weights.grad = self.weight_gradient(losses, norms)

    @torch.no_grad()
    def weight_gradient(self, losses: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """d/dw of sum_i |w_i g_i - target_i|, the targets held constant."""
        started = self.initial_losses > 0
        self.initial_losses.copy_(torch.where(started, self.initial_losses, losses))
        started = self.initial_losses > 0
        ratio = torch.where(started, losses / self.initial_losses.clamp(min=1e-12), 1.0)
        inverse_rate = ratio / ratio.mean().clamp(min=1e-12)
        weighted = self.weights * norms  # G_i
        target = weighted.mean() * inverse_rate ** self.alpha
        gradient = torch.sign(weighted - target) * norms
        if ranks() > 1:
            torch.distributed.all_reduce(gradient)
            gradient /= ranks()
        return gradient

    @torch.no_grad()
    def after_step(self) -> None:
        """Weights positive and summing to the number of tasks (the paper's renormalisation)."""
        self.weights.clamp_(min=MIN_WEIGHT)
        self.weights.mul_(len(self.weights) / self.weights.sum())
