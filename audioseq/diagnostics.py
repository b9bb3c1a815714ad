"""The vanishing gradient, measured: how much the end of a sequence depends on each earlier step.

A many-to-one recurrent network that answers from its last state alone (``last`` pooling, one
direction) learns about frame t only through ∂h_T/∂x_t, a product of T − t step Jacobians.
When those Jacobians shrink vectors (a plain tanh RNN with ordinary weights), the product
vanishes geometrically and early frames stop receiving any learning signal; the LSTM's additive
cell update and the GRU's update gate give the gradient a path along which it decays far
slower. (Pooling over every frame's state, or a second direction, gives frames a shorter path
to the answer besides.)
:func:`gradient_through_time` returns that profile, one number per time step.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor, nn

from .model import SequenceClassifier
from .recurrent import make_cell, run_cell

if TYPE_CHECKING:
    from .classifier import Classifier


def gradient_through_time(
    model_or_cell: "str | nn.Module | Classifier",
    seq_len: int = 100,
    input_size: int = 8,
    hidden_size: int = 32,
    batch_size: int = 16,
    seed: int = 0,
    inputs: Tensor | None = None,
    **cell_params: Any,
) -> Tensor:
    """Norm of the gradient of the final output with respect to the input at each step.

    For a cell (a registered name or a cell module) the output is a fixed random unit
    projection of the last step's hidden state h_T; for a :class:`SequenceClassifier` or
    :class:`~audioseq.classifier.Classifier` it is the logit of the class the network
    predicts, with the encoder reading ``inputs`` directly (frames as they come out of
    ``model.normalise``), so only the recurrence, not the utterance mean, links the frames.

    A cell name is built with :func:`~audioseq.recurrent.make_cell` and its own plain
    default initialisation — torch's uniform(±1/√H) for every weight and bias, plus the
    cell's registered defaults (the LSTM's forget-gate bias of 1.0) — after seeding torch
    with ``seed``. Everything runs on a float64 copy: the plain RNN's gradient after a few
    hundred steps lies below float32's smallest number and would otherwise read as exactly 0.
    The module passed in is not modified.

    Args:
        model_or_cell: a cell name, a cell module, a SequenceClassifier or a Classifier.
        seq_len: T, number of time steps of the random inputs.
        input_size: I, features per step of a named cell's random inputs.
        hidden_size: H of a named cell.
        batch_size: B, random sequences averaged over.
        seed: seeds the initialisation of a named cell, the random inputs and the projection.
        inputs: (T, I) or (B, T, I) inputs to use instead of standard-normal random ones.
        **cell_params: parameters of a named cell (e.g. ``nonlinearity="relu"``).
    Returns:
        (T,) float64: for each step t, ‖∂output/∂x_t‖₂, averaged over the batch.
    """
    if cell_params and not isinstance(model_or_cell, str):
        raise ValueError("cell parameters apply only when the cell is given by name")
    gen = torch.Generator().manual_seed(seed)
    if isinstance(model_or_cell, str):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module: nn.Module = make_cell(model_or_cell, input_size, hidden_size, cell_params)
    else:
        module = getattr(model_or_cell, "model", model_or_cell)
        module = copy.deepcopy(module)
    module = module.double().eval()
    device = next(module.parameters()).device
    is_model = isinstance(module, SequenceClassifier)
    if inputs is None:
        features = module.config.input_size if is_model else getattr(module, "input_size", input_size)
        inputs = torch.randn(batch_size, seq_len, features, generator=gen, dtype=torch.float64)
    x = (inputs.unsqueeze(0) if inputs.dim() == 2 else inputs).to(device, torch.float64)
    x = x.detach().requires_grad_(True)
    lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
    # cuDNN refuses the backward pass of its RNN kernels in eval mode; torch's own
    # kernels compute the same gradients, and eval mode keeps dropout out of the picture.
    with torch.backends.cudnn.flags(enabled=False), torch.enable_grad():
        if is_model:
            logits = module.classify(x, lengths)  # (B, C)
            output = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        else:
            h = run_cell(module, x, lengths)  # (B, T, H)
            projection = torch.randn(h.shape[-1], generator=gen, dtype=torch.float64).to(device)
            output = (h[:, -1] @ (projection / projection.norm())).sum()
        (grad,) = torch.autograd.grad(output, x)  # (B, T, I)
    return grad.norm(dim=-1).mean(0).cpu()


def compare_cells(names: Sequence[str] = ("rnn", "lstm", "gru"), **kwargs: Any) -> dict[str, Tensor]:
    """:func:`gradient_through_time` for several named cells on the same inputs → name → (T,)."""
    return {name: gradient_through_time(name, **kwargs) for name in names}
