"""The `projected` serving path: every first layer's item side gathered from projected tables.

A first layer (any linear map the network applies to its flat input x) computes
W·x = W_u·x_u + sum over item fields f of W_f·e_f(id_f) + W_d·x_d (user part, item embedding
fields, item dense columns). W_f·e_f(id) depends on the id only, so after fitting it is
tabulated once per id: a projected table P_f = E_f·W_f of vocab_f x width rows, where width
is the total output width of all first layers together (MMoE: 4 experts x 256 + 8 gate
logits). A candidate's first-layer pre-activations are then a weighted `embedding_bag` sum of
table rows: its fields' rows of P (weight 1), the rows of W of the item dense columns (weight:
the value) and a row holding the request's user term and the biases (computed once per
request); a multi-valued field's list is pooled from P with its weights, as the embedding
was, in the same `embedding_bag`. The per-candidate multiply-adds of the
first layers (380 x width for the plain forward) become about 10 x width additions.

Which layers read x is found by running the network once on a recording input (`_probe`),
so every registered network gets the path without code of its own. Everything after the first
layers is the network's own code, run on a pruned copy of it (neural/pruned.py: each hidden
layer's product skips the ReLU units zero on every candidate of the request; the first 4,000
candidates served order the units). A layer the probe did not see, or any other use of x,
falls back to `RequestInput` (correct, not faster).

A request's input is read straight from the split's arrays into one `embedding_bag` (its
index, offsets and weights built with numpy): converting the whole split to the network's
batch first (`RequestScorer.batch`) took 0.7 ms, a third of a small network's request. The
tables sit on transparent huge pages where the kernel offers them (`huge_page_tensor`).

Measured (reference MMoE, small profile, 1,000 candidates, 1 thread): the gather is bound by
memory traffic (about 17 rows of 1,032 floats per candidate, from 61 MB of tables; a
hand-written AVX-512 gather was no faster than `embedding_bag`), 2.3 ms of a ~7.5 ms request;
the expert bank's second layer, pruned, is ~2.6 ms. See `bench latency`'s macs_per_request
and fraction_of_sgemm_peak for each path.

Memory: a projected table costs vocab_f x width x 4 bytes. Fields are projected smallest
vocabulary first (each saves the same work per candidate) while the tables fit in
`budget_bytes`; the others keep their embeddings and are multiplied like the dense columns
(`fallback_fields`).
"""

from __future__ import annotations

import mmap

import numpy as np
import torch
import torch.nn.functional as F

from ccp.data import schema
from neural.inputs import USER_FIELDS, check_codes, user_side
from neural.pruned import PRUNE_ROWS, count_active, pruned_copy, reorder
from neural.serving import (
    _ITEM_DENSE,
    _USER_DENSE,
    RequestInput,
    RequestScorer,
    SplitWeights,
    _numpy,
)

# Tables of all projected fields of one model together, at most (see the module doc).
DEFAULT_BUDGET_BYTES = 256 * 2**20
# Candidates of the first requests whose unit activity orders the pruning (neural/pruned.py):
# over one 1,000-candidate request, units it left at zero were active on later requests in
# 27 of 32 expert products (each then adds them apart).
CALIBRATION_ROWS = 4000


def huge_page_tensor(rows: int, cols: int) -> torch.Tensor:
    """A zeroed float32 (rows, cols) tensor in memory the kernel is asked to back with 2 MiB
    pages (Linux transparent huge pages, madvise); elsewhere an ordinary tensor. Why: the
    gathers read rows at random from tables of tens of MB, and with 4 KiB pages nearly every
    row read is also a TLB miss (reference MMoE: its gather 15% faster on huge pages)."""
    nbytes = rows * cols * 4
    if nbytes < 2**21 or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.zeros(rows, cols)
    # Private and anonymous (zeroed); a shared mapping would not get huge pages. The tensor
    # keeps the mapping alive.
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(buffer, dtype=torch.float32).view(rows, cols)


def _weight_key(weight_in_out: torch.Tensor) -> tuple:
    # No version counter here: a view's is not always its base's (under a dispatch mode such
    # as FlopCounterMode it starts at 0). A changed weight is caught by `_versions` instead.
    return (weight_in_out.data_ptr(), tuple(weight_in_out.shape), weight_in_out.stride())


def _versions(network) -> tuple[int, ...]:
    return tuple(p._version for p in network.parameters())


class _Recording(RequestInput):
    """A request input that notes every (weight, bias) a first layer applies to it."""

    def __init__(self, user, item, weights: SplitWeights):
        super().__init__(user, item, None, weights)
        self.seen: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def matmul_plus(self, weight_in_out, bias):
        self.seen.setdefault(_weight_key(weight_in_out), (weight_in_out, bias))
        return super().matmul_plus(weight_in_out, bias)


def _probe(scorer: RequestScorer) -> dict:
    """{weight key: (W (in, out), bias or None)} of the layers that read x, in call order."""
    n_user, n_item = len(scorer.weights.user_cols), len(scorer.weights.item_cols)
    recording = _Recording(torch.zeros(1, n_user), torch.zeros(2, n_item), scorer.weights)
    with torch.inference_mode():
        scorer.network.score(recording)
    return recording.seen


class _Lazy:
    """A value built at its first call (the plain request input, for uses of x not covered)."""

    def __init__(self, make):
        self.make, self.value = make, None

    def __call__(self):
        if self.value is None:
            self.value = self.make()
        return self.value


class ProjectedInput(RequestInput):
    """x of a request whose first layers' outputs H (n, width) are already computed."""

    def __init__(self, hidden, in_dim: int, layers: dict, fallback):
        self.hidden, self.in_dim, self.layers, self.fallback = hidden, in_dim, layers, fallback
        self.taken: set[tuple] = set()

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.hidden), self.in_dim))

    def __len__(self) -> int:
        return len(self.hidden)

    def materialize(self) -> torch.Tensor:
        return self.fallback().materialize()

    def matmul_plus(self, weight_in_out, bias):
        key = _weight_key(weight_in_out)
        layer = self.layers.get(key)
        if layer is None or layer[1] is not bias or key in self.taken:
            return self.fallback().matmul_plus(weight_in_out, bias)
        # A layer's columns are handed out once, so their reader may overwrite them (the
        # pruned modules' ReLU runs in place); a second product with the layer is recomputed.
        self.taken.add(key)
        return self.hidden[:, layer[0]]


class ProjectedScorer:
    """Scores one request of a fitted `NeuralRanker` along the projected path."""

    def __init__(self, model, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.scorer = RequestScorer(model)
        self.source = self.scorer.network  # the fitted network; served through a pruned copy
        self.budget_bytes = budget_bytes
        self.layout, self.pooling = model.layout, model.config.pooling
        self._built_for = None
        self.build()

    def build(self) -> None:
        """A pruned copy of the fitted network (neural/pruned.py), and its tables."""
        with torch.inference_mode(False):  # a rebuild may start inside a scoring call
            self.network = self.scorer.network = pruned_copy(self.source)
        self.counted_rows = 0  # of the calibration; none after it
        self.calibrated = False
        self._built_for = _versions(self.source)
        self.tabulate()

    def tabulate(self) -> None:
        """Concatenate the first layers and tabulate the projected fields."""
        scorer, inputs = self.scorer, self.network.inputs
        d = inputs.embedding_dim
        weight = self._first_layers()  # (in_dim, width): every first layer side by side
        self.w_user = weight[scorer.weights.user_cols].contiguous()
        sizes = self.layout.sizes()
        n_user = len(USER_FIELDS) * d
        item_fields = self.layout.item_fields  # the cross ids are item fields too
        field_cols = {f: torch.arange(n_user + k * d, n_user + (k + 1) * d)
                      for k, f in enumerate(item_fields)}
        self._choose_fields(sizes)
        # One table: the projected fields' rows, the item dense columns' rows of W, and a row
        # for the request's user term (module doc); `row_of` maps the shared table's rows.
        table = inputs.table.detach()
        self.row_of = torch.full((self.layout.n_rows,), -1, dtype=torch.int64)
        n_table = sum(sizes[f] for f in self.projected_fields) + len(scorer._dense_item) + 1
        self.table = huge_page_tensor(n_table, self.width)
        row = 0
        with torch.inference_mode():
            for f in self.projected_fields:
                first, size = self.layout.offsets[f], sizes[f]
                torch.mm(table[first:first + size], weight[field_cols[f]],
                         out=self.table[row:row + size])
                self.row_of[first:first + size] = torch.arange(row, row + size)
                row += size
            dense0 = n_user + len(item_fields) * d
            self.table[row:row + len(scorer._dense_item)] = weight[dense0 + scorer._dense_item]
        self.dense_row = torch.arange(row, row + len(scorer._dense_item))
        self.user_row = len(self.table) - 1
        single = list(self.layout.item_single)
        self.single_projected = np.array([single.index(f) for f in self.projected_fields
                                          if f in single], dtype=np.int64)
        self.single_fallback = torch.tensor([single.index(f) for f in self.fallback_fields
                                             if f in single], dtype=torch.int64)
        # Table row of each projected field's code 0 (its rows are consecutive), and its size.
        self.base = {f: int(self.row_of[self.layout.offsets[f]]) for f in self.projected_fields}
        self.sizes = sizes
        self.single_names = [f for f in self.layout.item_single if f in self.base]
        self.single_base = np.array([self.base[f] for f in self.single_names], dtype=np.int64)
        self.single_size = np.array([sizes[f] for f in self.single_names], dtype=np.int64)
        self.multi_projected = [f in self.projected_fields for f in schema.ITEM_MULTI]
        # Rows of W still multiplied per candidate: the fallback fields' embedding columns.
        rest = [field_cols[f] for f in self.fallback_fields]
        self.w_rest = weight[torch.cat(rest)].contiguous() if rest else None

    def _first_layers(self) -> torch.Tensor:
        """W of all first layers side by side; sets `layers` (their columns), bias, width."""
        self.layers, columns, biases, start = {}, [], [], 0
        for key, (weight, bias) in _probe(self.scorer).items():
            width = weight.shape[1]
            self.layers[key] = (slice(start, start + width), bias)
            columns.append(weight)
            biases.append(torch.zeros(width) if bias is None else bias.reshape(-1))
            start += width
        self.width = start
        with torch.inference_mode():
            self.bias = torch.cat(biases)
            return torch.cat(columns, 1)

    def _choose_fields(self, sizes: dict[str, int]) -> None:
        """Smallest vocabulary first (each field saves d x width multiply-adds per candidate)
        while the tables fit the budget; the others fall back to a product."""
        projected, used = set(), 0
        item_fields = self.layout.item_fields
        for f in sorted(item_fields, key=lambda f: sizes[f]):
            cost = sizes[f] * self.width * 4
            if used + cost <= self.budget_bytes:
                projected.add(f)
                used += cost
        self.projected_fields = [f for f in item_fields if f in projected]
        self.fallback_fields = [f for f in item_fields if f not in projected]
        self.table_bytes = used

    def request_input(self, split) -> ProjectedInput:
        scorer, inputs = self.scorer, self.network.inputs
        if _versions(self.source) != self._built_for:
            self.build()  # the weights changed (a refit): the copy and tables are stale
        if split.n_requests != 1:
            raise ValueError("the projected path scores one request at a time")
        # Read straight from the split's arrays: the plain batch (RequestScorer.batch) converts
        # every column, 0.7 ms a request; it is built only where a fallback needs it.
        batch = _Lazy(lambda: scorer.batch(split))
        user_single, user_bags = user_side(split, self.layout, self.pooling)
        user = inputs.user_block(user_single, user_bags)  # (1, 13 d)
        dense = np.ascontiguousarray(split.dense, dtype=np.float32)
        dense_user = torch.from_numpy(dense[:1, _USER_DENSE])
        # The user term and the biases, once per request, in the table's last row.
        torch.addmm(self.bias, torch.cat([user, dense_user], 1), self.w_user,
                    out=self.table[self.user_row:])
        index, offsets, weight = self._bags(split, dense)
        hidden = F.embedding_bag(index, self.table, offsets, mode="sum",
                                 per_sample_weights=weight)  # (n, width)
        if self.w_rest is not None:
            hidden.addmm_(self._fallback_embeddings(batch()), self.w_rest)
        return ProjectedInput(hidden, self.network.in_dim, self.layers,
                              _Lazy(lambda: RequestInput(*scorer.parts(batch()),
                                                         scorer.weights)))

    def _bags(self, split, dense: np.ndarray) -> tuple[torch.Tensor, ...]:
        """(index, offsets, weight) of one embedding_bag, one bag per candidate: its projected
        single ids (weight 1), the dense rows (weight: the value), the user row (weight 1),
        then the ids of its projected multi-valued fields (their pooling weights)."""
        where = f"split {split.name!r}"
        n = len(split)
        codes = self.layout.item_codes(split)[:, self.single_projected]
        if n and ((codes < 0) | (codes >= self.single_size)).any():
            for j, f in enumerate(self.single_names):  # the error names the field
                check_codes(codes[:, j], self.sizes[f], f, where)
        s, k = len(self.single_names), len(self.single_names) + len(self.dense_row) + 1
        fixed = np.empty((n, k), dtype=np.int64)
        fixed_weight = np.ones((n, k), dtype=np.float32)
        np.add(codes, self.single_base, out=fixed[:, :s])
        fixed[:, s:-1] = self.dense_row.numpy()
        fixed[:, -1] = self.user_row
        fixed_weight[:, s:-1] = dense[:, _ITEM_DENSE]
        # The lists' ids and pooled weights as `field_bags` makes them for the plain batch,
        # written here straight into each candidate's bag (reusing field_bags and mapping its
        # rows measured 0.04-0.07 ms slower a request).
        lists = [(f, split.item_multi[f]) for f in schema.ITEM_MULTI if f in self.base]
        lengths = sum((r.lengths() for _, r in lists), np.zeros(n, dtype=np.int64))
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths + k, out=offsets[1:])
        index = np.empty(offsets[-1], dtype=np.int64)
        weight = np.empty(offsets[-1], dtype=np.float32)
        at = offsets[:-1, None] + np.arange(k)
        index[at], weight[at] = fixed, fixed_weight
        free = offsets[:-1] + k  # each candidate's next position
        for f, r in lists:
            check_codes(r.codes, self.sizes[f], f, where)
            row = r.row_of_value()
            at = free[row] + np.arange(len(r.codes)) - r.offsets[row]
            index[at] = r.codes + self.base[f]
            w = r.weights.astype(np.float32)
            weight[at] = w / np.maximum(r.lengths(), 1)[row] if self.pooling == "mean" else w
            free = free + r.lengths()
        return torch.from_numpy(index), torch.from_numpy(offsets[:-1]), torch.from_numpy(weight)

    def _fallback_embeddings(self, batch) -> torch.Tensor:
        """(n, d x fallback fields): the embeddings of fields without a projected table."""
        inputs = self.network.inputs
        parts = []
        if len(self.single_fallback):
            parts.append(inputs._lookup(batch.item_single[:, self.single_fallback],
                                        inputs.table).flatten(1))
        keep = [k for k, p in enumerate(self.multi_projected) if not p]
        if keep:
            pooled = inputs._pool(batch.item_bags, inputs.table, len(schema.ITEM_MULTI))
            parts.append(pooled[:, keep].flatten(1))
        return torch.cat(parts, 1)

    def calibrate(self, requests) -> None:
        """Score `requests` (one-request splits) until the pruning is calibrated, so that a
        timing that follows sees the calibrated path only (bench.latency calls it)."""
        for request in requests:
            if self.calibrated:
                return
            self(request)

    def __call__(self, split) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            if self.calibrated or len(split) < PRUNE_ROWS:  # small: the plain forward
                return _numpy(self.network.score(self.request_input(split)))
            # The first requests count unit activity, every unit multiplied; then the units
            # are ordered (neural/pruned.py) and the tables rebuilt for the new order.
            out = count_active(self.network,
                               lambda: self.network.score(self.request_input(split)))
            self.counted_rows += len(split)
            if self.counted_rows >= CALIBRATION_ROWS:
                reorder(self.network)
                self.tabulate()
                self.calibrated = True
            return _numpy(out)
