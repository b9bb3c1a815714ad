"""The built-in ``speech-embedding-lite`` feature: a small convolutional network over log-mel
frames, taught to give what a network pretrained on a large amount of speech gives.

The teacher is Google's speech_embedding (96 values every 80 ms from 76 log-mel frames;
Apache-2.0), which the audioseq-speech-embedding plugin provides as ``speech-embedding``. It
recognises voices a small training set lacks far better than spectrogram features, and is
too slow for batch work on a CPU. This network was trained to reproduce its outputs from
8 kHz log-mel frames, on synthetic speech only (``scripts/distil_embedding.py``): it never
heard a recorded voice, so no dataset's speakers are built into it.

Model files keep only their own network's weights and name this feature, so changing its
weights changes every model trained on it: a test pins their digest, so that it never
happens unnoticed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..audio import resample_rows, resampled_length
from ..errors import PluginError
from .features import LogMel

WEIGHTS = Path(__file__).resolve().parent / "weights" / "speech-embedding-lite.safetensors"
RATE = 8000  # the network's sample rate
PAD_SECONDS = 0.5  # silence around every clip, as the teacher had when it taught
N_MELS, WIN_MS, HOP_MS = 32, 32.0, 10.0
DIM = 96
WINDOW, STRIDE = 76, 8  # log-mel frames each output sees, and between outputs: the teacher's
# (kernel, then max-pool by 2) for each convolution before the 1x1 output layer: unpadded, they
# give one output per WINDOW frames, STRIDE apart.
LAYERS = ((3, False), (3, True), (3, False), (3, True), (3, False), (3, True), (3, False), (3, False), (2, False))


@functools.lru_cache(maxsize=2)
def load_weights(path: str) -> dict[str, Tensor]:
    """The network's tensors from ``path``, checked against the layers above.

    Raises:
        PluginError: the file is missing, unreadable or holds other shapes.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(path)
    except (OSError, SafetensorError) as exc:
        raise PluginError(f"speech-embedding-lite: cannot read its weights {path}: {exc}") from exc
    channels = weights.get("conv0.weight", torch.empty(0, 0, 0)).shape[0]
    expected = {"in_mean": (N_MELS,), "in_std": (N_MELS,), "head.weight": (DIM, channels, 1), "head.bias": (DIM,)}
    for i, (kernel, _) in enumerate(LAYERS):
        expected[f"conv{i}.weight"] = (channels, N_MELS if i == 0 else channels, kernel)
        expected[f"conv{i}.bias"] = (channels,)
    shapes = {name: tuple(t.shape) for name, t in weights.items()}
    if channels == 0 or shapes != expected or not all(torch.isfinite(t).all() for t in weights.values()):
        raise PluginError(f"speech-embedding-lite: {path} does not hold the network's weights "
                          f"(shapes {shapes}, expected {expected}, all finite)")
    return {name: t.float().contiguous() for name, t in weights.items()}


class SpeechEmbeddingLite(nn.Module):
    """Waveforms (B, N) at ``sample_rate`` Hz → embeddings (B, T, 96), one every 80 ms.

    Each clip is taken to 8 kHz, given 0.5 s of silence before and after, and turned into 32
    log-mel bands every 10 ms (32 ms windows); nine unpadded convolutions over time (three of
    them followed by max-pooling by 2) and a 1×1 layer give one 96-value vector for every 76
    frames, 8 frames apart. ``T = num_frames(N)``; every clip of one sample or more gives at
    least three. The weights are frozen buffers outside the ``state_dict``: model files keep
    only the recurrent network's own weights.

    Args:
        sample_rate: the model's rate in Hz. Clips at other rates are resampled to 8 kHz,
            so the feature never sees what lies above 4 kHz.
    Raises:
        ValueError: a non-positive rate.
        PluginError: the packaged weights are missing or damaged.
    """

    dim = DIM

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.pad_samples = round(PAD_SECONDS * RATE)
        self.logmel = LogMel(RATE, n_mels=N_MELS, win_ms=WIN_MS, hop_ms=HOP_MS, f_min=0.0)
        weights = load_weights(str(WEIGHTS))
        for name, tensor in weights.items():
            self.register_buffer(name.replace(".", "_"), tensor, persistent=False)
        with torch.no_grad():  # what the network's input is wherever the waveform is silent (32,)
            silence = self._standardised(self.logmel.log_mel(torch.zeros(1, self.logmel.n_fft)))[0, 0]
        self.register_buffer("silence", silence, persistent=False)
        self.min_samples = 1

    @property
    def hop_seconds(self) -> float:
        """Seconds between embeddings (0.08)."""
        return STRIDE * HOP_MS / 1000

    def frame_seconds(self, num_frames: int) -> Tensor:
        """Centre of each embedding's ``WINDOW`` frames (T,), in seconds from the clip's start; the
        first and last lie in the silence around the clip."""
        hop = self.logmel.hop_length
        centre = torch.arange(num_frames, dtype=torch.float64) * STRIDE * hop + ((WINDOW - 1) * hop + self.logmel.n_fft) / 2
        return ((centre - self.pad_samples) / RATE).float()

    def num_frames(self, num_samples: Tensor) -> Tensor:
        """Exact embedding count for clips of ``num_samples`` (LongTensor, any shape); 0 for an empty clip."""
        n = torch.as_tensor(num_samples, dtype=torch.long)
        padded = resampled_length(n, self.sample_rate, RATE) + 2 * self.pad_samples
        mel = torch.div(padded - self.logmel.n_fft, self.logmel.hop_length, rounding_mode="floor") + 1
        frames = torch.div(mel - WINDOW, STRIDE, rounding_mode="floor") + 1
        return torch.where((n > 0) & (mel >= WINDOW), frames, torch.zeros_like(frames))

    def forward(self, waveform: Tensor) -> Tensor:
        """Waveforms (B, N) float32 in [-1, 1] → embeddings (B, num_frames(N), 96) float32."""
        count = int(self.num_frames(torch.tensor(waveform.shape[-1])))
        if count == 0:
            return waveform.new_zeros(waveform.shape[0], 0, DIM)
        wave = resample_rows(waveform.float(), self.sample_rate, RATE)
        hop, n_fft, pad, n = self.logmel.hop_length, self.logmel.n_fft, self.pad_samples, wave.shape[-1]
        # Log-mel frames of the clip in its silence: [0, lo) lie wholly in the silence before,
        # [hi, length) wholly in the silence after (or the batch's padding); each of those is one
        # constant vector, and so is each layer's output wherever all it sees is constant.
        length = (n + 2 * pad - n_fft) // hop + 1
        lo = max((pad - n_fft) // hop + 1, 0)
        hi = max(min(-(-(pad + n) // hop), length), lo + 1)
        span = F.pad(wave, (pad - lo * hop, (hi - 1) * hop + n_fft - pad - n))  # frames [lo, hi)'s samples
        x = self._standardised(self.logmel.log_mel(span)).transpose(1, 2)  # (B, 32, hi - lo)
        part = _Partial(x, lo, hi, length, self.silence)
        for i, (_, pool) in enumerate(LAYERS):
            part = part.conv(getattr(self, f"conv{i}_weight"), getattr(self, f"conv{i}_bias"), relu=True)
            if pool:
                part = part.max_pool()
        return part.conv(self.head_weight, self.head_bias, relu=False).dense().transpose(1, 2)[:, :count]

    def _standardised(self, mel: Tensor) -> Tensor:
        return (mel - self.in_mean) / self.in_std


class _Partial(NamedTuple):
    """A sequence (B, C, length) of which only positions [lo, hi) are held (``x``: (B, C, hi - lo));
    every other position is the vector ``fill`` (C,). Unpadded convolutions and pooling keep it
    so, and compute only what is not ``fill``: for a short clip, most of the 0.5 s of silence
    around it."""

    x: Tensor
    lo: int
    hi: int
    length: int
    fill: Tensor

    def _widened(self, left: int, right: int, x: Tensor | None = None) -> Tensor:
        """``x`` (default: the held positions) with ``left`` and ``right`` more of ``fill``."""
        x = self.x if x is None else x
        b, c = x.shape[:2]
        return torch.cat([self.fill[:, None].expand(b, c, left), x, self.fill[:, None].expand(b, c, right)], dim=2)

    def conv(self, weight: Tensor, bias: Tensor, relu: bool) -> "_Partial":
        """An unpadded convolution (``weight``: (C_out, C, k)), then ReLU when ``relu``."""
        k = weight.shape[-1]
        left, right = min(k - 1, self.lo), min(k - 1, self.length - self.hi)
        x = F.conv1d(self._widened(left, right), weight, bias)
        fill = F.conv1d(self.fill[None, :, None].expand(1, -1, k), weight, bias)[0, :, 0]
        if relu:
            x, fill = torch.relu_(x), torch.relu_(fill)
        return _Partial(x, self.lo - left, self.hi + right - k + 1, self.length - k + 1, fill)

    def max_pool(self) -> "_Partial":
        """Max-pooling by 2; an odd last position is dropped."""
        lo, hi, x = self.lo, self.hi, self.x
        if lo % 2:
            lo, x = lo - 1, self._widened(1, 0)
        if hi % 2:
            if hi < self.length:
                hi, x = hi + 1, self._widened(0, 1, x)
            else:
                hi, x = hi - 1, x[..., :-1]
        return _Partial(F.max_pool1d(x, 2), lo // 2, hi // 2, self.length // 2, self.fill)

    def dense(self) -> Tensor:
        """The whole sequence (B, C, length)."""
        return self._widened(self.lo, self.length - self.hi)
