"""The engine on a CUDA device: cuDNN fast paths against unrolling, batch independence,
prediction and training. Skipped where torch sees no CUDA device (CI has none)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import audioseq
from audioseq.classifier import Classifier
from audioseq.export import ExportError
from audioseq.model import NetworkConfig
from audioseq.plugins import build
from audioseq.recurrent import RecurrentEncoder
from audioseq.spec import ModelSpec
from audioseq.training import TrainConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

BUILTIN_CELLS = ["gru", "lstm", "rnn"]
RATE = 16000


@pytest.mark.parametrize("name", BUILTIN_CELLS)
def test_cudnn_fast_path_equals_unrolling_in_a_bidirectional_stack(name: str) -> None:
    """cuDNN on the very same parameters as the textbook steps, at the bundled model's size
    (13 MFCCs, 56 units, 2 bidirectional layers, up to 80 frames): outputs to 1e-5, gradients to
    1e-5 of the largest, under torch's default settings, which let cuDNN's RNNs use TF32
    (measured 1.6e-4 to 4.7e-4 off without the engine's guard)."""
    torch.manual_seed(0)
    precision = torch.backends.cudnn.rnn.fp32_precision
    # Training mode: cuDNN's backward needs it (the encoder has no dropout here).
    encoder = RecurrentEncoder(name, 13, 56, num_layers=2, bidirectional=True).cuda().train()
    x, lengths = torch.randn(16, 80, 13, device="cuda"), torch.randint(1, 81, (16,))
    lengths[0] = 80
    results = []
    for fast in (True, False):
        encoder.use_fast_path = fast
        encoder.zero_grad()
        out = encoder(x, lengths)  # (B, T, 2H)
        (out * torch.linspace(-1, 1, 112, device="cuda")).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in encoder.parameters()]))
    (fast_out, fast_grads), (slow_out, slow_grads) = results
    assert float((fast_out - slow_out).abs().max()) <= 1e-5
    for a, b in zip(fast_grads, slow_grads):
        assert float((a - b).abs().max()) <= 1e-5 * float(b.abs().max())
    assert torch.backends.cudnn.rnn.fp32_precision == precision  # the process-wide setting is put back


def _classifier(cell: str, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    dim = build("feature", "logmel", RATE).dim
    network = NetworkConfig(input_size=dim, num_classes=3, cell=cell, hidden_size=32, num_layers=2,
                            bidirectional=True, pooling="attention", dropout=0.0)  # fmt: skip
    return Classifier(ModelSpec(labels=["a", "b", "c"], sample_rate=RATE, network=network, feature="logmel"))


def _clips(count: int, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(count):
        n = int(rng.integers(RATE // 10, 2 * RATE))
        t = np.arange(n) / RATE
        wave = 0.3 * np.sin(2 * math.pi * (200 + 150 * i) * t) + 0.01 * rng.standard_normal(n)
        clips.append((wave.astype(np.float32), RATE))
    return clips


@pytest.mark.parametrize("name", BUILTIN_CELLS)
def test_predictions_on_cuda_equal_cpu_and_do_not_depend_on_the_batch(name: str) -> None:
    cpu = _classifier(name)
    gpu = _classifier(name).to("cuda")
    assert gpu.device.type == "cuda"
    clips = _clips(12)
    on_cpu, on_gpu = cpu.predict(clips, batch_size=12), gpu.predict(clips, batch_size=12)
    alone = [gpu.predict([clip])[0] for clip in clips[:3]]
    for a, b in zip(on_cpu, on_gpu):
        assert a.ok and b.ok and a.label == b.label
        assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) <= 1e-5
    for a, b in zip(alone, on_gpu):
        assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) <= 1e-5


def test_the_bundled_model_on_cuda_equals_cpu() -> None:
    cpu, gpu = audioseq.load("digits"), audioseq.load("digits", device="cuda")
    assert gpu.runtime == "torch"  # auto: ONNX Runtime only on CPU
    with pytest.raises(ExportError, match="runs on CPU"):
        audioseq.load("digits", device="cuda", backend="onnxruntime").predict(_clips(1))
    clips = _clips(8, seed=1)
    for a, b in zip(cpu.predict(clips), gpu.predict(clips)):
        assert a.label == b.label
        assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) <= 1e-5


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_on_cuda_gives_a_model_that_loads_and_predicts_alike_on_cpu(cell: str, tmp_path: Path) -> None:
    data = audioseq.load_dataset("synthetic", None, {"per_class": 12})
    config = TrainConfig(cell=cell, hidden_size=16, num_layers=1, epochs=3, seed=3, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    result = audioseq.train(data, config, out=tmp_path / "model.safetensors")
    assert torch.cuda.max_memory_allocated() > 0  # it ran on the GPU; the result comes back on the CPU
    assert result.metrics["test"]["accuracy"] > 1 / len(data.labels)  # it learned something
    loaded = audioseq.load(tmp_path / "model.safetensors")
    assert loaded.device.type == "cpu"
    clips = [ex.audio for ex in data.examples("test")][:16]
    for a, b in zip(result.classifier.predict(clips), loaded.predict(clips)):
        assert a.label == b.label
        assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) <= 1e-4
