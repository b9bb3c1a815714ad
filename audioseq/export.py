"""The trained network as an ONNX graph, and ONNX Runtime to run it on CPU.

The graph is built from the weights already in memory (a model file is never an ONNX file,
and no ONNX file is ever read): normalisation, the stacked recurrent layers as ONNX's own
RNN / GRU / LSTM operators with per-sequence lengths, the pooling over time and the linear
head. Its inputs are frames ``(B, T, F)`` float32 and lengths ``(B,)`` int64; its output the
logits ``(B, C)`` — the same function as :class:`~audioseq.model.SequenceClassifier` in
evaluation mode.

A cell can be exported when it says how (:meth:`onnx_recurrence`, returning an
:class:`OnnxRecurrence`); the built-in ``rnn``, ``lstm`` and ``gru`` do. The ``onnx`` and
``onnxruntime`` packages are imported only when used; where they are not installed,
``backend="auto"`` runs torch.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from .errors import AudioseqError

if TYPE_CHECKING:
    import onnx

    from .model import SequenceClassifier

OPSET = 17


class ExportError(AudioseqError):
    """The network cannot be written as an ONNX graph (e.g. a cell with no ONNX form)."""


@dataclasses.dataclass(frozen=True)
class OnnxRecurrence:
    """One direction of a recurrent layer in ONNX's terms (``onnx_recurrence`` returns None when a
    cell has no ONNX form with its parameters).

    Weights are in ONNX's gate order (GRU: update, reset, hidden; LSTM: input, output,
    forget, cell), G gates of H units: ``weight_ih`` (G·H, I), ``weight_hh`` (G·H, H),
    ``bias_ih`` and ``bias_hh`` (G·H,). ``activations`` as ONNX names them, for one direction.
    """

    op: Literal["RNN", "GRU", "LSTM"]
    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor
    bias_hh: Tensor
    activations: tuple[str, ...] = ()
    linear_before_reset: bool = False  # GRU: reset gate applied after the recurrent product (torch's form)


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def exportable(model: "SequenceClassifier") -> str | None:
    """None when every cell of ``model`` has an ONNX form, else the reason it has not."""
    for layer in model.encoder.layers:
        for cell in layer:
            if not hasattr(cell, "onnx_recurrence"):
                return f"cell {model.config.cell!r} has no ONNX form (no onnx_recurrence method)"
            try:
                form = cell.onnx_recurrence()
            except Exception as exc:  # a plugin's bug must not surface as a bare traceback
                return f"cell {model.config.cell!r}: onnx_recurrence raised {type(exc).__name__}: {exc}"
            if form is None:
                return f"cell {model.config.cell!r} has no ONNX form with its parameters {model.config.cell_params}"
    return None


class _Graph:
    """A small builder: nodes, constants and fresh names."""

    def __init__(self) -> None:
        import onnx

        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0
        self._ints: dict[tuple[Any, ...], str] = {}

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: Any, hint: str = "c", dtype: Any = np.float32) -> str:
        name = self.name(hint)
        array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
        self.initializers.append(self.onnx.numpy_helper.from_array(array.astype(dtype), name))
        return name

    def ints(self, *values: int, scalar: bool = False) -> str:
        """An int64 constant (axes, shapes, indices), a vector or one ``scalar``, made once per value."""
        key = (scalar, *values)
        if key not in self._ints:
            self._ints[key] = self.const(values[0] if scalar else list(values), "i", np.int64)
        return self._ints[key]

    def linear(self, x: str, layer: Any) -> str:
        """``torch.nn.Linear`` on the last axis of ``x``."""
        return self.op("Add", self.op("MatMul", x, self.const(layer.weight.T, "w")), self.const(layer.bias, "b"))

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs: Any) -> str:
        """Append a node; returns the name of its (single) output."""
        name = self.name(hint or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [name], **attrs))
        return name


def _recurrent_layer(g: _Graph, x: str, seq_lens: str, cells: list[Any]) -> str:
    """One layer, time-major: x (T, B, I) → (T, B, D·H)."""
    parts = [cell.onnx_recurrence() for cell in cells]
    first = parts[0]
    if any(p.op != first.op or p.linear_before_reset != first.linear_before_reset for p in parts):
        raise ExportError("both directions of a layer must use the same ONNX operator")
    hidden = first.weight_hh.shape[1]
    W = g.const(torch.stack([p.weight_ih for p in parts]), "W")
    R = g.const(torch.stack([p.weight_hh for p in parts]), "R")
    B = g.const(torch.stack([torch.cat([p.bias_ih, p.bias_hh]) for p in parts]), "B")
    attrs: dict[str, Any] = {
        "hidden_size": int(hidden),
        "direction": "bidirectional" if len(parts) == 2 else "forward",
    }
    if first.activations:
        attrs["activations"] = [a for p in parts for a in p.activations]
    if first.op == "GRU":
        attrs["linear_before_reset"] = int(first.linear_before_reset)
    y = g.op(first.op, x, W, R, B, seq_lens, hint=first.op.lower(), **attrs)  # (T, D, B, H)
    y = g.op("Transpose", y, perm=[0, 2, 1, 3])
    return g.op("Reshape", y, g.ints(0, 0, -1))


def to_onnx(model: "SequenceClassifier", metadata: dict[str, str] | None = None) -> "onnx.ModelProto":
    """The network in evaluation mode as an ONNX model: (frames, lengths) → logits.

    ``metadata`` goes into the model's ``metadata_props`` (ONNX Runtime's
    ``custom_metadata_map``), e.g. the labels and how frames are computed.

    Raises:
        ExportError: a cell has no ONNX form, or ``onnx`` is not installed.
    """
    reason = exportable(model)
    if reason:
        raise ExportError(reason)
    try:
        g = _Graph()
    except ImportError as exc:
        raise ExportError("exporting needs the onnx package: pip install onnx") from exc
    onnx = g.onnx
    config = model.config
    zero = g.const(0.0, "zero")

    # Valid-frame mask (B, T) from the lengths.
    T = g.op("Gather", g.op("Shape", "frames"), g.ints(1, scalar=True), axis=0)
    steps = g.op("Range", g.ints(0, scalar=True), T, g.ints(1, scalar=True))
    mask = g.op(
        "Less",
        g.op("Unsqueeze", steps, g.ints(0)),
        g.op("Unsqueeze", "lengths", g.ints(1)),
    )
    mask3 = g.op("Unsqueeze", mask, g.ints(2))  # (B, T, 1)
    counts = g.op("Cast", g.op("Max", "lengths", g.ints(1, scalar=True)), to=onnx.TensorProto.FLOAT)
    counts = g.op("Unsqueeze", counts, g.ints(1))  # (B, 1)

    # SequenceClassifier.normalise
    x = g.op("Where", mask3, "frames", zero)
    if config.utterance_norm:
        total = g.op("ReduceSum", x, g.ints(1), keepdims=1)  # (B, 1, F)
        x = g.op("Sub", x, g.op("Div", total, g.op("Unsqueeze", counts, g.ints(2))))
    x = g.op("Div", g.op("Sub", x, g.const(model.norm.mean, "mean")), g.const(model.norm.std, "std"))
    x = g.op("Where", mask3, x, zero)

    # RecurrentEncoder, time-major as ONNX's recurrent operators want it
    seq_lens = g.op("Cast", "lengths", to=onnx.TensorProto.INT32)
    x = g.op("Transpose", x, perm=[1, 0, 2])
    for layer in model.encoder.layers:
        x = _recurrent_layer(g, x, seq_lens, list(layer))
    out = g.op("Where", mask3, g.op("Transpose", x, perm=[1, 0, 2]), zero)  # (B, T, D)
    size = model.encoder.output_size

    # TimePooling
    pool = model.pool
    if pool.mode == "last":
        idx = g.op("Reshape", g.op("Sub", "lengths", g.ints(1, scalar=True)), g.ints(-1, 1, 1))
        batch = g.op("Shape", "lengths")
        idx = g.op("Expand", idx, g.op("Concat", batch, g.ints(1, size), axis=0))
        pooled = g.op("Squeeze", g.op("GatherElements", out, idx, axis=1), g.ints(1))
        if config.bidirectional:
            half = size // 2
            fwd = g.op("Slice", pooled, g.ints(0), g.ints(half), g.ints(1))
            first = g.op("Gather", out, g.ints(0, scalar=True), axis=1)  # (B, D)
            back = g.op("Slice", first, g.ints(half), g.ints(size), g.ints(1))
            pooled = g.op("Concat", fwd, back, axis=1)
    elif pool.mode == "mean":
        pooled = g.op("Div", g.op("ReduceSum", out, g.ints(1), keepdims=0), counts)
    else:
        first, _, second = pool.score
        s = g.linear(g.op("Tanh", g.linear(out, first)), second)
        s = g.op("Squeeze", s, g.ints(2))  # (B, T)
        w = g.op("Softmax", g.op("Where", mask, s, g.const(float("-inf"), "neg_inf")), axis=1)
        pooled = g.op("MatMul", g.op("Unsqueeze", w, g.ints(1)), out)  # (B, 1, D)
        pooled = g.op("Squeeze", pooled, g.ints(1))

    logits = g.linear(pooled, model.head)
    g.nodes.append(onnx.helper.make_node("Identity", [logits], ["logits"]))
    graph = onnx.helper.make_graph(
        g.nodes,
        "audioseq",
        [
            onnx.helper.make_tensor_value_info("frames", onnx.TensorProto.FLOAT, ["batch", "time", config.input_size]),
            onnx.helper.make_tensor_value_info("lengths", onnx.TensorProto.INT64, ["batch"]),
        ],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", config.num_classes])],
        g.initializers,
    )
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="audioseq")
    onnx.helper.set_model_props(proto, metadata or {})
    onnx.checker.check_model(proto)
    return proto


RUN_GROUP = 16
"""Most clips in one ONNX Runtime run. Its recurrent operators compute every padded step, at
a cost per clip and frame that is the same for 8 to 64 clips (measured on the bundled model:
2.0-2.1 µs, and 2.2-2.8 µs for 128 to 256), so a batch runs as groups of this many clips of
similar length, each cut to its longest clip: 1.5x faster on the batches prediction makes."""


class OnnxNetwork:
    """An ONNX Runtime session for a network: ``(frames, lengths) → logits`` on CPU.

    ``threads`` defaults to one fewer than torch uses (at least one): prediction decodes the
    next clips in the calling thread while the network runs. Idle threads sleep instead of
    spinning, so they do not take the cores from torch's feature computation between runs.
    """

    def __init__(self, model: "SequenceClassifier", threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ExportError("the onnxruntime backend needs: pip install onnx onnxruntime") from exc
        proto = to_onnx(model)
        self.num_classes = model.config.num_classes
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, torch.get_num_threads() - 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def __call__(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """frames (B, T, F), lengths (B,) → logits (B, C), on CPU.

        The clips run in groups of at most :data:`RUN_GROUP`, shortest first, each group's
        frames cut to its longest clip; a clip's logits do not depend on its group.
        """
        values = frames.detach().cpu().numpy()
        counts = lengths.detach().cpu().numpy().astype(np.int64)
        if len(counts) == 0:  # ONNX Runtime's recurrent operators crash on no clips
            return torch.empty(0, self.num_classes)
        if len(counts) <= RUN_GROUP:
            return torch.from_numpy(self._run(values, counts))
        logits = np.empty((len(counts), self.num_classes), dtype=np.float32)
        order = np.argsort(counts, kind="stable")
        for start in range(0, len(order), RUN_GROUP):
            group = order[start : start + RUN_GROUP]
            logits[group] = self._run(values[group, : max(1, int(counts[group].max()))], counts[group])
        return torch.from_numpy(logits)

    def _run(self, frames: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """One ONNX Runtime run: frames (B, T, F), lengths (B,) int64 → logits (B, C)."""
        feeds = {"frames": np.ascontiguousarray(frames, dtype=np.float32), "lengths": lengths}
        return self.session.run(["logits"], feeds)[0]
