"""More recurrent cells for audioseq: ``peephole-lstm``, ``layernorm-lstm``, ``mgu``, ``indrnn``, ``ligru``.

Each cell is one time step with its gates exposed; the engine unrolls it over padded batches
with length masks, stacks it and runs it in both directions.
"""

from __future__ import annotations

import audioseq
from audioseq.hookspecs import Register

from .gated import LiGRUCell, MGUCell
from .indrnn import IndRNNCell
from .lstm import LayerNormLSTMCell, PeepholeLSTMCell

__all__ = ["IndRNNCell", "LayerNormLSTMCell", "LiGRUCell", "MGUCell", "PeepholeLSTMCell", "register_cells"]


@audioseq.hookimpl
def register_cells(register: Register) -> None:
    register("peephole-lstm", PeepholeLSTMCell)
    register("layernorm-lstm", LayerNormLSTMCell)
    register("mgu", MGUCell)
    register("indrnn", IndRNNCell)
    register("ligru", LiGRUCell)
