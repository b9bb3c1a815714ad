"""The built-in speech-embedding-lite feature: frame arithmetic, clips at other rates in a batch,
damaged weights, and agreement with the network it was taught by on voices it never heard."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audioseq.audio import read_audio
from audioseq.default_plugins import embedding
from audioseq.errors import PluginError
from audioseq.plugins import build
from audioseq.preprocess import Preprocess


def make(sample_rate: int = 8000) -> torch.nn.Module:
    return build("feature", "speech-embedding-lite", sample_rate)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100])
def test_frames_follow_the_teachers_windows(sample_rate: int) -> None:
    """One embedding for every 76 log-mel frames of the clip with 0.5 s of silence each side,
    8 frames apart: the same windows as the teacher's, as the layers' arithmetic gives them."""
    feature = make(sample_rate)
    for n in [1, 17, sample_rate // 10, sample_rate // 3, sample_rate, 2 * sample_rate + 7]:
        at8k = -(-n * 8000 // sample_rate)
        mel = (at8k + 8000 - 256) // 80 + 1
        assert int(feature.num_frames(torch.tensor(n))) == (mel - 76) // 8 + 1
        with torch.no_grad():
            assert feature(0.1 * torch.randn(2, n)).shape == (2, (mel - 76) // 8 + 1, 96)
    assert int(feature.num_frames(torch.tensor(0))) == 0
    seconds = feature.frame_seconds(3)
    assert torch.allclose(seconds[1:] - seconds[:-1], torch.tensor(0.08))


@pytest.mark.parametrize("sample_rate", [16000, 44100])
def test_a_clip_resampled_in_a_batch_gives_what_it_gives_alone(sample_rate: int) -> None:
    """Resampling rings past a clip's end into the batch's padding; its frames must not see it."""
    feature = make(sample_rate)
    g = torch.Generator().manual_seed(0)
    short, long = 0.2 * torch.randn(sample_rate // 3, generator=g), 0.2 * torch.randn(sample_rate, generator=g)
    batch = torch.zeros(2, long.numel())
    batch[0, : short.numel()], batch[1] = short, long
    with torch.no_grad():
        alone, together = feature(short[None])[0], feature(batch)[0]
    count = alone.shape[0]
    assert torch.allclose(together[:count], alone, atol=1e-5)


def every_frame(feature: torch.nn.Module, waveform: torch.Tensor) -> torch.Tensor:
    """The network over every log-mel frame of the clips in their silence, none left out."""
    import torch.nn.functional as F

    from audioseq.audio import resample_rows

    wave = resample_rows(waveform, feature.sample_rate, embedding.RATE)
    wave = F.pad(wave, (feature.pad_samples, feature.pad_samples))
    x = ((feature.logmel.log_mel(wave) - feature.in_mean) / feature.in_std).transpose(1, 2)
    for i, (_, pool) in enumerate(embedding.LAYERS):
        x = torch.relu(F.conv1d(x, getattr(feature, f"conv{i}_weight"), getattr(feature, f"conv{i}_bias")))
        x = F.max_pool1d(x, 2) if pool else x
    x = F.conv1d(x, feature.head_weight, feature.head_bias)
    return x.transpose(1, 2)[:, : int(feature.num_frames(torch.tensor(waveform.shape[-1])))]


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100])
def test_the_silence_around_a_clip_is_computed_once_with_the_same_result(sample_rate: int) -> None:
    """Most frames of a short clip lie in its 0.5 s of silence, where each layer's output is one
    vector; the feature computes that vector once. Its embeddings equal those of the network
    run over every frame, for clips of one sample to three seconds, alone and in a batch with
    longer ones (odd and even lengths meet each pooling step both ways)."""
    feature = make(sample_rate)
    g = torch.Generator().manual_seed(1)
    lengths = [1, 2, 79, 80, 81, 255, 256, 257, 1234] + [round(sample_rate * s) for s in (0.1, 0.37, 0.5, 1.0, 3.0)]
    with torch.no_grad():
        for n in lengths:
            batch = 0.1 * torch.randn(3, n, generator=g)
            batch[1, n // 2 :] = 0  # a shorter clip, padded
            batch[2, : n // 3] = 0  # silence before a sound
            fast, full = feature(batch), every_frame(feature, batch)
            assert fast.shape == full.shape == (3, int(feature.num_frames(torch.tensor(n))), 96)
            assert torch.allclose(fast, full, atol=1e-5), n


@pytest.mark.parametrize(("lo", "hi", "length"), [(0, 9, 9), (0, 8, 8), (3, 7, 11), (4, 11, 11), (5, 10, 12), (1, 2, 7)])
def test_a_partly_held_sequence_convolves_and_pools_as_the_whole_one(lo: int, hi: int, length: int) -> None:
    """Held positions at either end, odd or even, and none held outside at all."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(lo * 100 + hi)
    fill, held = torch.randn(4, generator=g), torch.randn(2, 4, hi - lo, generator=g)
    whole = torch.cat([fill[:, None].expand(2, 4, lo), held, fill[:, None].expand(2, 4, length - hi)], dim=2)
    part = embedding._Partial(held, lo, hi, length, fill)
    assert torch.equal(part.dense(), whole)
    for step in ("pool", "conv2", "pool", "conv1"):
        if step == "pool":
            part, whole = part.max_pool(), F.max_pool1d(whole, 2)
        else:
            k = int(step[-1])
            weight, bias = torch.randn(4, 4, k, generator=g), torch.randn(4, generator=g)
            part, whole = part.conv(weight, bias, relu=True), torch.relu(F.conv1d(whole, weight, bias))
        assert part.dense().shape == whole.shape and torch.allclose(part.dense(), whole, atol=1e-5), step


@pytest.mark.parametrize("damage", ["missing", "junk", "shape"])
def test_damaged_weights_raise_a_plugin_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "weights.safetensors"
    if damage == "junk":
        path.write_bytes(b"not a safetensors file")
    elif damage == "shape":
        from safetensors.torch import load_file, save_file

        weights = load_file(str(embedding.WEIGHTS))
        weights["conv3.weight"] = weights["conv3.weight"][:, :, :2].contiguous()
        save_file(weights, str(path))
    with pytest.raises(PluginError, match=str(path.name)):
        embedding.load_weights(str(path))


def test_the_packaged_weights_stay_the_ones_models_were_trained_on() -> None:
    """A model file keeps only its recurrent network; the feature's weights come from the package.
    Changing them changes every model trained on them, so it must be done on purpose. The digest
    covers every tensor's name, type, shape and values, not the file's bytes: a rerun of the
    distillation writes its metadata in another order."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(embedding.load_weights(str(embedding.WEIGHTS)).items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    assert digest.hexdigest() == "1b778f684a846647caf1be2423514b1ef524dafa7db29c23dedc06e60485143a"


def test_the_packaged_weights_are_read(tmp_path: Path) -> None:
    copy = tmp_path / "copy.safetensors"
    shutil.copy(embedding.WEIGHTS, copy)
    weights = embedding.load_weights(str(copy))
    assert weights["conv0.weight"].shape[1:] == (32, 3) and weights["head.weight"].shape[0] == 96


def test_it_gives_what_its_teacher_gives_on_recorded_voices(fsdd: Path) -> None:
    """Taught on synthetic speech only, the network reproduces the speech-embedding network on
    recordings of real people: over 200 FSDD clips (every 12th, all five speakers), each of the 96 values
    follows the teacher's with a correlation of 0.75 or more on average (0.81 for the packaged
    weights; about 0 for an untrained network)."""
    teacher_plugin = pytest.importorskip("audioseq_speech_embedding", reason="needs the audioseq-speech-embedding plugin")
    teacher = teacher_plugin.SpeechEmbedding(8000, pad=0.5).eval()
    student = make(8000)
    files = sorted(fsdd.glob("*.wav"))[::12][:200]
    preprocess = Preprocess()
    mine, theirs = [], []
    with torch.no_grad():
        for f in files:
            wave = preprocess(read_audio(str(f), 8000), 8000)[None]
            mine.append(student(wave)[0])
            theirs.append(teacher(wave)[0])
    a, b = torch.cat(mine).double(), torch.cat(theirs).double()  # (frames, 96)
    a, b = a - a.mean(0), b - b.mean(0)
    correlation = (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0) + 1e-12)
    assert float(correlation.mean()) >= 0.75, np.round(correlation.numpy(), 2)
