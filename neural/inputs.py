"""The input side every neural model shares: column tensors, batches, and the embedding layer.

All 23 fields (and, with `cross_ids`, the three user x item cross ids of neural/crosses.py,
item-side single fields) are embedded from ONE table; each field owns a block of rows (its
offset), so a batch needs one gather for the single-valued fields and one `embedding_bag` for
the lists, not a Python loop over fields. Multi-valued fields are pooled with their weights
(see NeuralConfig.pooling). Dense features are appended as they are (scaled to [0, 1] on train).

User-side features are stored once per request and embedded once per distinct request in a
batch, then indexed back to impressions: the ~500 behaviour ids of a request are pooled once,
not once per impression. The embedding layer returns the user block and the item block
separately so a server can compute the user block once per request.

Input layout of a model's first layer, per impression (all blocks flattened):
    [13 user fields x d | 9 impression single fields (+ 3 cross ids) x d | 1 list x d | 12 dense]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ccp.data import schema
from neural.crosses import CROSS_FIELDS, CrossIds

# Field order inside the user block; the impression block's is FieldLayout.item_fields.
USER_FIELDS = schema.USER_SINGLE + schema.USER_MULTI
N_DENSE = len(schema.DENSE_FEATURES)


@dataclass(frozen=True)
class FieldLayout:
    """Where each field's rows start in the one embedding table, and the cross ids (if any)
    that extend the impression fields."""

    offsets: dict[str, int]
    n_rows: int
    crosses: CrossIds | None = None

    @classmethod
    def from_vocab_sizes(cls, vocab_sizes: dict[str, int],
                         crosses: CrossIds | None = None) -> FieldLayout:
        missing = [f for f in schema.ALL_FIELDS if f not in vocab_sizes]
        if missing:
            raise ValueError(f"vocab_sizes lacks field(s) {missing}")
        sizes = {**vocab_sizes, **(crosses.vocab_sizes() if crosses is not None else {})}
        offsets, start = {}, 0
        for name in USER_FIELDS + item_single_fields(crosses) + schema.ITEM_MULTI:
            offsets[name] = start
            start += int(sizes[name])
        return cls(offsets, start, crosses)

    @property
    def item_single(self) -> tuple[str, ...]:
        """The impression block's single-valued fields, in the columns of `item_codes`."""
        return item_single_fields(self.crosses)

    @property
    def item_fields(self) -> tuple[str, ...]:
        return self.item_single + schema.ITEM_MULTI

    def input_dim(self, embedding_dim: int) -> int:
        return (len(USER_FIELDS) + len(self.item_fields)) * embedding_dim + N_DENSE

    def item_codes(self, split) -> np.ndarray:
        """(n, len(item_single)): the split's impression codes, then its cross ids."""
        if self.crosses is None:
            return split.item_codes
        return np.concatenate([split.item_codes, self.crosses.codes(split)], axis=1)

    def sizes(self) -> dict[str, int]:
        names = list(self.offsets)
        ends = [self.offsets[n] for n in names[1:]] + [self.n_rows]
        return {n: end - self.offsets[n] for n, end in zip(names, ends)}


def item_single_fields(crosses: CrossIds | None) -> tuple[str, ...]:
    return schema.IMPRESSION_SINGLE + (CROSS_FIELDS if crosses is not None else ())


@dataclass
class Bags:
    """Weighted id lists in CSR form: bag i is index[offsets[i]:offsets[i+1]]."""

    offsets: torch.Tensor  # int64 (n_bags + 1,)
    index: torch.Tensor  # int64, rows of the embedding table
    weight: torch.Tensor  # float32, pooling weight per id
    segment: torch.Tensor | None = None  # int64, the bag of each id (set by take)

    @property
    def n_bags(self) -> int:
        return len(self.offsets) - 1

    def take(self, bags: torch.Tensor) -> Bags:
        """The listed bags, in order, gathered without a loop over bags."""
        starts = self.offsets[bags]
        lengths = self.offsets[bags + 1] - starts
        offsets = torch.zeros(len(bags) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        segment = torch.repeat_interleave(torch.arange(len(bags)), lengths)
        source = (starts - offsets[:-1])[segment] + torch.arange(len(segment))
        return Bags(offsets, self.index[source], self.weight[source], segment)


def check_codes(codes: np.ndarray, size: int, field: str, where: str) -> None:
    """Every code of a field within its vocabulary, or an error naming the field."""
    if len(codes) and (codes.min() < 0 or codes.max() >= size):
        raise ValueError(f"{where}: field {field} has code {int(codes.max())} outside its "
                         f"vocabulary of {size} (was the data encoded with other vocabularies?)")


def field_bags(fields: tuple[str, ...], ragged: dict, layout: FieldLayout, pooling: str,
               where: str) -> Bags:
    """One bag per (row, field), row-major, so row r's bags are r*len(fields) + 0..k-1."""
    sizes = layout.sizes()
    lengths = np.stack([ragged[f].lengths() for f in fields], axis=1)  # (rows, fields)
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths.ravel(), out=offsets[1:])
    index = np.empty(offsets[-1], dtype=np.int64)
    weight = np.empty(offsets[-1], dtype=np.float32)
    for k, f in enumerate(fields):
        r = ragged[f]
        check_codes(r.codes, sizes[f], f, where)
        row_of_value = r.row_of_value()  # empty rows own no value
        rank = np.arange(len(r.codes)) - r.offsets[row_of_value]
        target = offsets[row_of_value * len(fields) + k] + rank
        index[target] = r.codes + layout.offsets[f]
        w = r.weights.astype(np.float32)
        if pooling == "mean":
            w = w / np.maximum(r.lengths(), 1)[row_of_value]
        weight[target] = w
    return Bags(torch.from_numpy(offsets), torch.from_numpy(index), torch.from_numpy(weight))


def _singles(codes: np.ndarray, fields: tuple[str, ...], layout: FieldLayout,
             where: str) -> torch.Tensor:
    sizes = layout.sizes()
    for k, f in enumerate(fields):
        check_codes(codes[:, k], sizes[f], f, where)
    shift = np.array([layout.offsets[f] for f in fields], dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(codes + shift))


def user_side(split, layout: FieldLayout, pooling: str) -> tuple[torch.Tensor, Bags]:
    """(user single rows (U, 9), user bags): the table rows of every request of a split."""
    where = f"split {split.name!r}"
    if len(split.user_codes) != 1:
        return (_singles(split.user_codes, schema.USER_SINGLE, layout, where),
                field_bags(schema.USER_MULTI, split.user_multi, layout, pooling, where))
    # One request (serving): the same rows with a few array operations instead of the
    # general path's per-field scatter (0.3 ms, a tenth of a small network's request).
    sizes = layout.sizes()
    codes = split.user_codes[0]
    if ((codes < 0) | (codes >= [sizes[f] for f in schema.USER_SINGLE])).any():
        _singles(split.user_codes, schema.USER_SINGLE, layout, where)  # raises, naming it
    single = codes + np.array([layout.offsets[f] for f in schema.USER_SINGLE])
    lists = [split.user_multi[f] for f in schema.USER_MULTI]
    for f, r in zip(schema.USER_MULTI, lists):
        check_codes(r.codes, sizes[f], f, where)
    lengths = [len(r.codes) for r in lists]
    weights = [r.weights.astype(np.float32) for r in lists]
    if pooling == "mean":
        # In float64 then back, as _bags divides: the same float32 weights to the bit.
        weights = [w / np.float64(max(n, 1)) for w, n in zip(weights, lengths)]
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index = np.concatenate([r.codes + layout.offsets[f]
                            for f, r in zip(schema.USER_MULTI, lists)]).astype(np.int64)
    return (torch.from_numpy(single.astype(np.int64)[None]),
            Bags(torch.from_numpy(offsets), torch.from_numpy(index),
                 torch.from_numpy(np.concatenate(weights).astype(np.float32))))


@dataclass
class Batch:
    """Model inputs and labels of a set of impressions.

    Id tensors hold rows of the embedding table, or, when `table_rows` is set, positions in
    `table_rows` (the distinct table rows the batch touches, so that the gradient and the
    optimiser step cover those rows only).
    """

    user_single: torch.Tensor  # (U, 9), U = distinct requests of the batch
    user_bags: Bags  # U * 4 bags
    user_of_row: torch.Tensor  # (B,) which of the U requests each impression belongs to
    item_single: torch.Tensor  # (B, 9), or (B, 12) with the cross ids
    item_bags: Bags  # B * 1 bags
    dense: torch.Tensor  # (B, 12)
    click: torch.Tensor  # (B,) float32
    purchase: torch.Tensor  # (B,) float32, purchase labels (only meaningful with a click)
    table_rows: torch.Tensor | None = None  # (R,) sorted distinct table rows, or None

    def __len__(self) -> int:
        return len(self.click)

    @property
    def conversion(self) -> torch.Tensor:
        """Click and purchase: the CTCVR label."""
        return self.click * self.purchase

    def compact(self) -> Batch:
        """The same batch with ids renumbered into its distinct table rows (one sort)."""
        parts = (self.user_single.reshape(-1), self.user_bags.index,
                 self.item_single.reshape(-1), self.item_bags.index)
        table_rows, local = torch.unique(torch.cat(parts), return_inverse=True)
        user_single, user_ids, item_single, item_ids = local.split([len(p) for p in parts])
        return Batch(
            user_single=user_single.view(self.user_single.shape),
            user_bags=dataclasses.replace(self.user_bags, index=user_ids),
            user_of_row=self.user_of_row,
            item_single=item_single.view(self.item_single.shape),
            item_bags=dataclasses.replace(self.item_bags, index=item_ids),
            dense=self.dense, click=self.click, purchase=self.purchase, table_rows=table_rows)


class TensorSplit:
    """A `Split` as column tensors with table rows; batches are sliced, never built per row."""

    def __init__(self, split, layout: FieldLayout, pooling: str):
        where = f"split {split.name!r}"
        self.n = len(split)
        self.click = torch.from_numpy(split.click.astype(np.float32))
        self.purchase = torch.from_numpy(split.purchase.astype(np.float32))
        # Only the requests these impressions belong to (a split of one request keeps the
        # whole request table; converting all of it would cost more than scoring).
        used, request = np.unique(split.request, return_inverse=True)
        self.request = torch.from_numpy(request.astype(np.int64).reshape(-1))
        self.item_single = _singles(layout.item_codes(split), layout.item_single, layout, where)
        self.item_bags = field_bags(schema.ITEM_MULTI, split.item_multi, layout, pooling, where)
        self.dense = torch.from_numpy(np.ascontiguousarray(split.dense, dtype=np.float32))
        if self.dense.shape[1:] != (N_DENSE,):
            raise ValueError(f"{where}: dense has shape {tuple(self.dense.shape)}, expected "
                             f"(rows, {N_DENSE})")
        all_used = len(used) == split.n_requests
        user_codes = split.user_codes if all_used else split.user_codes[used]
        user_multi = split.user_multi if all_used else \
            {f: r.take(used) for f, r in split.user_multi.items()}
        self.user_single = _singles(user_codes, schema.USER_SINGLE, layout, where)
        self.user_bags = field_bags(schema.USER_MULTI, user_multi, layout, pooling, where)
        self.n_item_bags = len(schema.ITEM_MULTI)
        self.n_user_bags = len(schema.USER_MULTI)

    def __len__(self) -> int:
        return self.n

    def batch(self, rows: torch.Tensor) -> Batch:
        requests, user_of_row = torch.unique(self.request[rows], return_inverse=True)
        return Batch(
            user_single=self.user_single[requests],
            user_bags=self.user_bags.take(_bag_ids(requests, self.n_user_bags)),
            user_of_row=user_of_row,
            item_single=self.item_single[rows],
            item_bags=self.item_bags.take(_bag_ids(rows, self.n_item_bags)),
            dense=self.dense[rows],
            click=self.click[rows],
            purchase=self.purchase[rows],
        )


def _bag_ids(rows: torch.Tensor, per_row: int) -> torch.Tensor:
    return (rows[:, None] * per_row + torch.arange(per_row)).reshape(-1)


class FeatureEmbedding(nn.Module):
    """One table for all fields; returns the flat model input (B, input_dim).

    `gradients` says how the table learns: "rows" (a compacted batch gathers its distinct rows
    into a small leaf tensor; its gradient goes to neural.optim.RowAdam), "sparse" (torch
    sparse gradients, for SparseAdam) or "dense" (a full-table gradient, for Adam).
    """

    def __init__(self, layout: FieldLayout, embedding_dim: int, gradients: str = "rows"):
        super().__init__()
        if gradients not in ("rows", "sparse", "dense"):
            raise ValueError(f"embedding gradients must be rows, sparse or dense: {gradients!r}")
        self.embedding_dim = embedding_dim
        self.gradients = gradients
        self.table = nn.Parameter(torch.empty(layout.n_rows, embedding_dim))
        # Small init keeps the hundred-id pooled lists and single ids on a similar scale.
        nn.init.normal_(self.table, std=0.01)
        self.out_dim = layout.input_dim(embedding_dim)
        # (table rows, leaf tensor of their embeddings) of the last compacted training batch.
        self.touched: tuple[torch.Tensor, torch.Tensor] | None = None

    def weight_for(self, batch: Batch) -> torch.Tensor:
        """The embedding rows the batch's ids point into."""
        if batch.table_rows is None:
            return self.table
        rows = self.table.detach()[batch.table_rows]  # (R, d)
        if self.training and torch.is_grad_enabled():
            rows.requires_grad_(True)
            self.touched = (batch.table_rows, rows)
        return rows

    def _torch_sparse(self, weight: torch.Tensor) -> bool:
        return self.gradients == "sparse" and weight is self.table

    def _lookup(self, ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self._torch_sparse(weight):
            return F.embedding(ids, weight, sparse=True)
        # index_select's backward is an index_add: no sort of the ids, unlike F.embedding's.
        return weight.index_select(0, ids.reshape(-1)).view(*ids.shape, self.embedding_dim)

    def _pool(self, bags: Bags, weight: torch.Tensor, n_fields: int) -> torch.Tensor:
        if self._torch_sparse(weight) or bags.segment is None:
            pooled = F.embedding_bag(bags.index, weight, bags.offsets[:-1], mode="sum",
                                     per_sample_weights=bags.weight,
                                     sparse=self._torch_sparse(weight))
        else:
            # Weighted ids summed into their bags; backward is a gather and an index_add,
            # cheaper than embedding_bag's sort-based backward on CPU.
            values = weight.index_select(0, bags.index) * bags.weight.unsqueeze(1)  # (ids, d)
            pooled = values.new_zeros(bags.n_bags, self.embedding_dim).index_add(
                0, bags.segment, values)
        return pooled.view(-1, n_fields, self.embedding_dim)

    def user_block(self, user_single: torch.Tensor, user_bags: Bags,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
        """(U, 13 * d): the user side of each distinct request."""
        weight = self.table if weight is None else weight
        single = self._lookup(user_single, weight)  # (U, 9, d)
        pooled = self._pool(user_bags, weight, len(schema.USER_MULTI))  # (U, 4, d)
        return torch.cat([single, pooled], dim=1).flatten(1)

    def item_block(self, item_single: torch.Tensor, item_bags: Bags,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 10 * d), or (B, 13 * d) with the cross ids: the impression side."""
        weight = self.table if weight is None else weight
        single = self._lookup(item_single, weight)  # (B, 9 or 12, d)
        pooled = self._pool(item_bags, weight, len(schema.ITEM_MULTI))  # (B, 1, d)
        return torch.cat([single, pooled], dim=1).flatten(1)

    def forward(self, batch: Batch) -> torch.Tensor:
        weight = self.weight_for(batch)
        user = self.user_block(batch.user_single, batch.user_bags, weight)
        item = self.item_block(batch.item_single, batch.item_bags, weight)
        return torch.cat([user[batch.user_of_row], item, batch.dense], dim=1)  # (B, input_dim)
