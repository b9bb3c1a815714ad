"""LSTM variants: with peephole connections, and with layer normalisation.

Gate rows are stacked in torch's order (input, forget, candidate, output), so weights read
like those of ``torch.nn.LSTM``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioseq.default_plugins.cells import LSTM_GATE_MEANINGS
from audioseq.errors import ParameterError

from .base import PairStateCell

LSTM_GATES = ("forget", "input", "candidate", "output")


class PeepholeLSTMCell(PairStateCell):
    """LSTM with peephole connections (Gers & Schmidhuber, 2000).

    Gers & Schmidhuber, "Recurrent nets that time and count" (IJCNN 2000), let the gates look
    at the cell state itself, not only at the squashed output, so the cell can learn precise
    timing: i_t = σ(W_i x_t + U_i h_{t−1} + p_i ⊙ c_{t−1} + b_i), f_t likewise with p_f,
    g_t = tanh(W_g x_t + U_g h_{t−1} + b_g), c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t,
    o_t = σ(W_o x_t + U_o h_{t−1} + p_o ⊙ c_t + b_o) (the output gate peeks at the new cell),
    h_t = o_t ⊙ tanh(c_t). The peepholes p are diagonal: one weight per unit. The state is (h, c).

    Args:
        forget_bias: initial bias of the forget gate; 1.0 lets memory flow at the start.
    """

    gate_names = LSTM_GATES
    gate_meanings = LSTM_GATE_MEANINGS

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0) -> None:
        super().__init__(input_size, hidden_size)
        h = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * h, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * h, h))
        self.bias = nn.Parameter(torch.zeros(4 * h))
        self.peephole = nn.Parameter(torch.empty(3, h))  # rows: input, forget, output
        self.uniform_(self.weight_ih, self.weight_hh, self.peephole)
        with torch.no_grad():
            self.bias[h : 2 * h].fill_(forget_bias)

    def forward_gates(
        self, x_t: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor], dict[str, Tensor]]:
        h_prev, c_prev = state
        z = F.linear(x_t, self.weight_ih, self.bias) + F.linear(h_prev, self.weight_hh)  # (B, 4H)
        z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
        p_i, p_f, p_o = self.peephole
        i = torch.sigmoid(z_i + p_i * c_prev)
        f = torch.sigmoid(z_f + p_f * c_prev)
        g = torch.tanh(z_g)
        c = f * c_prev + i * g
        o = torch.sigmoid(z_o + p_o * c)
        h = o * torch.tanh(c)
        return h, (h, c), {"forget": f, "input": i, "candidate": g, "output": o, "cell": c}


class LayerNormLSTMCell(PairStateCell):
    """LSTM with layer normalisation (Ba, Kiros & Hinton, 2016).

    Ba et al., "Layer Normalization" (arXiv:1607.06450), normalise the summed inputs of each
    gate over the hidden units of one example at one step, which needs no batch statistics and
    steadies the recurrence: z_t = LN(W x_t) + LN(U h_{t−1}) + b, split into input, forget,
    candidate and output pre-activations; c_t = σ(f) ⊙ c_{t−1} + σ(i) ⊙ tanh(g);
    h_t = σ(o) ⊙ tanh(LN(c_t)). Each LN has its own gain; the biases are b and the cell LN's.
    A frame is normalised by itself alone, so results do not depend on the rest of the batch.

    Args:
        forget_bias: initial bias of the forget gate; 1.0 lets memory flow at the start.
        eps: added to the variance inside each layer normalisation, for stability.
    """

    gate_names = LSTM_GATES
    gate_meanings = LSTM_GATE_MEANINGS

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__(input_size, hidden_size)
        if hidden_size < 2:  # a layer norm over one unit is constant: the cell would ignore its input
            raise ParameterError(f"cell 'layernorm-lstm': hidden_size must be at least 2, got {hidden_size}")
        h = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * h, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * h, h))
        self.bias = nn.Parameter(torch.zeros(4 * h))
        # The two projections get gains only: a shift there would duplicate ``bias``.
        self.norm_ih = nn.LayerNorm(4 * h, eps=eps, bias=False)
        self.norm_hh = nn.LayerNorm(4 * h, eps=eps, bias=False)
        self.norm_c = nn.LayerNorm(h, eps=eps)
        self.uniform_(self.weight_ih, self.weight_hh)
        with torch.no_grad():
            self.bias[h : 2 * h].fill_(forget_bias)

    def forward_gates(
        self, x_t: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor], dict[str, Tensor]]:
        h_prev, c_prev = state
        z = self.norm_ih(F.linear(x_t, self.weight_ih)) + self.norm_hh(F.linear(h_prev, self.weight_hh)) + self.bias
        z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(z_i), torch.sigmoid(z_f), torch.tanh(z_g), torch.sigmoid(z_o)
        c = f * c_prev + i * g
        h = o * torch.tanh(self.norm_c(c))
        return h, (h, c), {"forget": f, "input": i, "candidate": g, "output": o, "cell": c}
