"""The independently recurrent neural network."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioseq.errors import ParameterError

from .base import StepCell


class IndRNNCell(StepCell):
    """Independently recurrent neural network (Li, Li, Cook, Zhu & Gao, 2018).

    Li et al., "Independently recurrent neural network (IndRNN): building a longer and deeper
    RNN" (CVPR 2018), give each unit one recurrent weight on its own past value instead of a
    full recurrent matrix: h_t = ReLU(W x_t + u ⊙ h_{t−1} + b). Units talk to each other only
    through the next layer, and bounding |u| keeps gradients from exploding or vanishing over
    long sequences, so ReLU can be used and layers stacked deep. The bound is applied in every
    step (|u| is clamped to ``max_recurrent_weight``), so it holds for loaded weights too.

    Args:
        max_recurrent_weight: largest allowed |u|; 1.0 keeps memory without growth, and
            2 ** (1 / T) lets a unit hold its value over T frames.
    """

    def __init__(self, input_size: int, hidden_size: int, max_recurrent_weight: float = 1.0) -> None:
        super().__init__(input_size, hidden_size)
        if not (math.isfinite(max_recurrent_weight) and max_recurrent_weight > 0):
            raise ParameterError(
                f"cell 'indrnn': max_recurrent_weight must be a positive number, got {max_recurrent_weight}"
            )
        self.max_recurrent_weight = max_recurrent_weight
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.recurrent_weight = nn.Parameter(torch.empty(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        # ReLU halves the signal: He initialisation keeps the input drive's scale.
        nn.init.kaiming_uniform_(self.weight_ih, nonlinearity="relu")
        with torch.no_grad():
            self.recurrent_weight.uniform_(0.0, min(1.0, max_recurrent_weight))

    def forward_gates(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        u = self.recurrent_weight.clamp(-self.max_recurrent_weight, self.max_recurrent_weight)
        h = torch.relu(F.linear(x_t, self.weight_ih, self.bias) + u * state)
        return h, h, {}
