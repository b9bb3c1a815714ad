"""The built-in ``speech-embedding-lite`` feature: a small convolutional network over log-mel
frames, taught to give what a network pretrained on a large amount of speech gives.

The teacher is Google's speech_embedding (96 values every 80 ms from 76 log-mel frames;
Apache-2.0), which the audioseq-speech-embedding plugin provides as ``speech-embedding``. It
recognises voices a small training set lacks far better than spectrogram features, and is
too slow for batch work on a CPU. This network was trained to reproduce its outputs from
8 kHz log-mel frames, on synthetic speech only (``scripts/distil_embedding.py``): it never
heard a recorded voice, so no dataset's speakers are built into it.

Model files keep only their own network's weights and name this feature, so its weights are
fixed (a test pins their digest): a network trained again ships under another name.
"""

from __future__ import annotations

import functools
from pathlib import Path

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
        wave = F.pad(resample_rows(waveform.float(), self.sample_rate, RATE), (self.pad_samples, self.pad_samples))
        x = ((self.logmel.log_mel(wave) - self.in_mean) / self.in_std).transpose(1, 2)  # (B, 32, T)
        for i, (_, pool) in enumerate(LAYERS):
            x = torch.relu_(F.conv1d(x, getattr(self, f"conv{i}_weight"), getattr(self, f"conv{i}_bias")))
            if pool:
                x = F.max_pool1d(x, 2)
        x = F.conv1d(x, self.head_weight, self.head_bias)  # (B, 96, T')
        return x.transpose(1, 2)[:, :count]
