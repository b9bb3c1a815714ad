"""speech_embedding in torch: log-mel front end and the convolutional network.

The network is convolutional over time (no padding along it; three max-pools halve it), so one
pass over a clip's whole spectrogram gives the embedding of every 76-frame window with a hop
of 8 frames — what running it window by window gives, without computing each frame ~9 times.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weights import CONVS

RATE = 16000  # the network's sample rate
N_FFT, HOP = 512, 160  # 32 ms window, 10 ms hop
WINDOW, STRIDE = 76, 8  # mel frames per embedding, mel frames between embeddings
DIM = 96
INT16 = 32767.0  # the front end takes 16-bit sample values
TOP_DB = 80.0
SLOPE, FLOOR = 0.2, -0.4  # every block: leaky ReLU, then max(x, -0.4)
BN_EPS = 1e-3
POOLS = {"conv2d_2": (2, 2), "conv2d_6": (1, 2), "conv2d_10": (2, 2), "conv2d_14": (1, 2), "conv2d_18": (2, 2)}


def mel_frames(num_samples: Tensor) -> Tensor:
    """Log-mel frames of ``num_samples`` at 16 kHz (uncentred): LongTensor in, same shape out."""
    n = torch.as_tensor(num_samples, dtype=torch.long)
    return torch.where(n >= N_FFT, (n - N_FFT) // HOP + 1, torch.zeros_like(n))


def embedding_frames(num_mel_frames: Tensor) -> Tensor:
    """Embeddings of ``num_mel_frames`` log-mel frames: one per full window, a hop of 8 apart."""
    m = torch.as_tensor(num_mel_frames, dtype=torch.long)
    return torch.where(m >= WINDOW, (m - WINDOW) // STRIDE + 1, torch.zeros_like(m))


class LogMel(nn.Module):
    """Waveforms (B, N) at 16 kHz, in [-1, 1] → log-mel frames (B, T, 32), T = ``mel_frames(N)``.

    Power spectrum of 512-sample windows every 160 samples, 32 mel bands, dB, floored
    80 dB below the clip's loudest band and frame, then ``x / 10 + 2`` as the network expects.
    The floor is per row; zero padding, the quietest signal there is, never moves it.
    """

    def __init__(self, weights: dict[str, Tensor]) -> None:
        super().__init__()
        self.register_buffer("stft", torch.cat([weights["stft.real"], weights["stft.imag"]]), persistent=False)
        self.register_buffer("mel", weights["mel"], persistent=False)

    def forward(self, waveform: Tensor) -> Tensor:
        spec = F.conv1d(INT16 * waveform.unsqueeze(1), self.stft, stride=HOP)  # (B, 514, T)
        real, imag = spec.chunk(2, dim=1)
        power = (real.square() + imag.square()).transpose(1, 2)  # (B, T, 257)
        db = 10.0 * torch.log10((power @ self.mel).clamp(min=1e-10))  # (B, T, 32)
        top = db.amax(dim=(1, 2), keepdim=True) if db.shape[1] else db
        return torch.maximum(db, top - TOP_DB) / 10.0 + 2.0


class EmbeddingNetwork(nn.Module):
    """Log-mel frames (B, T, 32) → embeddings (B, T', 96), T' = ``embedding_frames(T)``.

    Twenty convolutions alternating over time (3×1, unpadded) and over mel bands (1×3,
    padded), each followed by leaky ReLU and a floor at −0.4 (the first also by batch norm);
    five max-pools, three of which halve time. Runs channels-last.
    """

    def __init__(self, weights: dict[str, Tensor]) -> None:
        super().__init__()
        scale = weights["bn.scale"] / torch.sqrt(weights["bn.var"] + BN_EPS)
        self.register_buffer("bn_scale", scale.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("bn_shift", (weights["bn.bias"] - weights["bn.mean"] * scale).view(1, -1, 1, 1),
                             persistent=False)
        self.names = [name for name, *_ in CONVS]
        for name in self.names:
            weight = weights[f"{name}.weight"].contiguous(memory_format=torch.channels_last)
            self.register_buffer(f"{name}_weight", weight, persistent=False)
            bias = weights.get(f"{name}.bias")
            self.register_buffer(f"{name}_bias", bias, persistent=False)

    def forward(self, logmel: Tensor) -> Tensor:
        x = F.pad(logmel.unsqueeze(1), (1, 1))  # (B, 1, T, 34): one zero band each side
        x = x.contiguous(memory_format=torch.channels_last)  # 2x faster convolutions on CPU
        in_place = not torch.is_grad_enabled() or not x.requires_grad  # half the time goes to these steps
        for name in self.names:
            weight, bias = getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias")
            pad = (0, 1) if weight.shape[-1] == 3 and name != "conv2d" else (0, 0)
            x = F.conv2d(x, weight, bias, padding=pad)
            if name == "conv2d_19":
                break
            if name == "conv2d":
                x = torch.relu_(x).mul_(self.bn_scale).add_(self.bn_shift) if in_place else (
                    torch.relu(x) * self.bn_scale + self.bn_shift)
            x = F.leaky_relu_(x, SLOPE).clamp_(min=FLOOR) if in_place else F.leaky_relu(x, SLOPE).clamp(min=FLOOR)
            if name in POOLS:
                x = F.max_pool2d(x, POOLS[name])
        return x.squeeze(-1).transpose(1, 2)  # (B, 96, T', 1) → (B, T', 96)
