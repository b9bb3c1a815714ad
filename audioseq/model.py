"""The many-to-one network: normalised frames → recurrent encoder → pooling over time → classes."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .recurrent import RecurrentEncoder

Pooling = Literal["last", "mean", "attention"]


@dataclasses.dataclass
class NetworkConfig:
    """Shape of the recurrent classifier (everything the weights depend on)."""

    input_size: int  # feature dimension F
    num_classes: int
    cell: str = "gru"  # a registered cell name
    cell_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    hidden_size: int = 64  # H, per direction
    num_layers: int = 2
    bidirectional: bool = True
    pooling: Pooling = "attention"
    dropout: float = 0.15  # between layers and before the classifier
    utterance_norm: bool = True  # subtract each clip's mean frame (cepstral mean normalisation)


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths → (B, T) bool mask, True on valid frames."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class TimePooling(nn.Module):
    """Many-to-one: (B, T, D) encoder outputs and lengths → (B, D) one vector per clip.

    ``last`` takes each sequence's true last frame (for bidirectional encoders: the forward
    half at the last frame and the backward half at the first); ``mean`` averages valid frames;
    ``attention`` learns a score per frame and takes the softmax-weighted sum of valid frames.
    """

    def __init__(self, mode: Pooling, size: int, bidirectional: bool) -> None:
        super().__init__()
        if mode not in ("last", "mean", "attention"):
            raise ValueError(f"pooling must be last, mean or attention, not {mode!r}")
        self.mode = mode
        self.bidirectional = bidirectional
        if mode == "attention":
            self.score = nn.Sequential(nn.Linear(size, size // 2 or 1), nn.Tanh(), nn.Linear(size // 2 or 1, 1))

    def weights(self, outputs: Tensor, lengths: Tensor) -> Tensor:
        """Attention weights (B, T) over valid frames (zero on padding)."""
        mask = length_mask(lengths, outputs.shape[1])
        scores = self.score(outputs).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=1)

    def forward(self, outputs: Tensor, lengths: Tensor) -> Tensor:
        B, T, D = outputs.shape
        lengths = lengths.to(outputs.device)
        if self.mode == "last":
            idx = (lengths - 1).view(B, 1, 1).expand(B, 1, D)
            last = outputs.gather(1, idx).squeeze(1)
            if self.bidirectional:
                half = D // 2
                return torch.cat([last[:, :half], outputs[:, 0, half:]], dim=-1)
            return last
        if self.mode == "mean":
            valid = length_mask(lengths, T).unsqueeze(-1)
            total = torch.where(valid, outputs, torch.zeros_like(outputs)).sum(1)
            return total / lengths.clamp(min=1).unsqueeze(1).to(outputs.dtype)
        w = self.weights(outputs, lengths)
        return torch.bmm(w.unsqueeze(1), outputs).squeeze(1)


class FrameNorm(nn.Module):
    """Per-dimension standardisation with statistics measured on the training frames."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, frames: Tensor) -> Tensor:
        return (frames - self.mean) / self.std


class SequenceClassifier(nn.Module):
    """frames (B, T, F) with lengths (B,) → logits (B, C)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.norm = FrameNorm(config.input_size)
        self.encoder = RecurrentEncoder(
            config.cell,
            config.input_size,
            config.hidden_size,
            config.num_layers,
            config.bidirectional,
            config.dropout,
            config.cell_params,
        )
        self.pool = TimePooling(config.pooling, self.encoder.output_size, config.bidirectional)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.encoder.output_size, config.num_classes)

    def normalise(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Utterance mean removal (masked) then the stored global standardisation; padding → 0."""
        valid = length_mask(lengths.to(frames.device), frames.shape[1]).unsqueeze(-1)
        frames = torch.where(valid, frames, torch.zeros_like(frames))  # padding may hold anything
        if self.config.utterance_norm:
            frames = frames - frames.sum(1, keepdim=True) / lengths.clamp(min=1).view(-1, 1, 1).to(frames)
        normed = self.norm(frames)
        return torch.where(valid, normed, torch.zeros_like(normed))

    def encode(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Raw frames (B, T, F) → encoder outputs (B, T, D·H)."""
        return self.encoder(self.normalise(frames, lengths), lengths)

    def classify(self, normalised: Tensor, lengths: Tensor) -> Tensor:
        """Normalised frames (B, T, F) → logits (B, C)."""
        outputs = self.encoder(normalised, lengths)
        return self.head(self.dropout(self.pool(outputs, lengths)))

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """Raw frames (B, T, F), lengths (B,) → logits (B, C)."""
        return self.classify(self.normalise(frames, lengths), lengths)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
