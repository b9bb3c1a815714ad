"""Contract checks for recurrent cells, for a cell author's own tests::

    from audioseq.testing import check_cell

    def test_my_cell_keeps_the_contract():
        check_cell(MyCell, hidden_size=8, depth=2)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Callable, Iterator, Mapping, NoReturn

import torch
from torch import Tensor, nn

from ..errors import AudioseqError, ModelFileError
from ..hookspecs import Register, hookimpl
from ..modelfile import read_tensors, write_tensors
from ..plugins import pm, refresh
from ..recurrent import RecurrentEncoder, unroll
from .contract import (
    ContractError, batch_row, checked_params, component_name, max_diff, quiet_torch, random_like, state_diff,
    state_leaves,
)

TOLERANCE = 1e-5  # largest difference allowed between two ways of computing the same thing
LENGTHS = (3, 9, 1, 6)  # ragged and unsorted, with a length-1 sequence: where masks go wrong
STREAM_FRAMES = 11
CPU = torch.device("cpu")

Run = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Any]]


def check_cell(factory: Callable[..., nn.Module], input_size: int = 5, hidden_size: int = 7, **params: Any) -> None:
    """Check that a recurrent cell keeps the contract the engine relies on.

    Covers: declared parameters; ``initial_state`` and ``forward`` shapes, dtypes (float32 and
    float64) and finiteness; determinism; padding and length-mask invariance (alone vs in a
    padded batch, junk in the padding); ``forward_sequence`` against unrolling (outputs, final
    state, gradients); ``forward_gates``/``gate_names``; streaming (frame by frame, in chunks,
    and ``RecurrentEncoder.step`` against its forward); gradients reaching every parameter and
    the input; the model-file round trip; for a cell with ``onnx_recurrence``, a whole network
    run by ONNX Runtime against torch (when ``onnx`` and ``onnxruntime`` are installed).

    Args:
        factory: builds the cell, ``factory(input_size, hidden_size, **params) -> nn.Module``.
        input_size: I, values per input frame.
        hidden_size: H, values per output frame.
        params: the cell's own parameters, as a user would give them.
    Raises:
        ContractError: naming the broken property, the numbers and the fix.
    """
    checked_params(factory, 2, params, "input_size and hidden_size")
    with quiet_torch():
        _CellChecks(factory, input_size, hidden_size, params).run()


def _unroll(cell: nn.Module, x: Tensor, lengths: Tensor, state: Any = None) -> tuple[Tensor, Any]:
    return unroll(cell, x, lengths, state)


def _fast(
    cell: nn.Module, x: Tensor, lengths: Tensor, state: Any = None, need_state: bool = True
) -> tuple[Tensor, Any]:
    if state is None:
        state = cell.initial_state(x.shape[0], x.device, x.dtype)
    return cell.forward_sequence(x, lengths, state, need_state=need_state)


def _fast_outputs(cell: nn.Module, x: Tensor, lengths: Tensor, state: Any = None) -> tuple[Tensor, Any]:
    """The fast path as the encoder runs it (no final state); each sequence's last output stands in for the state."""
    out = _fast(cell, x, lengths, state, need_state=False)[0]
    return out, out[torch.arange(out.shape[0]), lengths.to(out.device) - 1]


@contextlib.contextmanager
def _registered_cell(factory: Callable[..., nn.Module]) -> Iterator[str]:
    """Register ``factory`` as a cell while the block runs, so engine classes that take a cell name can build it."""
    name = f"contract-check-{id(factory):x}"

    class _Plugin:
        @hookimpl
        def register_cells(self, register: Register) -> None:
            register(name, factory)

    plugin = _Plugin()
    pm.register(plugin, name=name)
    refresh()
    try:
        yield name
    finally:
        pm.unregister(plugin)
        refresh()


class _CellChecks:
    def __init__(
        self, factory: Callable[..., nn.Module], input_size: int, hidden_size: int, params: dict[str, Any]
    ) -> None:
        self.factory = factory
        self.who = component_name(factory)
        self.I, self.H, self.params = input_size, hidden_size, params
        self.gen = torch.Generator().manual_seed(0)
        self.lengths = torch.tensor(LENGTHS)
        self.B, self.T = len(LENGTHS), max(LENGTHS)
        self.valid = torch.arange(self.T).unsqueeze(0) < self.lengths.unsqueeze(1)  # (B, T)

    def fail(self, check: str, detail: str, fix: str) -> NoReturn:
        raise ContractError(self.who, check, detail, fix)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.randn(shape, generator=self.gen, dtype=dtype)

    def make(self) -> nn.Module:
        try:
            cell = self.factory(self.I, self.H, **self.params)
        except Exception as exc:
            self.fail("construction", f"factory({self.I}, {self.H}, **{self.params!r}) raised {type(exc).__name__}: {exc}",
                      "build the cell from (input_size, hidden_size) and the declared parameters")
        if not isinstance(cell, nn.Module):
            self.fail("construction", f"the factory returned a {type(cell).__name__}", "return a torch.nn.Module")
        return cell

    def run(self) -> None:
        cell = self.make().eval()
        with torch.no_grad():
            for dtype in (torch.float32, torch.float64):
                self.state_and_step(dtype)
            self.determinism(cell)
            # In float64: batch shapes pick different BLAS kernels, and float32 rounding, grown
            # through a recurrence (sharply so behind a layer norm), would blur a real leak.
            wide = self.make().double().eval()
            self.padding(wide, "unroll", _unroll)
            if hasattr(wide, "forward_sequence"):
                self.fast_path_signature(wide)
                self.padding(wide, "forward_sequence", _fast)
                self.padding(wide, "forward_sequence(need_state=False)", _fast_outputs)
            self.gates(cell)
            self.streaming(cell)
            self.encoder_streaming()
            self.model_file(cell)
            if hasattr(cell, "onnx_recurrence") and cell.onnx_recurrence() is not None:  # None: not with these params
                self.onnx_export()
        if hasattr(cell, "forward_sequence"):
            self.fast_path(cell)
        self.gradients(self.make().train())

    def state_and_step(self, dtype: torch.dtype) -> None:
        cell = self.make().to(dtype).eval()
        for batch in (1, 3):
            try:
                state = cell.initial_state(batch, CPU, dtype)
                leaves = state_leaves(state)
            except Exception as exc:
                self.fail("initial_state", f"initial_state({batch}, cpu, {dtype}) gave {type(exc).__name__}: {exc}",
                          "return a tensor (batch_size, ...) or a tuple of them, on device and in dtype")
            for leaf in leaves:
                if leaf.shape[:1] != (batch,) or leaf.dtype != dtype or not bool(torch.isfinite(leaf).all()):
                    self.fail("initial_state", f"for batch_size={batch}, {dtype} it gave a {leaf.dtype} tensor of shape "
                              f"{tuple(leaf.shape)}", "put the batch first, honour device and dtype, keep values finite")
            result = cell(self.randn(batch, self.I, dtype=dtype), state)
            if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Tensor)):
                self.fail("forward result", f"forward returned {type(result).__name__}", "return (h_t, new_state)")
            h, new_state = result
            if h.shape != (batch, self.H) or h.dtype != dtype:
                self.fail("forward output",
                          f"expected a {dtype} tensor ({batch}, {self.H}), got {h.dtype} {tuple(h.shape)}",
                          "return h_t of shape (B, hidden_size), computed in the dtype of the input and state")
            if not bool(torch.isfinite(h).all()):
                self.fail("forward output", "non-finite values for standard-normal input",
                          "keep the step numerically stable")
            try:
                new_leaves = state_leaves(new_state)
            except TypeError as exc:
                self.fail("state structure", str(exc), "return the new state in the structure of initial_state")
            if not all(bool(torch.isfinite(leaf).all()) for leaf in new_leaves):
                self.fail("new state", f"forward returned a non-finite state for standard-normal input ({dtype})",
                          "keep the state update numerically stable: a NaN or inf in the state reaches every "
                          "later output")
            before = [(tuple(t.shape), t.dtype) for t in leaves]
            after = [(tuple(t.shape), t.dtype) for t in new_leaves]
            if before != after:
                self.fail("state structure", f"initial_state gave {before}, forward returned {after}",
                          "keep the state's structure, shapes and dtypes from step to step: the engine selects "
                          "between old and new state per sequence")

    def determinism(self, cell: nn.Module) -> None:
        state = random_like(cell.initial_state(self.B, CPU, torch.float32), self.gen)
        kept = random_like(state, self.gen)
        for mine, copy in zip(state_leaves(state), state_leaves(kept)):
            copy.copy_(mine)
        x = self.randn(self.B, self.I)
        h1, s1 = cell(x, state)
        h2, s2 = cell(x, state)
        if state_diff(state, kept) > 0:
            self.fail("state modified in place", "forward changed the state it was given",
                      "build a new state; the engine keeps the old one for sequences that have ended")
        if not all(bool(torch.isfinite(t).all()) for t in [h1, *state_leaves(s1)]):
            self.fail("new state", "forward returned a non-finite h_t or state from a random finite state",
                      "keep the step numerically stable for any finite state, not only the initial one")
        diff = max(max_diff(h1, h2), state_diff(s1, s2))
        if diff > 0:
            self.fail("determinism", f"the same input and state gave results {diff:.3g} apart in eval mode",
                      "draw no random numbers in eval mode and carry nothing between calls outside the state")

    def padding(self, cell: nn.Module, path: str, run: Run) -> None:
        """``cell`` runs in float64."""
        x = self.randn(self.B, self.T, self.I, dtype=torch.float64) * self.valid.unsqueeze(-1)
        out, final = run(cell, x, self.lengths)
        if out.shape != (self.B, self.T, self.H):
            self.fail(f"{path} output", f"expected ({self.B}, {self.T}, {self.H}), got {tuple(out.shape)}",
                      "return outputs (B, T, hidden_size)")
        leak = float(out.masked_select(~self.valid.unsqueeze(-1)).abs().max())
        if leak != 0:
            self.fail(f"{path} output past the length", f"found {leak:.3g} at padded frames; they must be exactly 0",
                      "zero the outputs past each length: pooling and the backward direction read them")
        for b, n in enumerate(LENGTHS):
            alone, alone_state = run(cell, x[b : b + 1, :n], self.lengths[b : b + 1])
            d_out = max_diff(out[b : b + 1, :n], alone)
            d_state = state_diff(batch_row(final, b), alone_state)
            if max(d_out, d_state) > TOLERANCE:
                self.fail("padding leaked into the state", f"{path}: the output for a sequence of length {n} changed by "
                          f"{d_out:.3g} (its final state by {d_state:.3g}) when padded to {self.T} in a batch",
                          "mask the state update with the lengths, or rely on the engine's unroll")
        cell.train()  # with equal random draws, statistics taken across the batch show up here
        try:
            for what, junk in (("1e4-scaled noise", 1e4 * self.randn(self.B, self.T, self.I, dtype=torch.float64)),
                               ("the constant 1e6", torch.full((self.B, self.T, self.I), 1e6, dtype=torch.float64))):
                torch.manual_seed(1)
                ref, ref_state = run(cell, x, self.lengths)
                torch.manual_seed(1)
                got, got_state = run(cell, torch.where(self.valid.unsqueeze(-1), x, junk), self.lengths)
                diff = max(max_diff(ref, got), state_diff(ref_state, got_state))
                if diff > TOLERANCE:
                    self.fail("padding values changed the results", f"{path}: filling the padding with {what} moved "
                              f"valid outputs or final states by {diff:.3g} (training mode)",
                              "never read frames past a sequence's length and take no statistics across the batch "
                              "(use layer norm, not batch norm)")
        finally:
            cell.eval()

    def fast_path_signature(self, cell: nn.Module) -> None:
        x = torch.zeros(self.B, self.T, self.I, dtype=torch.float64)
        try:
            _fast(cell, x, self.lengths, need_state=False)
        except TypeError as exc:
            self.fail("forward_sequence signature", f"need_state=False was refused: {exc}",
                      "accept need_state: bool = True (the engine passes False when it only reads the outputs)")

    def fast_path(self, cell: nn.Module) -> None:
        x = self.randn(self.B, self.T, self.I)  # padding holds noise: both paths must ignore it
        initial = cell.initial_state(self.B, CPU, torch.float32)
        for label, state in (("the initial state", initial), ("a random state", random_like(initial, self.gen))):
            o_slow, s_slow = unroll(cell, x, self.lengths, state)
            o_fast, s_fast = cell.forward_sequence(x, self.lengths, state)
            d_out, d_state = max_diff(o_slow, o_fast), state_diff(s_slow, s_fast)
            if max(d_out, d_state) > TOLERANCE:
                self.fail("fast path differs from unrolling", f"forward_sequence from {label}: outputs differ by "
                          f"{d_out:.3g}, final states by {d_state:.3g} (tolerance {TOLERANCE:g})",
                          "compute what stepping forward computes on the same parameters (gate order, biases, "
                          "masks), or remove forward_sequence")
            o_only, _ = cell.forward_sequence(x, self.lengths, state, need_state=False)
            if (d_out := max_diff(o_slow, o_only)) > TOLERANCE:
                self.fail("fast path differs from unrolling", f"forward_sequence(..., need_state=False) from {label}: "
                          f"outputs differ by {d_out:.3g} (tolerance {TOLERANCE:g})",
                          "compute the same outputs whether or not the final state is wanted")
        named = [(n, p) for n, p in cell.named_parameters() if p.requires_grad]
        weights = self.randn(self.B, self.T, self.H)
        params = [p for _, p in named]
        slow = torch.autograd.grad((unroll(cell, x, self.lengths)[0] * weights).sum(), params, allow_unused=True)
        for need_state in (True, False):
            out = _fast(cell, x, self.lengths, need_state=need_state)[0]
            fast = torch.autograd.grad((out * weights).sum(), params, allow_unused=True)
            for (name, p), a, b in zip(named, slow, fast):
                diff = max_diff(torch.zeros_like(p) if a is None else a, torch.zeros_like(p) if b is None else b)
                if diff > 1e-4:
                    self.fail("fast path gradients", f"the gradient of {name!r} differs by {diff:.3g} between "
                              f"forward_sequence (need_state={need_state}) and unrolling",
                              "train through the same function the step computes")

    def gates(self, cell: nn.Module) -> None:
        names = getattr(cell, "gate_names", ())
        if not (isinstance(names, tuple) and all(isinstance(n, str) for n in names)):
            self.fail("gate_names", f"got {names!r}", "make gate_names a tuple of str")
        meanings = getattr(cell, "gate_meanings", {})
        if not (isinstance(meanings, Mapping) and all(isinstance(v, str) for v in meanings.values())
                and set(meanings) <= set(names)):
            self.fail("gate_meanings", f"got {meanings!r} for gates {names}",
                      "map some of gate_names to a line of text each, or leave gate_meanings out")
        if not hasattr(cell, "forward_gates"):
            if names:
                self.fail("gate_names", f"{names} are named but there is no forward_gates",
                          "add forward_gates(x_t, state) -> (h_t, new_state, gates) or drop gate_names")
            return
        state = random_like(cell.initial_state(self.B, CPU, torch.float32), self.gen)
        x = self.randn(self.B, self.I)
        h, new_state = cell(x, state)
        result = cell.forward_gates(x, state)
        if not (isinstance(result, tuple) and len(result) == 3 and isinstance(result[2], dict)):
            self.fail("forward_gates result", f"got {type(result).__name__}", "return (h_t, new_state, {name: (B, H) tensor})")
        diff = max(max_diff(h, result[0]), state_diff(new_state, result[1]))
        if diff > TOLERANCE:
            self.fail("forward_gates disagrees with forward", f"h_t or the state differ by {diff:.3g}",
                      "let forward call forward_gates and drop the gates, so the two cannot drift apart")
        for name in names:
            gate = result[2].get(name)
            if not isinstance(gate, Tensor) or gate.shape != (self.B, self.H) or not bool(torch.isfinite(gate).all()):
                got = f"shape {tuple(gate.shape)}" if isinstance(gate, Tensor) else f"keys {sorted(result[2])}"
                self.fail("gate activations", f"gate {name!r}: expected finite ({self.B}, {self.H}), got {got}",
                          "return every name in gate_names with one activation per sequence and hidden unit")

    def streaming(self, cell: nn.Module) -> None:
        x = self.randn(2, STREAM_FRAMES, self.I)
        full = torch.full((2,), STREAM_FRAMES)
        offline, offline_state = unroll(cell, x, full)
        state, steps = cell.initial_state(2, CPU, torch.float32), []
        for t in range(STREAM_FRAMES):
            h, state = cell(x[:, t], state)
            steps.append(h)
        k = 4  # the state carried across a chunk boundary must resume the stream exactly
        first, mid = unroll(cell, x[:, :k], torch.full((2,), k))
        second, end = unroll(cell, x[:, k:], full - k, mid)
        for how, out, last in (("frame by frame", torch.stack(steps, 1), state),
                               (f"in chunks of {k} and {STREAM_FRAMES - k} frames", torch.cat([first, second], 1), end)):
            diff = max(max_diff(out, offline), state_diff(last, offline_state))
            if diff > TOLERANCE:
                self.fail("streaming differs from offline", f"running {how} differs by {diff:.3g} from unrolling the "
                          "whole sequence", "keep everything a step needs in the state, not in the module")

    def encoder_streaming(self) -> None:
        with _registered_cell(self.factory) as name:
            try:
                encoder = RecurrentEncoder(name, self.I, self.H, num_layers=2, cell_params=self.params).eval()
            except AudioseqError as exc:
                self.fail("engine construction", f"RecurrentEncoder could not build the cell: {exc}",
                          "register a factory the engine can build with validated parameters")
        x = self.randn(2, STREAM_FRAMES, self.I)
        lengths = torch.full((2,), STREAM_FRAMES)
        offline = encoder(x, lengths)
        states, steps = encoder.initial_states(2, CPU, torch.float32), []
        for t in range(STREAM_FRAMES):
            h, states, _ = encoder.step(x[:, t], states)
            steps.append(h)
        diff = max_diff(torch.stack(steps, 1), offline)
        if diff > TOLERANCE:
            self.fail("streaming differs from offline", f"RecurrentEncoder.step frame by frame differs by {diff:.3g} "
                      "from RecurrentEncoder.forward (2 layers)", "make forward_gates and forward_sequence compute "
                      "what forward computes")

    def onnx_export(self) -> None:
        from ..export import OnnxNetwork, onnxruntime_available
        from ..model import NetworkConfig, SequenceClassifier

        if not onnxruntime_available():
            return
        with _registered_cell(self.factory) as name:
            for bidirectional in (False, True):
                config = NetworkConfig(self.I, 3, cell=name, cell_params=self.params, hidden_size=self.H,
                                       bidirectional=bidirectional, pooling="last")
                model = SequenceClassifier(config).eval()
                try:
                    network = OnnxNetwork(model, threads=1)
                except Exception as exc:  # the exporter's, onnx's checker's or ONNX Runtime's refusal
                    self.fail("ONNX export", f"the network could not be exported: {type(exc).__name__}: {exc}",
                              "return an OnnxRecurrence whose weights have ONNX's shapes and gate order")
                x = self.randn(self.B, self.T, self.I)
                diff = max_diff(network(x, self.lengths), model(x, self.lengths))
                if diff > TOLERANCE:
                    way = "bidirectional" if bidirectional else "forward"
                    self.fail("ONNX export", f"a 2-layer {way} network's logits under ONNX Runtime differ by "
                              f"{diff:.3g} from torch's", "give onnx_recurrence's weights in ONNX's gate order "
                              "(GRU: update, reset, hidden; LSTM: input, output, forget, cell) and the "
                              "matching activations")

    def gradients(self, cell: nn.Module) -> None:
        x = self.randn(self.B, self.T, self.I).requires_grad_()
        out, _ = unroll(cell, x, self.lengths)
        named = [(n, p) for n, p in cell.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad((out * self.randn(self.B, self.T, self.H)).sum(), [x] + [p for _, p in named],
                                    allow_unused=True)
        for (name, _), grad in zip([("the input frames", x)] + named, grads):
            if grad is None or not bool(torch.isfinite(grad).all()) or not bool(grad.ne(0).any()):
                what = "no" if grad is None else "a non-finite" if not bool(torch.isfinite(grad).all()) else "an all-zero"
                self.fail("gradients", f"{name!r} gets {what} gradient from a loss on the unrolled outputs",
                          "use it in forward without detaching it (or make it a buffer if it is not trained)")

    def model_file(self, cell: nn.Module) -> None:
        tensors = cell.state_dict()
        for key, value in tensors.items():
            if not value.is_floating_point():
                self.fail("model file", f"state_dict entry {key!r} is {value.dtype}",
                          "audioseq.load reads floating-point tensors only: keep it a Python attribute or a float buffer")
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "cell.safetensors")
            try:
                write_tensors(path, tensors, {"cell": self.who})
                tensors, _ = read_tensors(path)
            except ModelFileError as exc:
                self.fail("model file", str(exc), "keep parameters and buffers finite dense tensors")
        fresh = self.make().eval()
        try:
            fresh.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
        except RuntimeError as exc:
            self.fail("model file round trip", f"a fresh cell with the same parameters refuses the saved weights: {exc}",
                      "make state_dict keys and shapes depend only on (input_size, hidden_size, params)")
        x = self.randn(self.B, self.T, self.I)
        diff = max_diff(unroll(cell, x, self.lengths)[0], unroll(fresh, x, self.lengths)[0])
        if diff > 0:
            self.fail("model file round trip", f"outputs after saving and loading differ by {diff:.3g}",
                      "keep everything the output depends on in parameters or registered buffers")
