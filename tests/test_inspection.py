"""Inspection and gradient diagnostics: identities that must hold for any weights.

Tiny untrained networks suffice: the many-to-many view must agree with re-running the model
on each prefix, the stepped cells with the fused kernels, whatever the weights are.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from audioseq import inspection
from audioseq.classifier import Classifier
from audioseq.diagnostics import compare_cells, gradient_through_time
from audioseq.errors import AudioError, AudioTooShortError, NonFiniteAudioError, SilentAudioError, UnreadableAudioError
from audioseq.inspection import inspect_clip, trace_encoder
from audioseq.model import NetworkConfig
from audioseq.spec import ModelSpec

RATE = 8000
LABELS = ["zero", "one", "two"]
N_MELS = 8
FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"


def _classifier(
    cell: str, bidirectional: bool, pooling: str, utterance_norm: bool = True, num_layers: int = 2
) -> Classifier:
    torch.manual_seed(0)
    network = NetworkConfig(
        input_size=N_MELS,
        num_classes=len(LABELS),
        cell=cell,
        hidden_size=6,
        num_layers=num_layers,
        bidirectional=bidirectional,
        pooling=pooling,
        dropout=0.0,
        utterance_norm=utterance_norm,
    )
    spec = ModelSpec(LABELS, RATE, network, feature="logmel", feature_params={"n_mels": N_MELS})
    clf = Classifier(spec)
    # Random features get a scale that keeps the tiny net off saturation, so gates vary.
    clf.model.norm.mean.fill_(-8.0)
    clf.model.norm.std.fill_(3.0)
    return clf


def _clip(seconds: float = 0.4) -> tuple[np.ndarray, int]:
    """A chirp with a slow swell: its frames differ, and no end is quiet enough to be trimmed."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = (0.3 + 0.15 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * (300 + 1500 * t) * t)
    return wave.astype(np.float32), RATE


CASES = [
    (cell, bi, pooling)
    for cell in ("rnn", "lstm", "gru")
    for bi in (False, True)
    for pooling in ("last", "mean", "attention")
]


@pytest.mark.parametrize(("cell", "bidirectional", "pooling"), CASES)
def test_inspection_shapes_and_identities(
    cell: str, bidirectional: bool, pooling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small prefix chunks, so the bidirectional path crosses chunk boundaries.
    monkeypatch.setattr(inspection, "_PREFIX_FRAMES", 100)
    clf = _classifier(cell, bidirectional, pooling)
    ins = clf.inspect(_clip())
    T, C, L, D, H = ins.frames.shape[0], len(LABELS), 2, 1 + bidirectional, 6
    assert T > 20 and ins.frames.shape == (T, N_MELS)
    assert ins.waveform.dim() == 1 and ins.sample_rate == RATE and ins.labels == LABELS
    assert ins.frame_probabilities.shape == (T, C)
    assert ins.hidden_norm.shape == (L, D, T)

    predicted = clf.predict([_clip()])[0]
    assert predicted.ok
    assert torch.allclose(ins.probabilities, torch.tensor(list(predicted.probabilities.values())), atol=1e-5)
    assert ins.label == predicted.label and ins.confidence == pytest.approx(predicted.confidence, abs=1e-5)
    assert torch.allclose(ins.frame_probabilities[-1], ins.probabilities, atol=1e-5)

    # Row t is the model's own answer on frames 0..t (normalised with the clip's statistics).
    model = clf.model
    normalised = model.normalise(ins.frames.unsqueeze(0), torch.tensor([T]))
    assert torch.equal(ins.inputs, normalised[0])  # what the recurrence reads
    with torch.no_grad():
        for t in range(T):
            expected = torch.softmax(model.classify(normalised[:, : t + 1], torch.tensor([t + 1]))[0], -1)
            assert torch.allclose(ins.frame_probabilities[t], expected, atol=1e-5), t
    # The answer really moves as frames arrive, so the check above compares different rows.
    assert (ins.frame_probabilities[0] - ins.frame_probabilities[-1]).abs().max() > 1e-4

    if pooling == "attention":
        assert ins.attention is not None and ins.attention.shape == (T,)
        assert float(ins.attention.sum()) == pytest.approx(1.0, abs=1e-5) and bool((ins.attention >= 0).all())
    else:
        assert ins.attention is None


@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
def test_frame_probabilities_equal_the_model_on_truncated_raw_frames(pooling: str) -> None:
    # Without the utterance mean, "frames 0..t" needs no qualification: the raw prefix itself.
    clf = _classifier("gru", False, pooling, utterance_norm=False)
    ins = clf.inspect(_clip())
    for t in (0, 5, ins.frames.shape[0] - 1):
        probs = clf.probabilities(ins.frames[None, : t + 1], torch.tensor([t + 1]))[0]
        assert torch.allclose(ins.frame_probabilities[t], probs, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_stepped_cells_match_the_fast_path(cell: str, bidirectional: bool) -> None:
    clf = _classifier(cell, bidirectional, "mean", num_layers=3)
    ins = clf.inspect(_clip(0.3))
    T = ins.frames.shape[0]
    encoder = clf.model.encoder
    normalised = clf.model.normalise(ins.frames.unsqueeze(0), torch.tensor([T]))
    traces = trace_encoder(encoder, normalised[0])
    with torch.no_grad():
        assert torch.allclose(traces[-1].outputs, encoder(normalised, torch.tensor([T]))[0], atol=1e-6)
    for layer, trace in enumerate(traces):
        stepped = trace.hidden.permute(1, 0, 2).reshape(T, -1)  # (T, D·H), directions side by side
        assert torch.allclose(stepped, trace.outputs, atol=1e-5), layer
        assert torch.allclose(ins.hidden_norm[layer], trace.hidden.norm(dim=-1), atol=1e-6)
    assert float(ins.hidden_norm.min()) > 0


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gates_are_named_and_in_range(cell: str, bidirectional: bool) -> None:
    clf = _classifier(cell, bidirectional, "last")
    ins = clf.inspect(_clip(0.3))
    T, D = ins.frames.shape[0], 1 + bidirectional
    assert set(ins.gates) == set(clf.model.encoder.layers[0][0].gate_names) == set(ins.gate_meanings)
    for name, g in ins.gates.items():
        assert g.shape == (2, D, T, 6)
        low = -1.0 if name == "candidate" else 0.0  # tanh vs sigmoid
        assert float(g.min()) >= low and float(g.max()) <= 1.0, name
        assert float(g.max() - g.min()) > 0.1, f"{name} never moves: the range check is vacuous"
    if cell == "lstm":
        assert ins.cell_state_norm is not None and ins.cell_state_norm.shape == (2, D, T)
        # h = o ⊙ tanh(c) with o ∈ (0, 1): no hidden unit can exceed its cell state.
        assert bool((ins.hidden_norm <= ins.cell_state_norm + 1e-6).all())
    else:
        assert ins.cell_state_norm is None


def test_frame_times_are_frame_centres() -> None:
    clf = _classifier("gru", False, "last")
    ins = clf.inspect(_clip())
    feature = clf.frontend.feature
    steps = ins.frame_times.diff()
    assert torch.allclose(steps, torch.full_like(steps, feature.hop_length / RATE))
    assert float(ins.frame_times[0]) == pytest.approx(feature.n_fft / 2 / RATE)
    assert float(ins.frame_times[-1]) < ins.waveform.numel() / RATE


@pytest.mark.parametrize("deltas", [0, 2])
@pytest.mark.parametrize("name", ["logmel", "mfcc", "spectrogram"])
def test_built_in_frame_times_are_the_centres_of_the_samples_each_frame_hears(name: str, deltas: int) -> None:
    """The samples a frame's own coefficients depend on (its gradient) are centred on its stated
    time, also when the time derivatives drop the first frames."""
    from audioseq.plugins import build

    feature = build("feature", name, RATE, params={"deltas": deltas})
    clip = torch.from_numpy(_clip(0.5)[0]).unsqueeze(0).requires_grad_(True)
    frames = feature(clip)[0]
    times = inspection._frame_times(feature, frames.shape[0], clip.shape[1], RATE)
    base = frames.shape[1] // (1 + deltas)  # the frame's own coefficients, before its derivatives
    for t in (0, frames.shape[0] // 2, frames.shape[0] - 1):
        (grad,) = torch.autograd.grad(frames[t, :base].sum(), clip, retain_graph=True)
        heard = grad[0].nonzero().squeeze(1)
        midpoint = (float(heard[0]) + float(heard[-1]) + 1) / 2 / RATE
        assert midpoint == pytest.approx(float(times[t]), abs=1.5 / RATE)


def test_a_feature_that_states_its_frame_times_is_believed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``frame_seconds`` (optional in the feature contract) wins over hop and window, and over
    the even spread assumed for a feature that states neither."""
    clf = _classifier("gru", False, "last")
    feature = clf.frontend.feature
    stated = lambda n: torch.arange(n, dtype=torch.float32) * 0.05 - 0.2  # noqa: E731
    monkeypatch.setattr(feature, "frame_seconds", stated, raising=False)
    ins = clf.inspect(_clip())
    assert torch.equal(ins.frame_times, stated(ins.frames.shape[0]))
    spread = inspection._frame_times(torch.nn.Identity(), 4, 8000, RATE)  # states neither
    assert torch.allclose(spread, torch.tensor([0.125, 0.375, 0.625, 0.875]))


def test_bad_clips_raise_typed_errors(tmp_path: Path) -> None:
    clf = _classifier("gru", False, "last")
    with pytest.raises(UnreadableAudioError) as missing:
        clf.inspect(str(tmp_path / "missing.wav"))
    assert "missing.wav" in str(missing.value)
    with pytest.raises(AudioTooShortError):
        clf.inspect(((0.1 * np.sin(np.arange(10))).astype(np.float32), RATE))  # a sound, but 10 samples
    with pytest.raises(SilentAudioError):
        clf.inspect((np.zeros(RATE, dtype=np.float32), RATE))
    wave, rate = _clip()
    wave[100] = np.nan
    with pytest.raises(NonFiniteAudioError):
        clf.inspect((wave, rate))
    assert issubclass(NonFiniteAudioError, AudioError)


@pytest.mark.fsdd
def test_inspects_a_real_recording() -> None:
    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not found at {FSDD}")
    clf = _classifier("lstm", True, "attention")
    path = str(sorted(FSDD.glob("3_*.wav"))[0])
    ins = inspect_clip(clf, path)
    assert ins.source == path
    assert torch.allclose(ins.frame_probabilities[-1], ins.probabilities, atol=1e-5)
    assert set(ins.gates) == {"forget", "input", "candidate", "output"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_rnn_gradient_vanishes_where_gated_cells_keep_it(seed: int) -> None:
    grads = compare_cells(seq_len=150, seed=seed)
    assert all(g.shape == (150,) and bool(torch.isfinite(g).all()) for g in grads.values())
    rnn, lstm, gru = grads["rnn"], grads["lstm"], grads["gru"]
    # The first step's gradient: gated cells keep orders of magnitude more of it.
    assert float(lstm[0]) >= 100 * float(rnn[0])
    assert float(gru[0]) >= 100 * float(rnn[0])
    # ... while at the last step all three are of the same order: the gap is built through time.
    assert max(float(rnn[-1]), float(lstm[-1])) / min(float(rnn[-1]), float(lstm[-1])) < 100
    # The plain RNN's profile decays geometrically: each 30 steps back lose a similar factor.
    logs = rnn.log10()
    assert float(logs[-1] - logs[0]) > 10 and float(logs[30] - logs[0]) > 1


def test_gradient_through_time_on_modules_leaves_them_untouched() -> None:
    clf = _classifier("lstm", False, "attention")
    clf.model.train()
    grads = gradient_through_time(clf, seq_len=40, batch_size=2)
    assert grads.shape == (40,) and bool((grads > 0).all())
    assert clf.model.training and next(clf.model.parameters()).dtype == torch.float32
    assert all(p.grad is None for p in clf.model.parameters())

    frames = torch.randn(25, N_MELS)
    assert gradient_through_time(clf.model, inputs=frames).shape == (25,)
    cell = clf.model.encoder.layers[0][0]
    by_module = gradient_through_time(cell, seq_len=30, input_size=N_MELS)
    assert by_module.shape == (30,) and math.isfinite(float(by_module.sum()))
    with pytest.raises(ValueError):
        gradient_through_time(cell, nonlinearity="relu")


def test_gradient_through_time_accepts_cell_parameters() -> None:
    tanh = gradient_through_time("rnn", seq_len=60, seed=0)
    relu = gradient_through_time("rnn", seq_len=60, seed=0, nonlinearity="relu")
    assert not torch.allclose(tanh, relu)
