"""Features torchaudio lacks, computed with librosa: ``cqt``, ``chroma``, ``spectral-contrast``, ``mfcc-deltas``.

librosa works on CPU numpy arrays one clip at a time, so every feature here sets
``in_workers = True``: the pipeline computes a clip's frames inside its DataLoader workers.
``forward`` also takes a zero-padded batch (B, N), as training gives it, and gives each row the
frames the clip gets alone, so a model sees the same inputs in training and in prediction. (The
one exception: spectral contrast floors levels 80 dB below the loudest frame librosa sees,
and in a batch that can be a frame reaching into the padding.)
"""

from __future__ import annotations

import abc
from typing import Literal

import librosa
import numpy as np
import torch
from audioseq.errors import PluginError
from torch import Tensor, nn

from .framing import ConstantQFraming, STFTFraming, constant_q_framing, stft_framing

_MAGNITUDE_FLOOR = 1e-5  # −100 dB: the CQT's log stays finite on silence


class LibrosaFeature(nn.Module, abc.ABC):
    """What the librosa features share: exact frame counts and a per-clip ``forward``.

    Subclasses set ``framing`` and ``dim`` and implement ``_frames(clip (N,)) -> (dim, T')``
    with ``T' ≥ num_frames(N)``; frames past ``num_frames(N)`` are dropped.
    """

    in_workers = True  # librosa runs on CPU numpy per clip: let the DataLoader workers do it
    dim: int

    def __init__(self, framing: STFTFraming | ConstantQFraming) -> None:
        super().__init__()
        self.sample_rate = framing.sample_rate
        self.framing = framing

    @property
    def hop_length(self) -> int:
        """Samples between frames."""
        return self.framing.hop_length

    @property
    def min_samples(self) -> int:
        """Samples needed for one frame."""
        return self.framing.min_samples

    def num_frames(self, num_samples: Tensor) -> Tensor:
        """Exact frame count for clips of ``num_samples`` (LongTensor, any shape); 0 below ``min_samples``."""
        n = torch.as_tensor(num_samples, dtype=torch.long)
        least = self.framing.min_samples
        return torch.where(n >= least, self.framing.count(n.clamp(min=least)), torch.zeros_like(n))

    def forward(self, waveform: Tensor) -> Tensor:
        """Waveforms (B, N) at ``sample_rate`` Hz → frames (B, T, dim) float32, ``T = num_frames(N)``.

        A clip with a NaN or infinite sample gets NaN frames, as the torch features give, so the
        caller reports that clip instead of losing the batch.
        """
        if waveform.dim() != 2:
            raise ValueError(f"{type(self).__name__} expects waveforms (B, N), got shape {tuple(waveform.shape)}")
        num_samples = waveform.shape[1]
        count = int(self.num_frames(torch.tensor(num_samples)))
        out = np.full((waveform.shape[0], count, self.dim), np.nan, dtype=np.float32)
        clips = waveform.detach().to("cpu", torch.float32).numpy()
        for row, clip in enumerate(clips):
            if count == 0 or not np.isfinite(clip).all():
                continue
            frames = self._frames(np.ascontiguousarray(clip))  # (dim, T')
            if frames.shape[-1] < count:
                raise PluginError(
                    f"{type(self).__name__}: librosa {librosa.__version__} gave {frames.shape[-1]} frames for "
                    f"{num_samples} samples where {count} were expected; this librosa version is not supported"
                )
            out[row] = frames[:, :count].T
        return torch.from_numpy(out).to(waveform.device)

    @abc.abstractmethod
    def _frames(self, clip: np.ndarray) -> np.ndarray:
        """One clip (N,) float32 → frames (dim, T') with ``T' ≥ num_frames(N)``."""

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, dim={self.dim}, hop_length={self.hop_length}"


class CQT(LibrosaFeature):
    """Log-magnitude constant-Q transform, (B, N) → (B, T, n_bins), bins spaced geometrically from fmin.

    Frames are centred on samples ``t·hop`` (``T = 1 + N // hop``); values are natural logs of
    the magnitude, floored at 1e-5. See ``audioseq_librosa.framing.constant_q_framing`` for how
    ``n_bins`` and the hop are chosen.

    Args:
        hop_ms: hop between frames in milliseconds, rounded to a multiple of 2**(n_octaves-1) samples.
        fmin: centre of the lowest bin in Hz.
        bins_per_octave: bins per octave.
        n_bins: number of bins (None: every bin whose filter stays below the Nyquist frequency).
    """

    framing: ConstantQFraming

    def __init__(
        self,
        sample_rate: int,
        hop_ms: float = 10.0,
        fmin: float = 65.0,
        bins_per_octave: int = 12,
        n_bins: int | None = None,
    ) -> None:
        super().__init__(constant_q_framing(sample_rate, hop_ms, fmin, bins_per_octave, n_bins))
        self.dim = self.framing.n_bins

    def _frames(self, clip: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(self.framing.magnitude(clip), _MAGNITUDE_FLOOR))


class Chroma(LibrosaFeature):
    """Chroma: energy per pitch class, each frame scaled so its strongest class is 1, (B, N) → (B, T, n_chroma).

    From a short-time Fourier transform (``source="stft"``: uncentred frames, ``T = (N - n_fft)
    // hop + 1``) or a constant-Q transform (``source="cqt"``: 3 bins per pitch class, centred
    frames as in ``cqt``). Tuning is fixed at A440; a silent frame is all zeros.

    Args:
        source: the spectrum the pitch classes are summed from (stft or cqt).
        n_chroma: number of pitch classes.
        win_ms: STFT window in milliseconds (stft only; a long window resolves low pitches).
        hop_ms: hop between frames in milliseconds.
        fmin: centre of the lowest CQT bin in Hz (cqt only).
    """

    def __init__(
        self,
        sample_rate: int,
        source: Literal["stft", "cqt"] = "stft",
        n_chroma: int = 12,
        win_ms: float = 64.0,
        hop_ms: float = 10.0,
        fmin: float = 65.0,
    ) -> None:
        if n_chroma < 1:
            raise ValueError(f"n_chroma must be ≥ 1, got {n_chroma}")
        if source == "stft":
            framing: STFTFraming | ConstantQFraming = stft_framing(sample_rate, win_ms, hop_ms)
        elif source == "cqt":
            framing = constant_q_framing(sample_rate, hop_ms, fmin, 3 * n_chroma, None)
        else:
            raise ValueError(f"source must be 'stft' or 'cqt', got {source!r}")
        super().__init__(framing)
        self.source = source
        self.n_chroma = n_chroma
        self.dim = n_chroma

    def _frames(self, clip: np.ndarray) -> np.ndarray:
        if isinstance(self.framing, STFTFraming):
            return librosa.feature.chroma_stft(
                S=self.framing.magnitude(clip) ** 2, sr=self.sample_rate, n_fft=self.framing.n_fft,
                tuning=0.0, n_chroma=self.n_chroma,
            )
        return librosa.feature.chroma_cqt(
            C=self.framing.magnitude(clip), sr=self.sample_rate, n_chroma=self.n_chroma,
            bins_per_octave=self.framing.bins_per_octave, fmin=self.framing.fmin,
        )


class SpectralContrast(LibrosaFeature):
    """Spectral contrast: per octave band, peak level over valley level in dB, (B, N) → (B, T, n_bands + 1).

    Band 0 is [0, fmin] Hz, band k is [fmin·2^(k-1), fmin·2^k] Hz and the last one reaches the
    Nyquist frequency. Uncentred STFT frames, ``T = (N - n_fft) // hop + 1``.

    Args:
        n_bands: octave bands above fmin (None: every band that starts below the Nyquist frequency).
        fmin: upper edge of the lowest band in Hz.
        quantile: fraction of a band's bins averaged as its peak and as its valley.
        win_ms: analysis window length in milliseconds.
        hop_ms: hop between frames in milliseconds.
    """

    framing: STFTFraming

    def __init__(
        self,
        sample_rate: int,
        n_bands: int | None = None,
        fmin: float = 200.0,
        quantile: float = 0.02,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
    ) -> None:
        super().__init__(stft_framing(sample_rate, win_ms, hop_ms))
        nyquist = sample_rate / 2
        if not 0 < fmin < nyquist:
            raise ValueError(f"fmin must lie between 0 and the Nyquist frequency {nyquist:g} Hz, got {fmin:g}")
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must lie strictly between 0 and 1, got {quantile}")
        most = 1
        while fmin * 2**most < nyquist:  # librosa needs every band to start below the Nyquist frequency
            most += 1
        if n_bands is None:
            n_bands = most
        elif not 1 <= n_bands <= most:
            raise ValueError(
                f"n_bands must be in 1..{most} at {sample_rate} Hz with fmin {fmin:g} Hz: band {n_bands} would "
                f"start at {fmin * 2 ** (n_bands - 1):g} Hz, above the Nyquist frequency {nyquist:g} Hz"
            )
        bins = librosa.fft_frequencies(sr=sample_rate, n_fft=self.framing.n_fft)
        edges = [0.0] + [fmin * 2.0**k for k in range(n_bands + 1)]
        for lo, hi in zip(edges[:-1], edges[1:]):
            if not np.any((bins >= lo) & (bins <= hi)):
                raise ValueError(
                    f"win_ms {win_ms:g} leaves {sample_rate / self.framing.n_fft:g} Hz between FFT bins, too "
                    f"coarse for the band {lo:g}-{hi:g} Hz; raise win_ms or fmin"
                )
        self.n_bands = n_bands
        self.fmin = float(fmin)
        self.quantile = quantile
        self.dim = n_bands + 1

    def _frames(self, clip: np.ndarray) -> np.ndarray:
        return librosa.feature.spectral_contrast(
            S=self.framing.magnitude(clip), sr=self.sample_rate, n_fft=self.framing.n_fft,
            fmin=self.fmin, n_bands=self.n_bands, quantile=self.quantile,
        )


class MFCCDeltas(LibrosaFeature):
    """MFCCs with their first and second time derivatives stacked, (B, N) → (B, T, 3·n_mfcc).

    The coefficients are the orthonormal DCT-II of 10·log10 of the Slaney mel power spectrum
    (floored at 1e-10, with no floor relative to the clip's peak, so a frame never depends on
    the rest of the clip). Δ is the regression slope over ``delta_width`` frames and ΔΔ the same
    slope of Δ (HTK style, as torchaudio's ``ComputeDeltas``), repeating the edge frames. Δ and
    ΔΔ stop where the clip's non-zero samples stop: frames that reach into trailing digital
    silence, such as a batch's zero padding, get zero Δ and ΔΔ, so a clip gives the same frames
    alone and padded. Uncentred STFT frames, ``T = (N - n_fft) // hop + 1``.

    Args:
        n_mfcc: cepstral coefficients per frame (the feature has 3·n_mfcc values).
        n_mels: mel bands before the DCT.
        win_ms: analysis window length in milliseconds.
        hop_ms: hop between frames in milliseconds.
        f_min: lowest band edge in Hz.
        f_max: highest band edge in Hz (None: half the sample rate).
        delta_width: frames in the Δ regression window (odd, at least 3).
    """

    framing: STFTFraming

    def __init__(
        self,
        sample_rate: int,
        n_mfcc: int = 13,
        n_mels: int = 40,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 20.0,
        f_max: float | None = None,
        delta_width: int = 5,
    ) -> None:
        super().__init__(stft_framing(sample_rate, win_ms, hop_ms))
        if not 0 < n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must be in 1..n_mels ({n_mels}), got {n_mfcc}")
        if delta_width < 3 or delta_width % 2 == 0:
            raise ValueError(f"delta_width must be an odd number of frames ≥ 3, got {delta_width}")
        top = sample_rate / 2 if f_max is None else f_max
        if not 0 <= f_min < top <= sample_rate / 2:
            raise ValueError(
                f"need 0 ≤ f_min < f_max ≤ {sample_rate / 2:g} Hz (half the sample rate), got f_min {f_min:g}, f_max {top:g}"
            )
        self.n_mfcc = n_mfcc
        self.delta_width = delta_width
        self.dim = 3 * n_mfcc
        # Built once: librosa would rebuild the filterbank for every clip.
        self._mel_basis = librosa.filters.mel(
            sr=sample_rate, n_fft=self.framing.n_fft, n_mels=n_mels, fmin=f_min, fmax=top
        )

    def _frames(self, clip: np.ndarray) -> np.ndarray:
        power = self.framing.magnitude(clip) ** 2
        log_mel = librosa.power_to_db(self._mel_basis @ power, amin=1e-10, top_db=None)
        ceps = librosa.feature.mfcc(S=log_mel, n_mfcc=self.n_mfcc)
        deltas = np.zeros((2, *ceps.shape), dtype=ceps.dtype)
        nonzero = np.flatnonzero(clip)
        end = int(nonzero[-1]) + 1 if nonzero.size else 0
        inside = int(self.framing.count(end)) if end >= self.min_samples else 0
        if inside:
            first = librosa.feature.delta(ceps[:, :inside], width=self.delta_width, mode="nearest")
            deltas[0, :, :inside] = first
            deltas[1, :, :inside] = librosa.feature.delta(first, width=self.delta_width, mode="nearest")
        return np.concatenate([ceps, deltas[0], deltas[1]])
