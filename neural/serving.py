"""Serving paths for the neural zoo: request-level sharing, an exported graph, int8 and bf16.

Every network maps a flat input x = [user block | item block | dense] to its outputs
(`RankingNet.score`). In a request every candidate has the same user block and the same
user-level dense columns, so a first layer W·x = W_u·x_u + W_i·x_i needs W_u·x_u once per
request and only W_i·x_i per candidate. `RequestInput` stands in for x inside `score`: linear
layers that read it (nn.Linear, and the fused expert bank's addmm) compute the user term once
and add it to the item term; any other use of x builds the full tensor, so every network stays
correct even where it gains nothing. Embeddings and pooled behaviour lists are computed once
per request as well (the shared input layer already pools them once per distinct request).

Paths (`serving_paths`), each `split -> {"ctr", "cvr", "ctcvr"}`, each checked against the
library's predict by bench.latency:
    eager_per_candidate  the plain forward with the user context copied into every
                    candidate (no sharing at all: the textbook reference)
    eager           the plain forward under torch.inference_mode (the reference to beat); its
                    input layer already embeds and pools each distinct request's user lists
                    once, as in training
    request_shared  the above, eager
    projected       every first layer's item side summed from projected embedding tables
                    (neural/projected.py), the rest of the network eager with the hidden
                    units zero on every candidate left out of each product (neural/pruned.py)
    compiled        the request-shared graph exported to ONNX and run by ONNX Runtime, chosen
                    over torch.export + AOTInductor by measurement (same speed, seconds to
                    export instead of a minute to compile); absent without onnxruntime
    int8            request_shared with dynamic int8 (per-row int8 activations, per-channel
                    int8 weights) for every per-candidate matmul; not equal to eager: its AUC
                    change is measured by `auc_change`
    bf16            request_shared under CPU autocast to bfloat16, task logits in float32
                    (measured fast on a CPU with AVX-512 BF16; without it, or AMX, it may be
                    slower than float32); not equal to eager either: `auc_change` measures it

Where a network computes something else from x, the equality check of bench.latency fails and
says so; nothing is assumed.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from ccp.data import schema
from ccp.tasks import MAIN_TASKS
from neural.inputs import USER_FIELDS, Batch, FieldLayout, TensorSplit

_USER_DENSE = [i for i, name in enumerate(schema.DENSE_FEATURES)
               if name.split("_value")[0] not in schema.COMBINATION]
_ITEM_DENSE = [i for i in range(len(schema.DENSE_FEATURES)) if i not in _USER_DENSE]


def column_split(layout: FieldLayout, embedding_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns of x that depend on the user only, and those that depend on the candidate (the
    cross ids, user x item, are the candidate's)."""
    n_user = len(USER_FIELDS) * embedding_dim
    dense0 = n_user + len(layout.item_fields) * embedding_dim
    user = list(range(n_user)) + [dense0 + i for i in _USER_DENSE]
    item = list(range(n_user, dense0)) + [dense0 + i for i in _ITEM_DENSE]
    return torch.tensor(user), torch.tensor(item)


class SplitWeights:
    """A weight's user rows and item rows, (in, out) and contiguous, computed once per weight."""

    def __init__(self, user_cols: torch.Tensor, item_cols: torch.Tensor, int8: bool = False):
        self.user_cols, self.item_cols, self.int8 = user_cols, item_cols, int8
        self.cache: dict = {}

    def get(self, weight_in_out: torch.Tensor):
        key = (weight_in_out.data_ptr(), tuple(weight_in_out.shape),
               weight_in_out.stride(), weight_in_out._version)
        if key not in self.cache:
            user = weight_in_out[self.user_cols].contiguous()
            item = weight_in_out[self.item_cols].contiguous()
            self.cache[key] = (user, _Int8Matmul(item) if self.int8 else item)
        return self.cache[key]


class _Int8Matmul:
    """x @ W with dynamic int8: weights quantised per output column once, activations per call."""

    counted: list | None = None  # multiply-adds of each call, while neural.roofline counts

    def __init__(self, weight_in_out: torch.Tensor):
        w = weight_in_out.t().contiguous()  # (out, in)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q = torch.quantize_per_channel(w, scale.double(), torch.zeros(len(w), dtype=torch.long),
                                       0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(q, None)

    def addmm(self, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.quantized.linear_dynamic(x, self.packed, True)
        if self.counted is not None:  # neural.roofline counts these (FlopCounterMode cannot)
            self.counted.append(x.shape[0] * x.shape[1] * out.shape[1])
        return out + bias


class RequestInput:
    """x of a request, held as its user part (U, du) and its candidates' item part (n, di).

    `user_of_row` maps candidates to user rows; None when U == 1 (a broadcast, no gather).
    """

    def __init__(self, user, item, user_of_row, weights: SplitWeights):
        self.user, self.item, self.user_of_row, self.weights = user, item, user_of_row, weights

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.item), self.user.shape[1] + self.item.shape[1]))

    def dim(self) -> int:
        return 2

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        return len(self.item)

    def materialize(self) -> torch.Tensor:
        user = self.user if self.user_of_row is None else self.user[self.user_of_row]
        x = self.item.new_empty(self.shape)
        x[:, self.weights.user_cols] = user
        x[:, self.weights.item_cols] = self.item
        return x

    def matmul_plus(self, weight_in_out: torch.Tensor, bias: torch.Tensor | None):
        """x @ W (+ b), with the user term computed once per user row."""
        w_user, w_item = self.weights.get(weight_in_out)
        user_term = self.user @ w_user  # (U, out)
        if bias is not None:
            user_term = user_term + bias
        if self.user_of_row is not None:
            user_term = user_term[self.user_of_row]  # (n, out)
        if isinstance(w_item, _Int8Matmul):
            return w_item.addmm(user_term, self.item)
        return torch.addmm(user_term, self.item, w_item)  # user term broadcast over candidates

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and isinstance(args[0], cls) and not kwargs:
            weight = args[1]
            bias = args[2] if len(args) > 2 else None
            return args[0].matmul_plus(weight.t(), bias)
        if func is torch.addmm and isinstance(args[1], cls) and not kwargs:
            return args[1].matmul_plus(args[2], args[0])
        if func in (torch.mm, torch.matmul, torch.Tensor.__matmul__) and \
                isinstance(args[0], cls) and not kwargs:
            return args[0].matmul_plus(args[1], None)
        # Anything else sees the full tensor: correct, only not faster.
        args = [a.materialize() if isinstance(a, cls) else a for a in args]
        return func(*args, **kwargs)

    def __matmul__(self, other):
        return self.matmul_plus(other, None)

    def __getitem__(self, index):
        return self.materialize()[index]

    def __getattr__(self, name):
        return getattr(self.materialize(), name)


def _network(model):
    network = getattr(model, "network", None)
    if network is None or not hasattr(network, "score") or not hasattr(network, "inputs"):
        raise TypeError(f"{type(model).__name__} holds no fitted RankingNet in .network")
    return network


class RequestScorer:
    """Scores requests of one fitted `NeuralRanker` along the paths above."""

    def __init__(self, model, int8: bool = False, bf16: bool = False):
        self.network = _network(model)
        self.bf16 = bf16
        self.layout, self.pooling = model.layout, model.config.pooling
        user_cols, item_cols = column_split(model.layout, model.config.embedding_dim)
        self.weights = SplitWeights(user_cols, item_cols, int8=int8)
        self._dense_user = torch.tensor(_USER_DENSE)
        self._dense_item = torch.tensor(_ITEM_DENSE)

    def batch(self, split) -> Batch:
        """The network's input batch for a split; one request needs no unique/gather."""
        data = TensorSplit(split, self.layout, self.pooling)
        if split.n_requests != 1:
            return data.batch(torch.arange(len(data)))
        return Batch(user_single=data.user_single, user_bags=data.user_bags,
                     user_of_row=torch.zeros(len(data), dtype=torch.int64),
                     item_single=data.item_single, item_bags=data.item_bags, dense=data.dense,
                     click=data.click, purchase=data.purchase)

    def parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(user part (U, du), item part (n, di), user of each row or None for one user)."""
        inputs = self.network.inputs
        user = inputs.user_block(batch.user_single, batch.user_bags)  # (U, 13 d)
        item = inputs.item_block(batch.item_single, batch.item_bags)  # (n, 10 d)
        dense_user = batch.dense.new_zeros(len(user), len(self._dense_user))
        dense_user[batch.user_of_row] = batch.dense[:, self._dense_user]  # equal within a user
        one_user = len(user) == 1
        return (torch.cat([user, dense_user], 1),
                torch.cat([item, batch.dense[:, self._dense_item]], 1),
                None if one_user else batch.user_of_row)

    def score_parts(self, user, item, user_of_row=None) -> dict[str, torch.Tensor]:
        return self.network.score(RequestInput(user, item, user_of_row, self.weights))

    def eager(self, split) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            return _numpy(self.network(self.batch(split)))

    def per_candidate(self, split) -> dict[str, np.ndarray]:
        """The plain forward with the user context copied into every candidate's row, as a
        pipeline that stores user features in each impression scores: the user's embeddings
        and behaviour lists are looked up and pooled once per candidate, not once per request
        (which the shared input layer does even in `eager`)."""
        with torch.inference_mode():
            data = TensorSplit(split, self.layout, self.pooling)
            if split.n_requests != 1:
                raise ValueError("the per-candidate path scores one request at a time")
            n, bags = len(data), data.user_bags.n_bags
            batch = Batch(user_single=data.user_single.expand(n, -1).contiguous(),
                          user_bags=data.user_bags.take(torch.arange(bags).repeat(n)),
                          user_of_row=torch.arange(n), item_single=data.item_single,
                          item_bags=data.item_bags, dense=data.dense, click=data.click,
                          purchase=data.purchase)
            return _numpy(self.network(batch))

    def precision(self):
        """bf16: CPU autocast (bfloat16 matmul inputs, float32 accumulation); else nothing."""
        if self.bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def shared(self, split) -> dict[str, np.ndarray]:
        with torch.inference_mode(), self.precision():
            return _numpy(self.score_parts(*self.parts(self.batch(split))))

    def predict(self, split, batch_size: int = 16384) -> dict[str, np.ndarray]:
        """The shared path over a whole split, in batches of consecutive rows."""
        data = TensorSplit(split, self.layout, self.pooling)
        parts = {k: [] for k in MAIN_TASKS}
        with torch.inference_mode(), self.precision():
            for start in range(0, len(data), batch_size):
                batch = data.batch(torch.arange(start, min(start + batch_size, len(data))))
                out = _numpy(self.score_parts(*self.parts(batch)))
                for key in MAIN_TASKS:
                    parts[key].append(out[key])
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def _numpy(out: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: out[k].float().numpy().astype(np.float64) for k in MAIN_TASKS}


class _Stacked(torch.nn.Module):
    """(user (1, du), item (n, di)) -> (n, 3) probabilities: the graph that is exported."""

    def __init__(self, scorer: RequestScorer):
        super().__init__()
        self.scorer = scorer
        self.network = scorer.network  # registers the weights with the exporter

    def forward(self, user, item):
        out = self.scorer.score_parts(user, item)
        return torch.stack([out[k] for k in MAIN_TASKS], dim=1)


class OnnxScorer:
    """The request-shared graph in ONNX Runtime, exported once per request size.

    A graph is specialised to its number of candidates (`len(x)` in a network is a constant
    to the exporter), as a server pads requests to a few bucket sizes; the export (well under
    a second) happens at the first request of a size, inside the untimed warm-up.
    """

    def __init__(self, scorer: RequestScorer):
        import onnxruntime  # noqa: F401  (fail here, not at the first request)

        self.scorer = scorer
        self.mac_source = scorer.shared  # the graph it exports (neural.roofline counts it)
        self.graphs: dict[int, bytes] = {}
        self.sessions: dict[tuple[int, int], object] = {}

    def _export(self, user: torch.Tensor, item: torch.Tensor) -> bytes:
        import io
        import warnings

        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(_Stacked(self.scorer).eval(), (user, item), buffer,
                              input_names=["user", "item"], output_names=["scores"],
                              dynamo=False)
        return buffer.getvalue()

    def session(self, user: torch.Tensor, item: torch.Tensor, threads: int):
        n = len(item)
        if (n, threads) not in self.sessions:
            import onnxruntime as ort

            if n not in self.graphs:
                self.graphs[n] = self._export(user, item)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Its pool's threads must not spin between requests: at 2 threads they took the
            # cores from torch's paths timed in turn with this one (library p50 6.6 ms with
            # compiled in the rotation, 2.7 ms without; audit of this stop).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.sessions[n, threads] = ort.InferenceSession(
                self.graphs[n], options, providers=["CPUExecutionProvider"])
        return self.sessions[n, threads]

    def __call__(self, split) -> dict[str, np.ndarray]:
        if split.n_requests != 1:
            raise ValueError("the compiled path scores one request at a time")
        with torch.inference_mode():
            user, item, _ = self.scorer.parts(self.scorer.batch(split))
        # The thread count being measured is torch's (ccp.timing.pinned_threads sets it).
        session = self.session(user, item, torch.get_num_threads())
        scores = session.run(None, {"user": user.numpy(), "item": item.numpy()})[0]
        return {k: scores[:, i].astype(np.float64) for i, k in enumerate(MAIN_TASKS)}
