"""The speech-embedding feature: registration, contract, agreement with the ONNX models it is
read from, resampling, missing or wrong weights, and models that keep only their own weights."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import audioseq
from audioseq.audio import resample
from audioseq.errors import PluginError
from audioseq.plugins import build, get_component
from audioseq.testing import check_feature
from audioseq_speech_embedding.network import HOP, N_FFT, RATE, STRIDE, WINDOW, embedding_frames, mel_frames
from audioseq_speech_embedding.weights import ENV, FILES, weights_dir


def make(sample_rate: int = RATE, **params: Any) -> Any:
    return build("feature", "speech-embedding", sample_rate, params=params)


def voiced(seconds: float, sample_rate: int, f0: float = 120.0, seed: int = 0) -> np.ndarray:
    """A speech-like clip: harmonics of a gliding pitch under a moving formant, over a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.3 * t)) / sample_rate
    formant = 600 + 1400 * t / seconds
    tone = sum(np.sin(k * phase) * np.exp(-((k * f0 - formant) / 400) ** 2) for k in range(1, 30)
               if k * f0 * 1.3 < sample_rate / 2)
    return (0.3 * tone / np.abs(tone).max() + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def frames_of(feature: Any, clip: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return feature(torch.from_numpy(clip).unsqueeze(0))[0]


def test_registers_through_the_entry_point() -> None:
    points = importlib.metadata.entry_points(group="audioseq", name="speech-embedding")
    assert [p.value for p in points] == ["audioseq_speech_embedding"]
    component = get_component("feature", "speech-embedding")
    assert component.plugin == "speech-embedding"
    assert [p.name for p in component.params] == ["pad"] and all(p.help for p in component.params)
    assert "speech-embedding" in audioseq.list_features()


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_keeps_the_feature_contract(sample_rate: int) -> None:
    check_feature(get_component("feature", "speech-embedding").factory, sample_rate=sample_rate)


def test_frame_counts_follow_the_windows() -> None:
    feature = make(pad=0.5)
    n = torch.arange(0, 40000, 37)
    padded = n + 2 * 8000
    expected = torch.where((padded - N_FFT) // HOP + 1 >= WINDOW, ((padded - N_FFT) // HOP + 1 - WINDOW) // STRIDE + 1, 0)
    assert torch.equal(feature.num_frames(n), torch.where(n > 0, expected, 0))
    assert feature.min_samples == 1 and feature.hop_seconds == pytest.approx(0.08)
    assert torch.equal(embedding_frames(mel_frames(torch.tensor([12511, 12512, 13791, 13792]))),
                       torch.tensor([0, 1, 1, 2]))


def onnx_reference(clip: np.ndarray) -> np.ndarray:
    """The embeddings openwakeword's own ONNX models give, window by window: (T, 96)."""
    ort = pytest.importorskip("onnxruntime")
    folder = weights_dir()
    mel = ort.InferenceSession(str(folder / FILES[0]), providers=["CPUExecutionProvider"])
    net = ort.InferenceSession(str(folder / FILES[1]), providers=["CPUExecutionProvider"])
    spec = mel.run(None, {"input": (32767.0 * clip)[None].astype(np.float32)})[0].squeeze() / 10 + 2  # (T, 32)
    windows = np.stack([spec[i : i + WINDOW] for i in range(0, spec.shape[0] - WINDOW + 1, STRIDE)])
    return net.run(None, {"input_1": windows[..., None].astype(np.float32)})[0].reshape(-1, 96)


@pytest.mark.parametrize("seconds, pad", [(0.3, 0.5), (0.8, 0.25), (1.7, 0.05)])
def test_equals_the_onnx_models_run_window_by_window(seconds: float, pad: float) -> None:
    clip = voiced(seconds, RATE)
    feature = make(pad=pad)
    padding = round(pad * RATE)
    expected = onnx_reference(np.pad(clip, (padding, padding)))
    got = frames_of(feature, clip).numpy()
    assert got.shape == expected.shape == (int(feature.num_frames(torch.tensor(clip.size))), 96)
    scale = np.abs(expected).max()
    assert scale > 1.0  # the network answers, rather than giving zeros
    assert np.abs(got - expected).max() <= 1e-5 * scale


def test_other_rates_are_resampled_to_16_khz_first() -> None:
    clip = voiced(0.6, 8000)
    at_8k = frames_of(make(8000), clip)
    at_16k = frames_of(make(16000), resample(torch.from_numpy(clip), 8000, 16000).numpy())
    assert at_8k.shape == at_16k.shape
    assert torch.allclose(at_8k, at_16k, rtol=0, atol=1e-4 * float(at_16k.abs().max()))


def test_a_clip_ending_in_silence_gives_the_same_frames_alone_and_padded_in_a_batch() -> None:
    """Resampling rings past a clip's last sound; each row is cut there, alone or padded."""
    clip = np.concatenate([voiced(0.4, 8000), np.zeros(400, np.float32)])
    feature = make(8000)
    alone = frames_of(feature, clip)
    batch = torch.zeros(2, clip.size + 3000)
    batch[0, : clip.size] = torch.from_numpy(clip)
    batch[1] = torch.from_numpy(voiced(batch.shape[1] / 8000, 8000, seed=1))
    with torch.no_grad():
        together = feature(batch)[0, : alone.shape[0]]
    assert torch.allclose(together, alone, rtol=0, atol=1e-4 * float(alone.abs().max()))


def test_gradients_reach_the_waveform_and_the_frames_are_the_same() -> None:
    feature = make(8000)
    wave = torch.from_numpy(voiced(0.5, 8000)).unsqueeze(0).requires_grad_(True)
    out = feature(wave)
    out.square().mean().backward()
    assert wave.grad is not None and bool(torch.isfinite(wave.grad).all()) and float(wave.grad.abs().sum()) > 0
    with torch.no_grad():
        assert torch.allclose(feature(wave), out.detach(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("pad", [0.5, 0.1])
def test_frame_seconds_are_the_centres_of_the_samples_each_embedding_hears(pad: float) -> None:
    """The samples a frame's gradient reaches are the ones it hears: for a frame whose window
    lies inside the clip, their midpoint is the frame's stated centre."""
    feature = make(RATE, pad=pad)
    clip = torch.from_numpy(voiced(2.0, RATE)).unsqueeze(0).requires_grad_(True)
    frames = feature(clip)[0]
    seconds = feature.frame_seconds(frames.shape[0])
    assert seconds.shape == (frames.shape[0],)
    assert torch.allclose(seconds.diff(), torch.full((frames.shape[0] - 1,), feature.hop_seconds))
    inside = [t for t in range(frames.shape[0]) if seconds[t] - 0.4 > 0 and seconds[t] + 0.4 < 2.0]
    assert len(inside) >= 5
    for t in inside[:: max(1, len(inside) // 5)]:
        (grad,) = torch.autograd.grad(frames[t].sum(), clip, retain_graph=True)
        heard = grad[0].nonzero().squeeze(1)
        midpoint = (float(heard[0]) + float(heard[-1]) + 1) / 2 / RATE
        assert midpoint == pytest.approx(float(seconds[t]), abs=2 / RATE)


@pytest.mark.parametrize("pad", [0.0, 0.04, 11.0, float("nan")])
def test_a_pad_out_of_range_is_a_value_error(pad: float) -> None:
    with pytest.raises(ValueError, match="pad must be between 0.05 and 10 s"):
        make(pad=pad)


def test_without_openwakeword_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openwakeword" else real(name, *a))
    with pytest.raises(PluginError, match=r'needs Google.s speech_embedding weights: pip install "openwakeword==0\.4\.0"'):
        make()


def test_missing_weights_name_the_package_that_holds_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    with pytest.raises(PluginError, match=r'melspectrogram\.onnx, embedding_model\.onnx not found .*openwakeword==0\.4\.0'):
        make()


def test_a_corrupt_weights_file_is_a_plugin_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(weights_dir() / FILES[0], tmp_path / FILES[0])
    (tmp_path / FILES[1]).write_bytes(b"\x08\x07not a model at all" * 50)
    monkeypatch.setenv(ENV, str(tmp_path))
    with pytest.raises(PluginError, match="speech-embedding: .*embedding_model.onnx"):
        make()


def test_a_different_model_in_its_place_is_a_plugin_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(weights_dir() / FILES[0], tmp_path / FILES[0])
    shutil.copy(weights_dir() / FILES[0], tmp_path / FILES[1])  # the front end where the network belongs
    monkeypatch.setenv(ENV, str(tmp_path))
    with pytest.raises(PluginError, match="is not the expected model: model/batch_normalization/.* missing"):
        make()


def test_model_files_keep_only_the_networks_own_weights(tmp_path: Path) -> None:
    """The embedding's weights stay buffers outside the state_dict: a model file holds the
    recurrent network alone and loads back to the same predictions."""
    from audioseq.training import TrainConfig, train

    feature = make(8000)
    assert feature.state_dict() == {}
    rng = np.random.default_rng(0)
    clips = [(voiced(rng.uniform(0.3, 0.6), 8000, f0=f0, seed=i), label)
             for i in range(12) for f0, label in ((100.0, "low"), (220.0, "high"))]
    examples = [audioseq.Example((clip, 8000), label, split, None)
                for k, (clip, label) in enumerate(clips) for split in ["valid" if k % 6 == 0 else "train"]]
    config = TrainConfig(feature="speech-embedding", sample_rate=8000, cell="gru", hidden_size=8, num_layers=1,
                         epochs=2, batch_size=8, seed=0, augment=None)
    path = tmp_path / "m.safetensors"
    classifier = train(examples, config, out=path).classifier
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("conv2d" in k or "stft" in k or "mel" == k.split(".")[-1] for k in keys)
    assert path.stat().st_size < 100_000  # the embedding's 1.3 MB of weights are not in it
    again = audioseq.load(path)
    inputs = [(clip, 8000) for clip, _ in clips[:4]]
    for a, b in zip(classifier.predict(inputs), again.predict(inputs)):
        assert a.error is None and a.label == b.label
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


# --- the ready-trained model: digits-speech-embedding ----------------------------------------

FSDD = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "fsdd" / "recordings"


def test_ships_its_digits_model_through_the_model_hook() -> None:
    component = get_component("model", "digits-speech-embedding")
    assert component.plugin == "speech-embedding"
    assert component.path is not None and component.path.with_suffix(".md").is_file()
    assert "spoken-digit" in component.doc
    clf = audioseq.load("digits-speech-embedding")
    assert clf.labels == [str(d) for d in range(10)] and clf.sample_rate == 8000
    assert clf.spec.feature == "speech-embedding" and clf.num_parameters() <= 100_000
    assert component.path.stat().st_size < 300_000  # the network alone, not the embedding


def test_the_digits_model_recognises_the_official_fsdd_test_split() -> None:
    """The 250 clips of recording index 0-4: all five speakers were heard in training, these
    clips were not. The model card states the measured figure; this guards the file."""
    import re

    from audioseq.evaluation import evaluate

    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not found at {FSDD}")
    test = [audioseq.Example(str(p), p.name[0], "test") for p in sorted(FSDD.glob("*.wav"))
            if (m := re.match(r"\d_[a-z]+_(\d+)\.wav$", p.name)) and int(m.group(1)) < 5]
    assert len(test) == 250
    metrics = evaluate(audioseq.load("digits-speech-embedding"), test)
    assert metrics["accuracy"] >= 0.99, metrics["accuracy"]
