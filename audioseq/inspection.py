"""Looking inside the network for one clip: the many-to-many view, hidden states and gates.

The classifier is many-to-one: it answers once, from the whole clip. The same network read
out after every frame is its many-to-many view — what it would answer had the clip ended
there. Stepping each layer's cells one frame at a time with ``forward_gates`` exposes what
the fused kernels compute but never show: the hidden state and every gate, frame by frame.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .audio import source_name
from .errors import AudioError, UnreadableAudioError
from .model import SequenceClassifier
from .pipeline import Item
from .recurrent import RecurrentEncoder, run_cell, step_gates

if TYPE_CHECKING:
    from .classifier import Classifier

# Frames per chunk when a bidirectional model re-reads every prefix of a clip: bounds the
# batch (prefixes × frames) so a long clip costs time, not memory.
_PREFIX_FRAMES = 1 << 16


@dataclasses.dataclass
class Inspection:
    """What the network saw and did for one clip. T frames, C classes, L layers,
    D directions (2 when bidirectional), H hidden units per direction."""

    source: str  # the clip's path, or "<waveform>"
    labels: list[str]
    sample_rate: int  # Hz of ``waveform``
    waveform: Tensor  # (N,) the preprocessed clip the network saw
    frames: Tensor  # (T, F) features, before the model's normalisation
    inputs: Tensor  # (T, F) x_t as the first recurrent layer reads it: ``frames`` after the model's normalisation
    frame_times: Tensor  # (T,) seconds from the start of ``waveform`` to each frame's centre
    probabilities: Tensor  # (C,) the many-to-one answer, as ``Classifier.predict`` gives it
    frame_probabilities: Tensor  # (T, C) row t: the answer from frames 0..t (normalised with the whole clip's)
    hidden_norm: Tensor  # (L, D, T) L2 norm of each layer and direction's hidden state
    gates: dict[str, Tensor]  # gate name -> (L, D, T, H) activations; {} for cells without gates
    gate_meanings: dict[str, str]  # gate name -> what it does, as the cell explains it (Markdown); may be partial
    cell_state_norm: Tensor | None  # (L, D, T) L2 norm of the LSTM cell state c_t; None otherwise
    attention: Tensor | None  # (T,) attention pooling weights (sum to 1); None for other poolings

    @property
    def label(self) -> str:
        """The predicted class."""
        return self.labels[int(self.probabilities.argmax())]

    @property
    def confidence(self) -> float:
        """Probability of the predicted class."""
        return float(self.probabilities.max())


@dataclasses.dataclass
class LayerTrace:
    """One encoder layer stepped frame by frame over one clip (D directions, T frames, H units)."""

    hidden: Tensor  # (D, T, H) hidden state after each frame; the backward direction re-aligned
    gates: dict[str, Tensor]  # name -> (D, T, H): the cell's ``gate_names``, and ``cell`` if it gives one
    outputs: Tensor  # (T, D·H) the same layer through the encoder's fast path: next layer's input


def _step_cell(cell: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """One cell over one sequence, a frame at a time: x (T, I) → hidden (T, H), gates name → (T, H)."""
    state = cell.initial_state(1, x.device, x.dtype)
    hidden: list[Tensor] = []
    gates: dict[str, list[Tensor]] = {}
    for x_t in x.unsqueeze(1):  # (1, I) per frame
        h, state, g = step_gates(cell, x_t, state)
        hidden.append(h[0])
        for name, value in g.items():
            gates.setdefault(name, []).append(value[0])
    return torch.stack(hidden), {name: torch.stack(v) for name, v in gates.items()}


@torch.no_grad()
def trace_encoder(encoder: RecurrentEncoder, x: Tensor) -> list[LayerTrace]:
    """Step every layer and direction of ``encoder`` over one clip's normalised frames x (T, F).

    Each layer is stepped over its real input — the previous layer's fast-path outputs — so
    its gates are exactly those behind :meth:`RecurrentEncoder.forward`. The backward
    direction reads the reversed clip and is flipped back, so index t always means frame t.
    """
    lengths = torch.tensor([x.shape[0]])
    traces = []
    for directions in encoder.layers:
        # One clip without padding: reversing within its length is a plain flip.
        inputs = [x, x.flip(0)][: len(directions)]
        stepped = [_step_cell(cell, seq) for cell, seq in zip(directions, inputs)]
        if len(stepped) == 2:
            h_back, g_back = stepped[1]
            stepped[1] = (h_back.flip(0), {k: v.flip(0) for k, v in g_back.items()})
        fast = [
            run_cell(cell, seq.unsqueeze(0), lengths, encoder.use_fast_path)[0]
            for cell, seq in zip(directions, inputs)
        ]
        if len(fast) == 2:
            fast[1] = fast[1].flip(0)
        traces.append(
            LayerTrace(
                hidden=torch.stack([h for h, _ in stepped]),
                gates={name: torch.stack([g[name] for _, g in stepped]) for name in stepped[0][1]},
                outputs=torch.cat(fast, dim=-1),
            )
        )
        x = traces[-1].outputs
    return traces


def _prefix_pooled(model: SequenceClassifier, outputs: Tensor) -> Tensor:
    """Pooled vector of every prefix of a unidirectional encoder's outputs (T, H) → (T, H).

    A unidirectional state at frame t has only seen frames ≤ t, so prefix t's encoder outputs
    are rows 0..t of the whole clip's: only the pooling has to be redone per prefix.
    """
    mode = model.pool.mode
    if mode == "last":
        return outputs
    steps = torch.arange(1, outputs.shape[0] + 1, device=outputs.device, dtype=outputs.dtype)
    if mode == "mean":
        return outputs.cumsum(0) / steps.unsqueeze(1)
    scores = model.pool.score(outputs).squeeze(-1)  # (T,)
    # Σ_{j≤t} e^{s_j} o_j / Σ_{j≤t} e^{s_j}, done in log space so no prefix over- or
    # underflows: the outputs are split by sign, since only positive values have a log.
    log_norm = torch.logcumsumexp(scores, 0).unsqueeze(1)  # (T, 1)
    pos = torch.logcumsumexp(scores.unsqueeze(1) + outputs.clamp(min=0).log(), 0)
    neg = torch.logcumsumexp(scores.unsqueeze(1) + (-outputs).clamp(min=0).log(), 0)
    return (pos - log_norm).exp() - (neg - log_norm).exp()


def _prefix_logits(model: SequenceClassifier, normalised: Tensor) -> Tensor:
    """Logits of every prefix of one clip's normalised frames (T, F) → (T, C)."""
    T = normalised.shape[0]
    if not model.encoder.bidirectional:
        outputs = model.encoder(normalised.unsqueeze(0), torch.tensor([T]))[0]
        return model.head(_prefix_pooled(model, outputs))
    # The backward direction of a prefix starts at its own last frame, so its states differ
    # from the whole clip's: each prefix has to be run in full. Padding is masked out.
    chunk = max(1, _PREFIX_FRAMES // T)
    logits = []
    for start in range(0, T, chunk):
        lengths = torch.arange(start + 1, min(start + chunk, T) + 1)
        batch = normalised[: int(lengths[-1])].expand(len(lengths), -1, -1)
        logits.append(model.classify(batch, lengths))
    return torch.cat(logits)


def _frame_times(feature: nn.Module, num_frames: int, num_samples: int, sample_rate: int) -> Tensor:
    """Centre of each frame in seconds (T,)."""
    if callable(seconds := getattr(feature, "frame_seconds", None)):  # the feature knows its framing
        return torch.as_tensor(seconds(num_frames), dtype=torch.float32)
    hop, n_fft = getattr(feature, "hop_length", None), getattr(feature, "n_fft", None)
    t = torch.arange(num_frames, dtype=torch.float64)
    if hop is not None and n_fft is not None:
        # Frame t covers samples [t·hop, t·hop + n_fft) (no centre padding).
        return ((t * hop + n_fft / 2) / sample_rate).float()
    # A feature that does not publish its framing: frames taken as evenly spread.
    return ((t + 0.5) * num_samples / max(num_frames, 1) / sample_rate).float()


def _load(classifier: Classifier, audio: Any) -> tuple[str, Tensor, Tensor]:
    """Decode and featurise one clip exactly as ``predict`` does → name, waveform (N,), frames (T, F)."""
    name = source_name(audio)
    try:
        wave = classifier.frontend.prepare(audio, name)
    except AudioError:
        raise
    except Exception as exc:  # a decoder bug must surface as the typed error predict reports
        raise UnreadableAudioError(name, f"{type(exc).__name__}: {exc}") from exc
    frontend = classifier.frontend
    if frontend.in_workers:
        item = Item(0, name, frames=frontend.clip_frames(wave))
    else:
        item = Item(0, name, waveform=wave)
    frames, lengths = frontend.frames_of([item])
    return name, wave, frames[0, : int(lengths[0])]


@torch.no_grad()
def inspect_clip(classifier: Classifier, audio: Any) -> Inspection:
    """Run one clip through ``classifier`` and record what happens inside.

    Args:
        audio: a path, or a ``(waveform, sample_rate)`` pair.
    Raises:
        AudioError: the clip cannot be classified, the same typed error ``predict`` reports.

    ``frame_probabilities`` row t is the network's answer on the clip's normalised frames
    0..t. The frames are normalised once, with the whole clip's utterance mean, so the rows
    show the recurrence reading the clip; a clip really cut at t would have its own mean.
    """
    name, wave, frames = _load(classifier, audio)
    model = classifier.model.eval()
    device = classifier.device
    frames = frames.to(device)
    lengths = torch.tensor([frames.shape[0]], device=device)
    probabilities = classifier.probabilities(frames.unsqueeze(0), lengths)[0]
    if not torch.isfinite(probabilities).all():
        raise classifier.non_finite_output(name)
    normalised = model.normalise(frames.unsqueeze(0), lengths)[0]  # (T, F)
    frame_probabilities = torch.softmax(_prefix_logits(model, normalised).float(), dim=-1)
    traces = trace_encoder(model.encoder, normalised)
    gates = {gate: torch.stack([tr.gates[gate] for tr in traces]) for gate in traces[0].gates}
    cell_state = gates.pop("cell", None)
    attention = None
    if model.pool.mode == "attention":
        attention = model.pool.weights(traces[-1].outputs.unsqueeze(0), lengths)[0]
    return Inspection(
        source=name,
        labels=classifier.labels,
        sample_rate=classifier.sample_rate,
        waveform=wave.cpu(),
        frames=frames.cpu(),
        inputs=normalised.cpu(),
        frame_times=_frame_times(
            classifier.frontend.feature, frames.shape[0], wave.numel(), classifier.sample_rate
        ),
        probabilities=probabilities.cpu(),
        frame_probabilities=frame_probabilities.cpu(),
        hidden_norm=torch.stack([tr.hidden.norm(dim=-1) for tr in traces]).cpu(),
        gates={gate: g.cpu() for gate, g in gates.items()},
        gate_meanings={gate: text for gate, text in getattr(model.encoder.layers[0][0], "gate_meanings", {}).items()
                       if gate in gates},
        cell_state_norm=cell_state.norm(dim=-1).cpu() if cell_state is not None else None,
        attention=attention.cpu() if attention is not None else None,
    )
