"""Training-time augmentation for speech and sounds.

Waveform level (before preprocessing, so the model learns what real recordings look like):
speed perturbation (which shifts tempo and pitch together), room reverberation, gain, additive
noise at a random SNR, and quiet noise padded before and after the clip. Frame level: tempo
stretch, feature-axis warp, SpecAugment time and frequency masks. All randomness comes from
the generator passed in, so a seeded run repeats.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torchaudio.functional
from torch import Tensor

from .audio import resample
from .preprocess import pad_batch


@dataclasses.dataclass(frozen=True)
class Augment:
    """Augmentation settings (probabilities are per clip).

    Attributes:
        speeds: speed-perturbation factors drawn uniformly (1.0 keeps the clip).
        reverb_p: probability of room reverberation: the clip convolved with a synthetic room
            impulse response (direct sound, then noise decaying by 60 dB over a reverberation
            time drawn from ``rt60``), its level kept.
        rt60: (low, high) reverberation time range in seconds.
        gain_db: random gain in ±gain_db dB. Preprocessing that sets the level (``normalize``,
            on by default) undoes it; it matters with ``normalize="none"``, and before a high-pass.
        noise_p: probability of additive white noise, at an SNR drawn from ``snr_db``.
        snr_db: (low, high) signal-to-noise ratio range in dB.
        pad_p: probability of padding quiet noise (up to ``pad_seconds``) on each side.
        pad_seconds: longest padding, in seconds.
        stretch: (low, high) range of tempo change applied to the frames (duration × factor),
            drawn log-uniformly; people say the same word fast or slow.
        warp: (low, high) range of a stretch of the feature axis around its first bin, as
            vocal-tract length perturbation does for mel bands (keep (1, 1) for cepstra).
        time_masks: SpecAugment time masks per clip, each up to ``time_mask_frac`` of its frames.
        time_mask_frac: longest time mask as a fraction of the clip's frames.
        freq_masks: SpecAugment frequency masks per clip, each up to ``freq_mask_width`` bins.
        freq_mask_width: widest frequency mask, in feature bins.
    """

    speeds: tuple[float, ...] = (0.9, 0.95, 1.0, 1.05, 1.1)
    reverb_p: float = 0.0
    rt60: tuple[float, float] = (0.1, 0.6)
    gain_db: float = 10.0
    noise_p: float = 0.3
    snr_db: tuple[float, float] = (20.0, 40.0)
    pad_p: float = 0.5
    pad_seconds: float = 0.5
    stretch: tuple[float, float] = (0.7, 1.4)
    warp: tuple[float, float] = (1.0, 1.0)
    time_masks: int = 1
    time_mask_frac: float = 0.1
    freq_masks: int = 1
    freq_mask_width: int = 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def waveforms(self, waves: list[Tensor], sample_rate: int, g: torch.Generator) -> list[Tensor]:
        """Augment raw clips (N_i,) → (N_i',)."""
        n = len(waves)
        rand = torch.rand(n, 6, generator=g)
        choice = torch.randint(len(self.speeds), (n,), generator=g)
        out = list(waves)
        for k, factor in enumerate(self.speeds):  # one batched resample per factor
            idx = [i for i in range(n) if int(choice[i]) == k]
            if factor == 1.0 or not idx:
                continue
            src = round(sample_rate * factor)
            batch, lengths = pad_batch([out[i] for i in idx])
            stretched = resample(batch, src, sample_rate)
            new_lengths = (lengths * sample_rate + src - 1) // src
            for j, i in enumerate(idx):
                out[i] = stretched[j, : int(new_lengths[j])]
        if self.reverb_p > 0:  # draws nothing otherwise, so other settings repeat as before
            hit = torch.rand(n, generator=g) < self.reverb_p
            times = torch.empty(n).uniform_(*self.rt60, generator=g)
            for i in hit.nonzero().flatten().tolist():
                out[i] = reverberate(out[i], room_impulse(float(times[i]), sample_rate, g))
        for i, w in enumerate(out):
            rms = w.pow(2).mean().sqrt().clamp(min=1e-4)
            if rand[i, 0] < self.pad_p:
                pads = (rand[i, 1:3] * self.pad_seconds * sample_rate).long()
                level = rms * 10 ** (-(30 + 20 * float(rand[i, 3])) / 20)
                w = noise_padded(w, int(pads[0]), int(pads[1]), level, g)
            if rand[i, 4] < self.noise_p:
                snr = self.snr_db[0] + (self.snr_db[1] - self.snr_db[0]) * float(rand[i, 5])
                w = w + torch.randn(w.numel(), generator=g) * rms * 10 ** (-snr / 20)
            gain = 10 ** ((torch.rand(1, generator=g).item() * 2 - 1) * self.gain_db / 20)
            out[i] = w * gain
        return out

    def frames(self, frames: Tensor, lengths: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Tempo stretch then SpecAugment on normalised frames (B, T, F), lengths (B,).

        Returns the new frames and lengths; masked values become 0 (the mean).
        """
        frames, lengths = self.stretch_frames(frames, lengths, g)
        frames = self.warp_bins(frames, g)
        return self.mask(frames, lengths, g), lengths

    def warp_bins(self, frames: Tensor, g: torch.Generator) -> Tensor:
        """Stretch each clip's feature axis by a random factor: bin f reads bin f / factor."""
        lo, hi = self.warp
        B, T, F = frames.shape
        factors = torch.empty(B).uniform_(lo, hi, generator=g)
        if lo == hi == 1.0:
            return frames
        src = (torch.arange(F).view(1, F) / factors.view(B, 1)).clamp(max=F - 1)  # (B, F)
        left = src.floor().long()
        right = (left + 1).clamp(max=F - 1)
        w = (src - left).to(frames.device, frames.dtype).unsqueeze(1)  # (B, 1, F)

        def bins(idx: Tensor) -> Tensor:
            return frames.gather(2, idx.unsqueeze(1).expand(B, T, F).to(frames.device))

        return bins(left) * (1 - w) + bins(right) * w

    def stretch_frames(self, frames: Tensor, lengths: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Resample each clip's frames in time by a random factor (linear interpolation)."""
        lo, hi = self.stretch
        B = frames.shape[0]
        factors = torch.exp(torch.empty(B).uniform_(math.log(lo), math.log(hi), generator=g))
        if lo == hi == 1.0:
            return frames, lengths
        new_lengths = (lengths.float() * factors).round().long().clamp(min=1)
        out = frames.new_zeros(B, int(new_lengths.max()), frames.shape[2])
        for b in range(B):
            clip = frames[b, : int(lengths[b])].T.unsqueeze(0)  # (1, F, T)
            n = int(new_lengths[b])
            out[b, :n] = torch.nn.functional.interpolate(clip, size=n, mode="linear", align_corners=True)[0].T
        return out, new_lengths

    def mask(self, frames: Tensor, lengths: Tensor, g: torch.Generator) -> Tensor:
        """SpecAugment time and frequency masks on (B, T, F); masked values become 0."""
        B, T, F = frames.shape
        keep = torch.ones(B, T, F, dtype=torch.bool)
        t = torch.arange(T).view(1, T)
        f = torch.arange(F).view(1, F)
        for _ in range(self.time_masks):
            width = (torch.rand(B, generator=g) * self.time_mask_frac * lengths.float()).long()
            start = (torch.rand(B, generator=g) * (lengths - width).clamp(min=1).float()).long()
            hit = (t >= start.view(B, 1)) & (t < (start + width).view(B, 1))
            keep &= ~hit.unsqueeze(2)
        for _ in range(self.freq_masks):
            width = torch.randint(0, self.freq_mask_width + 1, (B,), generator=g)
            start = (torch.rand(B, generator=g) * (F - width).clamp(min=1).float()).long()
            hit = (f >= start.view(B, 1)) & (f < (start + width).view(B, 1))
            keep &= ~hit.unsqueeze(1)
        return frames * keep.to(frames.device, frames.dtype)


def noise_padded(wave: Tensor, before: int, after: int, level: float | Tensor,
                 g: torch.Generator | None = None) -> Tensor:
    """``wave`` (N,) with ``before`` and ``after`` samples of white noise of RMS ``level`` around it,
    the same noise running under it: (before + N + after,). How a recording leaves a word."""
    noise = torch.randn(before + wave.numel() + after, generator=g) * level
    noise[before : before + wave.numel()] += wave
    return noise


def room_impulse(rt60: float, sample_rate: int, g: torch.Generator) -> Tensor:
    """A synthetic room impulse response (L,): a unit direct path, then Gaussian noise whose
    energy decays by 60 dB in ``rt60`` seconds (exponential decay, as in a diffuse room)."""
    n = max(2, round(rt60 * sample_rate))
    t = torch.arange(n) / sample_rate
    tail = torch.randn(n, generator=g) * torch.exp(-3 * math.log(10) * t / rt60)  # amplitude: -60 dB at rt60
    tail[0] = 0.0
    tail *= 0.5 / tail.pow(2).sum().sqrt().clamp(min=1e-12)  # reverberant energy ~ -6 dB below direct
    tail[0] = 1.0
    return tail


def reverberate(wave: Tensor, impulse: Tensor) -> Tensor:
    """Convolve a clip (N,) with an impulse response (L,) → (N + L - 1,), at the clip's RMS level."""
    wet = torchaudio.functional.fftconvolve(wave, impulse.to(wave.dtype))
    return wet * wave.pow(2).mean().sqrt() / wet.pow(2).mean().sqrt().clamp(min=1e-12)
