"""How the librosa features cut a clip into frames, and the rules that keep librosa working.

Two framings, each with an exact frame count:

- :class:`STFTFraming`: frame t covers samples ``[t·hop, t·hop + n_fft)`` (librosa's
  ``center=False``), so ``T = (N - n_fft) // hop + 1`` for ``N ≥ n_fft`` and a frame only ever
  sees real samples.
- :class:`ConstantQFraming`: librosa's constant-Q transform centres frame t on sample
  ``t·hop``, so ``T = 1 + N // hop``, librosa's own count. (With few bins at a high rate,
  librosa first downsamples the whole clip, and rounding the downsampled length can add one
  frame centred past the end; it is dropped.) The clip is followed by zeros as long as the longest
  filter before the transform; without them, the resampling between octaves cuts the clip's
  end differently alone and in a zero-padded batch, and the last frames differ by up to
  1.5 in log magnitude.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings

import librosa
import numpy as np
from torch import Tensor


def _samples(sample_rate: int, ms: float, what: str) -> int:
    if not ms > 0:
        raise ValueError(f"{what} must be a positive number of milliseconds, got {ms}")
    return max(1, round(sample_rate * ms / 1000))


def _check_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, numbers.Integral) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


@dataclasses.dataclass(frozen=True)
class STFTFraming:
    """Uncentred short-time Fourier frames.

    Attributes:
        sample_rate: Hz. win_length: window in samples. hop_length: hop in samples.
        n_fft: FFT size, the next power of two ≥ ``win_length``; the window is centred in it.
    """

    sample_rate: int
    win_length: int
    hop_length: int
    n_fft: int

    @property
    def min_samples(self) -> int:
        """Samples needed for one frame: one FFT size."""
        return self.n_fft

    def count(self, num_samples: Tensor) -> Tensor:
        """Frames of clips with ``num_samples ≥ min_samples`` (LongTensor, any shape)."""
        return (num_samples - self.n_fft) // self.hop_length + 1

    def magnitude(self, clip: np.ndarray) -> np.ndarray:
        """(N,) → |STFT| (n_fft // 2 + 1, T), Hann window."""
        spec = librosa.stft(
            clip, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length, center=False
        )
        return np.abs(spec)


def stft_framing(sample_rate: int, win_ms: float, hop_ms: float) -> STFTFraming:
    """Windows and hops in milliseconds → samples, so a feature means the same at any rate."""
    sample_rate = _check_rate(sample_rate)
    win_length = max(2, _samples(sample_rate, win_ms, "win_ms"))
    hop_length = _samples(sample_rate, hop_ms, "hop_ms")
    return STFTFraming(sample_rate, win_length, hop_length, 1 << math.ceil(math.log2(win_length)))


@dataclasses.dataclass(frozen=True)
class ConstantQFraming:
    """Centred constant-Q frames (librosa's ``cqt`` with tuning fixed at A440).

    Attributes:
        sample_rate: Hz. fmin: centre of the lowest bin in Hz.
        bins_per_octave: bins per octave. n_bins: bins in all.
        hop_length: hop in samples, a multiple of ``2**(n_octaves - 1)``.
        tail: zeros appended before the transform (the longest filter, in samples).
    """

    sample_rate: int
    fmin: float
    bins_per_octave: int
    n_bins: int
    hop_length: int
    tail: int

    @property
    def n_octaves(self) -> int:
        return math.ceil(self.n_bins / self.bins_per_octave)

    @property
    def min_samples(self) -> int:
        """One hop: a shorter clip holds too little to analyse."""
        return self.hop_length

    def count(self, num_samples: Tensor) -> Tensor:
        """Frames of clips with ``num_samples ≥ min_samples`` (LongTensor, any shape)."""
        return num_samples // self.hop_length + 1

    def magnitude(self, clip: np.ndarray) -> np.ndarray:
        """(N,) → |CQT| (n_bins, T') with T' ≥ ``count(N)``; frames past ``count(N)`` cover the tail."""
        padded = np.concatenate([clip, np.zeros(self.tail, dtype=clip.dtype)])
        with warnings.catch_warnings():
            # The low octaves' FFTs are longer than a short clip; librosa then pads with zeros,
            # which is the intended behaviour, and warns once per octave.
            warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large", category=UserWarning)
            spec = librosa.cqt(
                padded,
                sr=self.sample_rate,
                hop_length=self.hop_length,
                fmin=self.fmin,
                n_bins=self.n_bins,
                bins_per_octave=self.bins_per_octave,
                tuning=0.0,  # estimating the tuning per clip would shift the bins from clip to clip
            )
        return np.abs(spec)


def _filter_cutoff(sample_rate: int, fmin: float, bins_per_octave: int, n_bins: int) -> tuple[float, float]:
    """librosa's own test: the highest frequency the filters reach, and the longest filter (samples)."""
    freqs = librosa.cqt_frequencies(n_bins, fmin=fmin, bins_per_octave=bins_per_octave)
    lengths, cutoff = librosa.filters.wavelet_lengths(freqs=freqs, sr=sample_rate)
    return float(cutoff), float(np.max(lengths))


def max_cqt_bins(sample_rate: int, fmin: float, bins_per_octave: int) -> int:
    """The most bins from ``fmin`` whose filters all stay below the Nyquist frequency (0: none)."""
    nyquist = sample_rate / 2
    if not 0 < fmin < nyquist:
        return 0

    def fits(n: int) -> bool:
        return _filter_cutoff(sample_rate, fmin, bins_per_octave, n)[0] <= nyquist

    if not fits(2):
        return 0
    lo, hi = 2, 2 + bins_per_octave * math.ceil(math.log2(nyquist / fmin) + 1)
    while lo < hi:  # the cutoff grows with the bin count: the largest n that fits is in [lo, hi]
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def constant_q_framing(
    sample_rate: int, hop_ms: float, fmin: float, bins_per_octave: int, n_bins: int | None
) -> ConstantQFraming:
    """Choose the constant-Q layout, or raise ``ValueError`` for settings librosa cannot honour.

    Rules:
        - ``n_bins=None`` takes every bin whose filter stays below the Nyquist frequency
          (at fmin 65 Hz, 12 bins per octave: 71 bins at 8 kHz, 83 at 16 kHz).
        - The hop is rounded to the nearest multiple of ``2**(n_octaves - 1)`` samples (ties
          upward, at least one), so every octave can be computed at half the rate of the one
          above (librosa 0.10 requires it): 10 ms becomes 96 samples (12 ms) at 8 kHz and
          192 samples (12 ms) at 16 kHz with the defaults.
    """
    sample_rate = _check_rate(sample_rate)
    if bins_per_octave < 1:
        raise ValueError(f"bins_per_octave must be ≥ 1, got {bins_per_octave}")
    nyquist = sample_rate / 2
    if not 0 < fmin < nyquist:
        raise ValueError(f"fmin must lie between 0 and the Nyquist frequency {nyquist:g} Hz, got {fmin:g}")
    most = max_cqt_bins(sample_rate, fmin, bins_per_octave)
    if most < 2:
        raise ValueError(
            f"fmin {fmin:g} Hz is too close to the Nyquist frequency {nyquist:g} Hz for a constant-Q "
            f"transform at {bins_per_octave} bins per octave; lower fmin"
        )
    if n_bins is None:
        n_bins = most
    elif not 2 <= n_bins <= most:
        raise ValueError(
            f"n_bins must be in 2..{most} at {sample_rate} Hz (fmin {fmin:g} Hz, {bins_per_octave} bins "
            f"per octave): more bins would reach above the Nyquist frequency {nyquist:g} Hz; got {n_bins}"
        )
    multiple = 2 ** (math.ceil(n_bins / bins_per_octave) - 1)
    wanted = _samples(sample_rate, hop_ms, "hop_ms")
    hop_length = max(1, math.floor(wanted / multiple + 0.5)) * multiple
    _, longest = _filter_cutoff(sample_rate, fmin, bins_per_octave, n_bins)
    return ConstantQFraming(sample_rate, float(fmin), bins_per_octave, n_bins, hop_length, math.ceil(longest))
