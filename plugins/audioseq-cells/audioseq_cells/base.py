"""What every cell of this package shares: the state, ``forward`` from ``forward_gates``, initialisation."""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor, nn

State = Tensor | tuple[Tensor, Tensor]


class StepCell(nn.Module, abc.ABC):
    """One time step of a recurrent cell whose state is h (B, H); the engine unrolls it with masks."""

    gate_names: tuple[str, ...] = ()
    gate_meanings: dict[str, str] = {}  # gate name -> what it does (Markdown), shown beside its activations

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        """Zeros (B, H): every clip starts from silence."""
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def forward(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: x_t (B, I), state → h_t (B, H), new state."""
        h, new_state, _ = self.forward_gates(x_t, state)
        return h, new_state

    @abc.abstractmethod
    def forward_gates(self, x_t: Tensor, state: State) -> tuple[Tensor, State, dict[str, Tensor]]:
        """One step that also returns the gate activations, each (B, H), by name."""

    def uniform_(self, *tensors: Tensor) -> None:
        """torch's recurrent initialisation, U(−1/√H, 1/√H), which keeps early activations unsaturated."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for tensor in tensors:
                tensor.uniform_(-bound, bound)


class PairStateCell(StepCell):
    """A cell whose state is the pair (h, c), each (B, H), as in an LSTM."""

    def initial_state(
        self, batch_size: int, device: torch.device | str, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()
