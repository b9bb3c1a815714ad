"""Single-gate recurrent units: the minimal gated unit and the light GRU."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioseq.errors import ParameterError

from .base import StepCell


class MGUCell(StepCell):
    """Minimal gated unit (Zhou, Wu, Zhang & Zhou, 2016).

    Zhou et al., "Minimal gated unit for recurrent neural networks" (International Journal of
    Automation and Computing, 2016), merge the GRU's reset and update gates into one forget
    gate, with a quarter fewer weights than a GRU and similar accuracy:
    f_t = σ(W_f x_t + U_f h_{t−1} + b_f), h̃_t = tanh(W_h x_t + U_h (f_t ⊙ h_{t−1}) + b_h),
    h_t = (1 − f_t) ⊙ h_{t−1} + f_t ⊙ h̃_t.

    Args:
        forget_bias: initial bias of the forget gate. f weighs the new candidate, so a negative
            bias keeps more of the past at the start and a positive one forgets faster.
    """

    gate_names = ("forget", "candidate")
    gate_meanings = {
        "forget": "$f_t$: how much of the state is replaced by the candidate, "
                  "$h_t = (1 - f_t) \\odot h_{t-1} + f_t \\odot \\tilde h_t$ (1: replaced). The paper's name; it "
                  "also gates what of $h_{t-1}$ the candidate sees, as a GRU's reset gate does",
        "candidate": "$\\tilde h_t$ (tanh, −1…1): the new state proposed from $x_t$ and $f_t \\odot h_{t-1}$",
    }

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0) -> None:
        super().__init__(input_size, hidden_size)
        h = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(2 * h, input_size))  # rows: forget, candidate
        self.weight_hh = nn.Parameter(torch.empty(2 * h, h))
        self.bias = nn.Parameter(torch.zeros(2 * h))
        self.uniform_(self.weight_ih, self.weight_hh)
        with torch.no_grad():
            self.bias[:h].fill_(forget_bias)

    def forward_gates(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        x_f, x_h = F.linear(x_t, self.weight_ih, self.bias).chunk(2, dim=-1)
        u_f, u_h = self.weight_hh.chunk(2, dim=0)
        f = torch.sigmoid(x_f + F.linear(state, u_f))
        candidate = torch.tanh(x_h + F.linear(f * state, u_h))
        h = (1 - f) * state + f * candidate
        return h, h, {"forget": f, "candidate": candidate}


class LiGRUCell(StepCell):
    """Light gated recurrent unit (Ravanelli, Brakel, Omologo & Bengio, 2018).

    Ravanelli et al., "Light gated recurrent units for speech recognition" (IEEE Transactions
    on Emerging Topics in Computational Intelligence, 2018), drop the GRU's reset gate and use
    a ReLU candidate: z_t = σ(N(W_z x_t) + U_z h_{t−1}), h̃_t = ReLU(N(W_h x_t) + U_h h_{t−1}),
    h_t = z_t ⊙ h_{t−1} + (1 − z_t) ⊙ h̃_t. The paper's N is batch normalisation; here it is
    layer normalisation (or none), because batch statistics would make a clip's result depend
    on the other clips of its batch and, in the engine's masked unroll, on the padded frames of
    clips that have already ended, and a clip streamed alone would see other statistics than
    in training. Layer normalisation uses one frame's own units only: it keeps the ReLU
    candidate's input in range, alone or batched, in training and at inference.
    Recurrent weights start orthogonal, as in the paper, so the ReLU recurrence neither
    explodes nor dies early.

    Args:
        normalization: ``layer`` normalises each gate's input projection per frame;
            ``none`` adds a bias instead.
    """

    gate_names = ("update", "candidate")
    gate_meanings = {
        "update": "$z_t$: how much of $h_{t-1}$ is kept instead of the candidate, "
                  "$h_t = z_t \\odot h_{t-1} + (1 - z_t) \\odot \\tilde h_t$ (1: keep)",
        "candidate": "$\\tilde h_t$ (ReLU, 0 and above): the new state proposed from $x_t$ and $h_{t-1}$; "
                     "there is no reset gate",
    }

    def __init__(
        self, input_size: int, hidden_size: int, normalization: Literal["layer", "none"] = "layer"
    ) -> None:
        super().__init__(input_size, hidden_size)
        h = hidden_size
        self.normalization = normalization
        layer = normalization == "layer"
        if layer and hidden_size < 2:  # a layer norm over one unit is constant: the cell would ignore its input
            raise ParameterError(f"cell 'ligru': layer normalisation needs hidden_size ≥ 2, got {hidden_size}")
        self.proj_ih = nn.Linear(input_size, 2 * h, bias=not layer)  # rows: update, candidate
        self.norm_z: nn.Module = nn.LayerNorm(h) if layer else nn.Identity()
        self.norm_h: nn.Module = nn.LayerNorm(h) if layer else nn.Identity()
        self.weight_hh = nn.Parameter(torch.empty(2 * h, h))
        with torch.no_grad():
            for block in self.weight_hh.chunk(2, dim=0):
                nn.init.orthogonal_(block)

    def forward_gates(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        x_z, x_h = self.proj_ih(x_t).chunk(2, dim=-1)
        r_z, r_h = F.linear(state, self.weight_hh).chunk(2, dim=-1)
        z = torch.sigmoid(self.norm_z(x_z) + r_z)
        candidate = torch.relu(self.norm_h(x_h) + r_h)
        h = z * state + (1 - z) * candidate
        return h, h, {"update": z, "candidate": candidate}
