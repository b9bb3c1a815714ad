"""Unrolling any cell over time: stacked layers, both directions, per-sequence length masks.

A cell is one time step (``forward(x_t, state) -> (h_t, new_state)``). This module unrolls it
over a padded batch so that padding never reaches the state: at a step past a sequence's
length the state is carried unchanged and the output is zero. A cell that provides
``forward_sequence`` (the built-ins do, with torch's fused kernels) is run whole instead;
both paths compute the same function on the same parameters.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from .errors import PluginError
from .plugins import build, origin

State = Any  # a tensor or a tuple of tensors, as the cell defines


def make_cell(name: str, input_size: int, hidden_size: int, params: dict[str, Any] | None = None) -> nn.Module:
    """Build a registered cell with validated parameters."""
    return build("cell", name, input_size, hidden_size, params=params)


def _map_state(fn: Callable[..., Tensor], *states: State) -> State:
    if isinstance(states[0], tuple):
        return tuple(_map_state(fn, *parts) for parts in zip(*states))
    return fn(*states)


def select_state(mask: Tensor, new: State, old: State) -> State:
    """Per-sequence choice: ``new`` where mask (B,) is true, else ``old``."""
    return _map_state(lambda n, o: torch.where(mask.view(-1, *([1] * (n.dim() - 1))), n, o), new, old)


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence within its length; padding stays in place. x: (B, T, ...)."""
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
    rev = lengths.to(x.device).unsqueeze(1) - 1 - t  # (B, T)
    idx = torch.where(rev >= 0, rev, t)
    idx = idx.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


def _shapes(state: State) -> Any:
    if isinstance(state, tuple):
        return tuple(_shapes(part) for part in state)
    return tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__


def _check_step(cell: nn.Module, h: Any, new_state: State, state: State, batch: int) -> None:
    """A cell's first step returned h_t (B, H) and a state shaped like the one it was given."""
    problem = None
    if not isinstance(h, Tensor) or h.dim() != 2 or h.shape[0] != batch:
        problem = f"h_t of shape {_shapes(h)} for a batch of {batch}"
    elif _shapes(new_state) != _shapes(state):
        problem = f"a new state shaped {_shapes(new_state)} from a state shaped {_shapes(state)}"
    if problem is not None:
        raise PluginError(f"{origin(cell)}: forward returned {problem}; a cell's forward(x_t (B, I), state) "
                          "returns (h_t (B, H), new_state) with new_state shaped like initial_state's "
                          "(audioseq.testing.check_cell checks every rule of the contract)")


def unroll(cell: nn.Module, x: Tensor, lengths: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """Run a cell step by step.

    Args:
        x: (B, T, I) padded frames. lengths: (B,) valid frames per sequence.
    Returns:
        outputs (B, T, H), zero past each length; the state after each last valid frame.
    """
    B, T = x.shape[:2]
    if state is None:
        state = cell.initial_state(B, x.device, x.dtype)
    lengths = lengths.to(x.device)
    outputs = []
    for t in range(T):
        h, new_state = cell(x[:, t], state)
        if t == 0:
            _check_step(cell, h, new_state, state, B)
        mask = t < lengths
        state = select_state(mask, new_state, state)
        outputs.append(torch.where(mask.unsqueeze(1), h, torch.zeros_like(h)))  # inf·0 would be NaN
    if not outputs:
        return x.new_zeros(B, 0, getattr(cell, "hidden_size", 0)), state
    return torch.stack(outputs, dim=1), state


def run_cell(cell: nn.Module, x: Tensor, lengths: Tensor, fast: bool = True) -> Tensor:
    """Whole sequences through one cell, using its fast path when it has one. (B, T, I) → (B, T, H)."""
    state = cell.initial_state(x.shape[0], x.device, x.dtype)
    if fast and hasattr(cell, "forward_sequence"):
        return cell.forward_sequence(x, lengths, state, need_state=False)[0]
    return unroll(cell, x, lengths, state)[0]


def step_gates(cell: nn.Module, x_t: Tensor, state: State) -> tuple[Tensor, State, dict[str, Tensor]]:
    """One step that also gives the gates the cell exposes: x_t (B, I) → h_t (B, H), new state,
    and name → (B, H) for each of its ``gate_names`` (plus ``cell``, an LSTM-like cell state)."""
    if not hasattr(cell, "forward_gates"):
        h, new_state = cell(x_t, state)
        return h, new_state, {}
    h, new_state, gates = cell.forward_gates(x_t, state)
    shown = (*getattr(cell, "gate_names", ()), "cell")
    return h, new_state, {name: value for name, value in gates.items() if name in shown}


class RecurrentEncoder(nn.Module):
    """Stacked, optionally bidirectional recurrence over any registered cell.

    Output (B, T, D·H) where D is 2 when bidirectional: layer ℓ+1 reads layer ℓ's outputs,
    with dropout between layers during training.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        cell_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.cell_name = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * self.num_directions
            self.layers.append(
                nn.ModuleList(
                    make_cell(cell, in_size, hidden_size, cell_params) for _ in range(self.num_directions)
                )
            )
        self.use_fast_path = True

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x: (B, T, I), lengths: (B,) → outputs (B, T, D·H), zero past each length."""
        for i, directions in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            outs = [run_cell(directions[0], x, lengths, self.use_fast_path)]
            if self.bidirectional:
                back = run_cell(directions[1], reverse_padded(x, lengths), lengths, self.use_fast_path)
                outs.append(reverse_padded(back, lengths))
            for cell, out in zip(directions, outs):
                if out.shape != (*x.shape[:2], self.hidden_size):
                    raise PluginError(f"{origin(cell)}: gave outputs of shape {tuple(out.shape)} for "
                                      f"{tuple(x.shape)} inputs; expected (B, T, H) = "
                                      f"{(*x.shape[:2], self.hidden_size)} (hidden_size {self.hidden_size})")
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        return x

    def initial_states(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> list[State]:
        """One state per layer, for streaming a unidirectional encoder frame by frame."""
        return [layer[0].initial_state(batch_size, device, dtype) for layer in self.layers]

    def step(self, x_t: Tensor, states: list[State]) -> tuple[Tensor, list[State], list[dict[str, Tensor]]]:
        """One frame through every layer (unidirectional only): x_t (B, I) → top output (B, H).

        Also returns each layer's gate activations, for cells that expose them.
        """
        if self.bidirectional:
            raise ValueError("a bidirectional encoder sees the whole clip; it cannot be streamed")
        new_states, gates = [], []
        for i, layer in enumerate(self.layers):
            x_t, state, g = step_gates(layer[0], x_t, states[i])
            new_states.append(state)
            gates.append(g)
        return x_t, new_states, gates
