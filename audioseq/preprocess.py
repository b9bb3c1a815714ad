"""Waveform preprocessing stored in the model and applied identically everywhere.

Real recordings differ from clean training clips: silence or room noise around the word, a
different gain. Trimming the quiet ends and normalising the level before the features make the
model see the same kind of input in training, evaluation, the API, the CLI and the app.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np
import torch
import torchaudio
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from .errors import ParameterError


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Settings of the waveform preprocessing.

    Attributes:
        highpass_hz: remove rumble and hum below this frequency (Hz) first; 0 disables.
        trim: drop quiet frames at both ends of the clip.
        trim_db: a frame is quiet when its level is more than this many dB below the loudest
            frame.
        floor_db: when set, a frame is also quiet when it is less than this many dB above the
            clip's noise floor (its 10th-percentile frame level). Only for clips known to hold
            long stretches of background: on tightly cut clips that floor is speech.
        margin_ms: kept on each side of the detected sound, in milliseconds.
        normalize: scale the clip so its peak (``peak``) or its RMS over the kept part
            (``rms``) reaches ``target_db`` dBFS; ``none`` keeps the gain.
        target_db: level after normalisation, in dBFS.
        silence_dbfs: a clip whose loudest sample stays below this level (dBFS) is refused as
            silent (``SilentAudioError``) rather than given a label; None accepts any level.
    """

    highpass_hz: float = 0.0
    trim: bool = True
    trim_db: float = 40.0
    floor_db: float | None = None
    margin_ms: float = 60.0
    normalize: Literal["peak", "rms", "none"] = "rms"
    target_db: float = -20.0
    silence_dbfs: float | None = -60.0

    def __post_init__(self) -> None:
        """Refuse settings of the wrong type or out of range here, not one clip at a time later
        (a model file's settings come from a stranger)."""

        def number(name: str, low: float, high: float, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ParameterError(f"preprocess.{name} must be a number from {low:g} to {high:g}"
                                 f"{' or None' if optional else ''}, got {value!r}")

        number("highpass_hz", 0.0, 192_000.0)
        number("trim_db", 0.0, 200.0)
        number("floor_db", 0.0, 200.0, optional=True)
        number("margin_ms", 0.0, 10_000.0)
        number("target_db", -120.0, 0.0)
        number("silence_dbfs", -200.0, 0.0, optional=True)
        if not isinstance(self.trim, bool):
            raise ParameterError(f"preprocess.trim must be true or false, got {self.trim!r}")
        if self.normalize not in ("peak", "rms", "none"):
            raise ParameterError(f"preprocess.normalize must be peak, rms or none, got {self.normalize!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocess":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ParameterError(f"unknown preprocessing settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def __call__(self, waveform: Tensor, sample_rate: int) -> Tensor:
        """(N,) → (N',) with N' ≤ N."""
        if self.highpass_hz > 0:
            waveform = highpass(waveform, sample_rate, self.highpass_hz)
        if self.trim:
            waveform = trim_quiet_ends(waveform, sample_rate, self.trim_db, self.floor_db, self.margin_ms)
        if self.normalize != "none":
            waveform = normalise_level(waveform, self.normalize, self.target_db)
        return waveform


def highpass(waveform: Tensor, sample_rate: int, cutoff_hz: float, q: float = 0.707) -> Tensor:
    """torchaudio's high-pass biquad (its coefficients, Q 0.707) without its clamp to ±1: a clip
    louder than full scale (float input, or one raised by augmentation) keeps its shape, and the
    result scales with the input."""
    w0 = 2 * math.pi * cutoff_hz / sample_rate
    alpha = math.sin(w0) / 2 / q
    cos = math.cos(w0)
    b = torch.tensor([(1 + cos) / 2, -1 - cos, (1 + cos) / 2], dtype=waveform.dtype)
    a = torch.tensor([1 + alpha, -2 * cos, 1 - alpha], dtype=waveform.dtype)
    return torchaudio.functional.lfilter(waveform, a, b, clamp=False)


def frame_levels_db(samples: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Level of each (frame, hop) window in dB: (N,) float32 → (T,), T = 1 + (N − frame) // hop
    (one window over the whole clip when N < frame)."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if samples.size < frame:
        power = np.array([np.dot(samples, samples) / max(samples.size, 1)])
    else:
        step = samples.strides[0]
        count = 1 + (samples.size - frame) // hop
        windows = np.lib.stride_tricks.as_strided(samples, (count, frame), (hop * step, step), writeable=False)
        power = np.einsum("tf,tf->t", windows, windows) / frame
    return 10 * np.log10(np.maximum(power, 1e-12))


def trim_quiet_ends(
    waveform: Tensor, sample_rate: int, trim_db: float, floor_db: float | None, margin_ms: float
) -> Tensor:
    """Keep the span from the first to the last loud frame, plus a margin. (N,) → (N',), a view."""
    frame = max(1, int(sample_rate * 0.02))
    hop = max(1, frame // 2)
    levels = frame_levels_db(waveform.detach().cpu().numpy(), frame, hop)
    if levels.size < 3:
        return waveform
    peak = float(levels.max())
    threshold = peak - trim_db
    if floor_db is not None:
        threshold = max(threshold, float(np.quantile(levels, 0.1)) + floor_db)
    if threshold >= peak:  # a flat signal (silence or steady noise): nothing stands out
        return waveform
    loud = np.flatnonzero(levels >= threshold)
    margin = int(sample_rate * margin_ms / 1000)
    start = max(0, int(loud[0]) * hop - margin)
    end = min(waveform.numel(), int(loud[-1]) * hop + frame + margin)
    return waveform[start:end]


def normalise_level(waveform: Tensor, mode: str, target_db: float) -> Tensor:
    """Scale to ``target_db`` dBFS by peak or RMS; silence is returned unchanged."""
    samples = waveform.detach().cpu().numpy()
    if mode == "peak":
        level = float(np.abs(samples).max()) if samples.size else 0.0
    elif mode == "rms":
        level = float(np.sqrt(np.dot(samples, samples) / samples.size)) if samples.size else 0.0
    else:
        raise ValueError(f"normalize must be peak, rms or none, not {mode!r}")
    if level <= 1e-8:
        return waveform
    gain = (10 ** (target_db / 20)) / level
    return (waveform * gain).clamp(-1.0, 1.0) if mode == "peak" else waveform * gain


def pad_batch(waveforms: list[Tensor]) -> tuple[Tensor, Tensor]:
    """List of (N_i,) → zero-padded (B, N_max) and lengths (B,)."""
    lengths = torch.tensor([w.numel() for w in waveforms], dtype=torch.long)
    if not waveforms:
        return torch.zeros(0, 0), lengths
    return pad_sequence(waveforms, batch_first=True), lengths
