"""The ``speech-embedding`` feature: 96 values every 80 ms from a network pretrained on a large
amount of speech (Google's speech_embedding), for models that must work for voices their
training data lacks."""

from __future__ import annotations

import torch
from audioseq.audio import resample_rows, resampled_length
from torch import Tensor, nn

from .network import DIM, HOP, N_FFT, RATE, STRIDE, WINDOW, EmbeddingNetwork, LogMel, embedding_frames, mel_frames
from .weights import load_weights, weights_dir


class SpeechEmbedding(nn.Module):
    """Waveforms (B, N) at ``sample_rate`` Hz → embeddings (B, T, 96), one every 80 ms.

    Each clip is resampled to 16 kHz, given ``pad`` seconds of silence before and after, and
    turned into log-mel frames; the frozen network embeds every window of 0.77 s (76 frames),
    8 frames apart. ``T = num_frames(N)``; with the padding every clip of one sample or more
    gives at least one embedding.

    The weights are read from the installed ``openwakeword`` 0.4 (or ``$AUDIOSEQ_SPEECH_EMBEDDING_DIR``)
    when the feature is built; they are buffers outside the ``state_dict``, so model files keep
    only the recurrent network's own weights.

    Args:
        sample_rate: the model's rate in Hz; the feature resamples to 16 kHz itself, so a model
            trained at 8 kHz keeps ignoring what lies above 4 kHz.
        pad: seconds of silence added at each end, 0.05 to 10; the windows around a short clip then
            see it whole, with context on both sides, as they would in running speech.
    Raises:
        PluginError: the weights are not installed (the message says how to get them).
        ValueError: a non-positive rate, or ``pad`` outside 0.05–10 s.
    """

    dim = DIM

    def __init__(self, sample_rate: int, pad: float = 0.5) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if not 0.05 <= pad <= 10:
            raise ValueError(f"pad must be between 0.05 and 10 s (zero padding past a clip must not reach "
                             f"its frames' loudness floor); got {pad}")
        self.sample_rate = int(sample_rate)
        self.pad = float(pad)
        self.pad_samples = round(self.pad * RATE)
        weights = load_weights(str(weights_dir()))
        self.logmel = LogMel(weights)
        self.network = EmbeddingNetwork(weights)
        self.min_samples = next(n for n in range(1, 1 << 20) if int(self.num_frames(torch.tensor(n))) > 0)

    @property
    def hop_seconds(self) -> float:
        """Seconds between embeddings (0.08)."""
        return STRIDE * HOP / RATE

    def frame_seconds(self, num_frames: int) -> Tensor:
        """Centre of each embedding's window (T,), in seconds from the clip's start.

        Window t spans 16 kHz samples ``[t·1280, t·1280 + 12,512)`` of the padded clip; the first
        centres lie in the silence before the clip (negative) for ``pad`` above 0.39 s.
        """
        t = torch.arange(num_frames, dtype=torch.float64)
        centre = t * STRIDE * HOP + ((WINDOW - 1) * HOP + N_FFT) / 2 - self.pad_samples
        return (centre / RATE).float()

    def num_frames(self, num_samples: Tensor) -> Tensor:
        """Exact embedding count for clips of ``num_samples`` (LongTensor, any shape); 0 for an empty clip."""
        n = torch.as_tensor(num_samples, dtype=torch.long)
        frames = embedding_frames(mel_frames(resampled_length(n, self.sample_rate, RATE) + 2 * self.pad_samples))
        return torch.where(n > 0, frames, torch.zeros_like(frames))

    def forward(self, waveform: Tensor) -> Tensor:
        """Waveforms (B, N) float32 in [-1, 1] → embeddings (B, num_frames(N), 96) float32."""
        wave = resample_rows(waveform.float(), self.sample_rate, RATE)  # a clip's samples alike in any batch
        wave = torch.nn.functional.pad(wave, (self.pad_samples, self.pad_samples))
        count = int(self.num_frames(torch.tensor(waveform.shape[-1])))
        if count == 0:
            return wave.new_zeros(waveform.shape[0], 0, DIM)
        return self.network(self.logmel(wave))[:, :count]
