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
    Changing them would change every model trained on them, so a new network needs a new name."""
    import hashlib

    digest = hashlib.sha256(embedding.WEIGHTS.read_bytes()).hexdigest()
    assert digest == "239ae6c3ba3ef4e7fc024401fc288b3de0f67aa7ccf76e9160ba64b3bd83c6b8"


def test_the_packaged_weights_are_read(tmp_path: Path) -> None:
    copy = tmp_path / "copy.safetensors"
    shutil.copy(embedding.WEIGHTS, copy)
    weights = embedding.load_weights(str(copy))
    assert weights["conv0.weight"].shape[1:] == (32, 3) and weights["head.weight"].shape[0] == 96


def test_it_gives_what_its_teacher_gives_on_recorded_voices(fsdd: Path) -> None:
    """Taught on synthetic speech only, the network reproduces the speech-embedding network on
    recordings of real people: over 200 FSDD clips (every 12th, all five speakers), each of the 96 values
    follows the teacher's with a correlation of 0.7 or more on average (0.78 for the packaged
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
    assert float(correlation.mean()) >= 0.7, np.round(correlation.numpy(), 2)
