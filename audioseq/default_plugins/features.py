"""Built-in features on torchaudio transforms: ``logmel``, ``mfcc`` and ``spectrogram``
(and ``speech-embedding-lite``, a small network over log-mel frames: ``embedding.py``).

Windows and hops are given in milliseconds so a feature means the same at any sample rate.
Frames are taken without centre padding: frame t covers samples [t·hop, t·hop + n_fft), so a
frame only ever sees real samples and a clip's frames do not depend on padding added after it.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import Tensor, nn

from ..hookspecs import hookimpl

_LOG_FLOOR = 1e-10
_DELTA_WIDTH = 2  # frames each side in a time derivative (a 5-frame regression)
MAX_N_FFT = 1 << 16  # 1.4 s at 48 kHz: far beyond any analysis window these features use
MAX_FILTERBANK_VALUES = 1 << 24  # (n_fft // 2 + 1) x n_mels: 64 MB of float32


def squared_stft(spec: torchaudio.transforms.Spectrogram, waveform: Tensor) -> Tensor:
    """Squared real and imaginary parts of the STFT with ``spec``'s settings, frames first:
    (B, N) → (B, T, n_fft // 2 + 1, 2). Summed over the last axis they are the power spectrum.

    Squaring the two parts where they lie (torch's STFT is frames-major in memory), in place,
    and folding the sum into the next matrix product is a good deal cheaper on CPU than the
    transform's own ``power=2``, which takes each complex magnitude and then squares it.
    Autograd handles the in-place steps: a waveform's gradient is the same as without them.
    """
    stft = torchaudio.functional.spectrogram(
        waveform, spec.pad, spec.window, spec.n_fft, spec.hop_length, spec.win_length, power=None,
        normalized=spec.normalized, center=spec.center, pad_mode=spec.pad_mode, onesided=spec.onesided,
    )
    return torch.view_as_real(stft.transpose(-1, -2)).square_()  # in place: the STFT is ours


class _Framed(nn.Module):
    """Frame arithmetic shared by the STFT-based features."""

    dim: int

    def __init__(self, sample_rate: int, win_ms: float, hop_ms: float, deltas: int = 0) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {deltas}")
        if not (win_ms > 0 and hop_ms > 0):
            raise ValueError(f"win_ms and hop_ms must be above 0 ms, got {win_ms} and {hop_ms}")
        self.sample_rate = sample_rate
        self.win_length = max(2, round(sample_rate * win_ms / 1000))
        self.hop_length = max(1, round(sample_rate * hop_ms / 1000))
        self.n_fft = 1 << math.ceil(math.log2(self.win_length))
        if self.n_fft > MAX_N_FFT:  # its window and filterbank are allocated when the feature is built
            raise ValueError(f"win_ms {win_ms} at {sample_rate} Hz needs an FFT of {self.n_fft} points; "
                             f"at most {MAX_N_FFT} are supported")
        self.deltas = deltas
        self.context = deltas * _DELTA_WIDTH  # frames given up at each end of a clip

    @property
    def min_samples(self) -> int:
        """Samples needed for one frame."""
        return self.n_fft + 2 * self.context * self.hop_length

    def _no_frames(self, waveform: Tensor) -> Tensor | None:
        """(B, 0, dim) for clips too short for one frame, where the STFT would fail."""
        if waveform.shape[-1] >= self.min_samples:
            return None
        return waveform.new_zeros(*waveform.shape[:-1], 0, self.dim)

    def num_frames(self, num_samples: Tensor) -> Tensor:
        """Exact frame count for clips of ``num_samples`` (LongTensor, any shape)."""
        n = torch.as_tensor(num_samples, dtype=torch.long)
        frames = torch.where(n >= self.n_fft, (n - self.n_fft) // self.hop_length + 1, torch.zeros_like(n))
        return (frames - 2 * self.context).clamp(min=0)

    def frame_seconds(self, num_frames: int) -> Tensor:
        """Centre of each of a clip's ``num_frames`` frames (T,), in seconds from its start: frame t
        is the STFT's frame t + context (those before it are dropped with the deltas), which covers
        samples [(t + context)·hop, (t + context)·hop + n_fft)."""
        t = torch.arange(num_frames, dtype=torch.float64) + self.context
        return ((t * self.hop_length + self.n_fft / 2) / self.sample_rate).float()

    def _with_deltas(self, frames: Tensor) -> Tensor:
        """Append the time derivatives: (B, T, F) → (B, T − 2·context, F·(1 + deltas)).

        Each derivative is the regression over ±2 frames (torchaudio's ``compute_deltas``).
        Frames within ``context`` of either end are dropped, so that every frame kept is
        computed from the clip's own frames only: at a clip's end the padding of a batch is
        never read, and a clip gives the same frames alone or batched.
        """
        if not self.deltas:
            return frames
        parts = [frames.transpose(1, 2)]  # (B, F, T): compute_deltas works along the last axis
        for _ in range(self.deltas):
            parts.append(torchaudio.functional.compute_deltas(parts[-1], win_length=2 * _DELTA_WIDTH + 1))
        c = self.context
        return torch.cat(parts, dim=1)[..., c : frames.shape[1] - c].transpose(1, 2)


class LogMel(_Framed):
    """Log mel-filterbank energies, (B, N) → (B, T, n_mels·(1 + deltas)).

    Args:
        n_mels: number of mel bands.
        win_ms: analysis window length in milliseconds.
        hop_ms: hop between frames in milliseconds.
        f_min: lowest band edge in Hz.
        f_max: highest band edge in Hz (None: half the sample rate).
        deltas: time derivatives appended (0, 1: Δ, or 2: Δ and ΔΔ), each over ±2 frames;
            a clip then gives 4·deltas fewer frames (its ends are dropped, not padded).
    """

    def __init__(
        self,
        sample_rate: int,
        n_mels: int = 40,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 20.0,
        f_max: float | None = None,
        deltas: int = 0,
    ) -> None:
        super().__init__(sample_rate, win_ms, hop_ms, deltas)
        if not 0 < n_mels or (self.n_fft // 2 + 1) * n_mels > MAX_FILTERBANK_VALUES:
            raise ValueError(f"n_mels must be above 0 and the filterbank at most {MAX_FILTERBANK_VALUES} values, "
                             f"got n_mels {n_mels} with an FFT of {self.n_fft} points")
        self.dim = n_mels * (1 + deltas)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=self.n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            center=False,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )
        # The filterbank with each row twice, for the squared real and imaginary parts: (2F, n_mels).
        self.register_buffer("part_fb", self.mel.mel_scale.fb.repeat_interleave(2, dim=0), persistent=False)

    def log_mel(self, waveform: Tensor) -> Tensor:
        """(B, N) → (B, T, n_mels), without derivatives."""
        parts = squared_stft(self.mel.spectrogram, waveform)  # (B, T, F, 2)
        return torch.log_((parts.flatten(-2) @ self.part_fb).clamp_(min=_LOG_FLOOR))

    def forward(self, waveform: Tensor) -> Tensor:
        empty = self._no_frames(waveform)
        if empty is not None:
            return empty
        return self._with_deltas(self.log_mel(waveform))


class MFCC(LogMel):
    """Mel-frequency cepstral coefficients (DCT-II of the log mel energies), (B, N) → (B, T, n_mfcc·(1 + deltas)).

    Args:
        n_mfcc: number of coefficients kept.
        n_mels: number of mel bands before the DCT.
        win_ms: analysis window length in milliseconds.
        hop_ms: hop between frames in milliseconds.
        f_min: lowest band edge in Hz.
        f_max: highest band edge in Hz (None: half the sample rate).
        deltas: time derivatives appended (0, 1: Δ, or 2: Δ and ΔΔ), each over ±2 frames;
            a clip then gives 4·deltas fewer frames (its ends are dropped, not padded).
    """

    def __init__(
        self,
        sample_rate: int,
        n_mfcc: int = 13,
        n_mels: int = 40,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 100.0,
        f_max: float | None = None,
        deltas: int = 0,
    ) -> None:
        super().__init__(sample_rate, n_mels, win_ms, hop_ms, f_min, f_max, deltas)
        if not 0 < n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must be in 1..n_mels ({n_mels}), got {n_mfcc}")
        self.dim = n_mfcc * (1 + deltas)
        self.register_buffer("dct", torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho"))

    def forward(self, waveform: Tensor) -> Tensor:
        empty = self._no_frames(waveform)
        if empty is not None:
            return empty
        return self._with_deltas(self.log_mel(waveform) @ self.dct)


class LogSpectrogram(_Framed):
    """Log power spectrogram, (B, N) → (B, T, (n_fft // 2 + 1)·(1 + deltas)).

    Args:
        win_ms: analysis window length in milliseconds (the FFT size is the next power of two).
        hop_ms: hop between frames in milliseconds.
        deltas: time derivatives appended (0, 1: Δ, or 2: Δ and ΔΔ), each over ±2 frames;
            a clip then gives 4·deltas fewer frames (its ends are dropped, not padded).
    """

    def __init__(self, sample_rate: int, win_ms: float = 25.0, hop_ms: float = 10.0, deltas: int = 0) -> None:
        super().__init__(sample_rate, win_ms, hop_ms, deltas)
        self.dim = (self.n_fft // 2 + 1) * (1 + deltas)
        self.spec = torchaudio.transforms.Spectrogram(
            n_fft=self.n_fft, win_length=self.win_length, hop_length=self.hop_length, center=False, power=2.0
        )

    def forward(self, waveform: Tensor) -> Tensor:
        empty = self._no_frames(waveform)
        if empty is not None:
            return empty
        parts = squared_stft(self.spec, waveform)  # (B, T, F, 2)
        power = parts[..., 0] + parts[..., 1]  # an add, not .sum(-1): reducing a size-2 axis is slow
        return self._with_deltas(torch.log_(power.clamp_(min=_LOG_FLOOR)))


@hookimpl
def register_features(register) -> None:
    register("logmel", LogMel)
    register("mfcc", MFCC)
    register("spectrogram", LogSpectrogram)
    from .embedding import SpeechEmbeddingLite  # its weights are read when a model builds it

    register("speech-embedding-lite", SpeechEmbeddingLite)
