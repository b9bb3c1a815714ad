"""The librosa features: registration, contract, exact framing, agreement with torchaudio, training."""

from __future__ import annotations

import importlib.metadata
import math
import warnings
from pathlib import Path
from typing import Any, Iterator

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from hypothesis import example, given, settings
from hypothesis import strategies as st

import audioseq
from audioseq.plugins import build, get_component
from audioseq.testing import check_feature
from audioseq_librosa.framing import max_cqt_bins

FEATURES = ("cqt", "chroma", "spectral-contrast", "mfcc-deltas")
RATES = (8000, 16000)


def make(name: str, sample_rate: int, **params: Any) -> Any:
    return build("feature", name, sample_rate, params=params)


def voiced(seconds: float, sample_rate: int, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A speech-like clip: a harmonic tone with a moving pitch over noise, (N,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 8) if k * f0 * 1.2 < sample_rate / 2)
    return (0.2 * tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def tone(freq: float, seconds: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def frames_of(feature: Any, clip: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return feature(torch.from_numpy(clip).unsqueeze(0))[0]  # (T, dim)


# --- registration and contract -------------------------------------------------------------


def test_features_register_through_the_entry_point() -> None:
    points = importlib.metadata.entry_points(group="audioseq", name="librosa")
    assert [p.value for p in points] == ["audioseq_librosa"]
    for name in FEATURES:
        component = get_component("feature", name)
        assert component.plugin == "librosa"
        assert component.factory.in_workers is True
        assert all(p.help for p in component.params), f"{name}: every parameter needs an Args: line"
    assert set(FEATURES) <= set(audioseq.list_features())


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize(
    "name, params",
    [("cqt", {}), ("chroma", {}), ("chroma", {"source": "cqt"}), ("spectral-contrast", {}), ("mfcc-deltas", {})],
)
def test_keeps_the_feature_contract(name: str, params: dict[str, Any], sample_rate: int) -> None:
    check_feature(get_component("feature", name).factory, sample_rate=sample_rate, **params)


def test_cqt_downsampling_early_keeps_the_contract() -> None:
    """Few bins at 16 kHz: librosa downsamples the clip before the first octave."""
    check_feature(get_component("feature", "cqt").factory, sample_rate=16000, n_bins=24)


# --- exact frame counts against librosa's own output ----------------------------------------


def librosa_frame_count(name: str, feature: Any, clip: np.ndarray) -> int:
    """How many frames librosa itself gives for ``clip`` with the feature's settings."""
    sr, framing = feature.sample_rate, feature.framing
    if name == "cqt":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # short clips: librosa pads its long FFTs
            out = librosa.cqt(clip, sr=sr, hop_length=feature.hop_length, fmin=framing.fmin, n_bins=feature.dim,
                              bins_per_octave=framing.bins_per_octave, tuning=0.0)
        return out.shape[-1]
    stft = dict(sr=sr, n_fft=framing.n_fft, hop_length=framing.hop_length, win_length=framing.win_length, center=False)
    if name == "chroma":
        return librosa.feature.chroma_stft(y=clip, tuning=0.0, **stft).shape[-1]
    if name == "spectral-contrast":
        return librosa.feature.spectral_contrast(y=clip, n_bands=feature.n_bands, **stft).shape[-1]
    return librosa.feature.mfcc(y=clip, n_mfcc=feature.n_mfcc, n_mels=40, fmin=20.0, **stft).shape[-1]


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("name", FEATURES)
@settings(max_examples=15, deadline=None)
@given(extra=st.integers(0, 12000))
@example(extra=0)
@example(extra=1)
def test_num_frames_is_exactly_what_librosa_gives(name: str, sample_rate: int, extra: int) -> None:
    feature = make(name, sample_rate)
    hop = feature.hop_length
    for n in (feature.min_samples + extra, feature.min_samples + hop * (extra // hop) + hop - 1):
        clip = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
        expected = librosa_frame_count(name, feature, clip)
        assert int(feature.num_frames(torch.tensor(n))) == expected, f"{n} samples"
        assert frames_of(feature, clip).shape == (expected, feature.dim)


# --- values ------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", RATES)
def test_mfcc_deltas_agree_with_torchaudio(sample_rate: int) -> None:
    """Same quantities as torchaudio's MFCC + ComputeDeltas (twice for ΔΔ), up to float32 rounding."""
    feature = make("mfcc-deltas", sample_rate)
    framing = feature.framing
    clip = voiced(0.7, sample_rate)
    mfcc = torchaudio.transforms.MFCC(
        sample_rate, n_mfcc=13, dct_type=2, norm="ortho", log_mels=False,
        melkwargs=dict(n_fft=framing.n_fft, win_length=framing.win_length, hop_length=framing.hop_length,
                       f_min=20.0, n_mels=40, center=False, power=2.0, norm="slaney", mel_scale="slaney"),
    )
    mfcc.amplitude_to_DB.top_db = None  # the feature keeps no floor relative to the clip's peak
    deltas = torchaudio.transforms.ComputeDeltas(win_length=5, mode="replicate")
    ceps = mfcc(torch.from_numpy(clip))  # (n_mfcc, T)
    first = deltas(ceps)
    expected = torch.cat([ceps, first, deltas(first)]).T  # (T, 3·n_mfcc)
    ours = frames_of(feature, clip)
    assert ours.shape == expected.shape == (int(feature.num_frames(torch.tensor(clip.size))), 39)
    # float32 FFTs and filterbank sums differ by ~5e-6 relative in mel power; coefficients reach ~500
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=2e-3)


@pytest.mark.parametrize("sample_rate", RATES)
def test_chroma_and_contrast_are_librosa_on_uncentred_frames(sample_rate: int) -> None:
    clip = voiced(0.5, sample_rate, seed=3)
    chroma, contrast = make("chroma", sample_rate), make("spectral-contrast", sample_rate)
    for feature, reference in (
        (chroma, librosa.feature.chroma_stft(y=clip, tuning=0.0, sr=sample_rate, n_fft=chroma.framing.n_fft,
                                             hop_length=chroma.hop_length, win_length=chroma.framing.win_length,
                                             center=False)),
        (contrast, librosa.feature.spectral_contrast(y=clip, sr=sample_rate, n_fft=contrast.framing.n_fft,
                                                     hop_length=contrast.hop_length,
                                                     win_length=contrast.framing.win_length, center=False,
                                                     n_bands=contrast.n_bands)),
    ):
        torch.testing.assert_close(frames_of(feature, clip), torch.from_numpy(reference.T).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sample_rate", RATES)
def test_a_tone_lands_in_its_bin_and_pitch_class(sample_rate: int) -> None:
    clip = tone(440.0, 0.6, sample_rate)  # A4
    cqt = frames_of(make("cqt", sample_rate), clip)
    middle = slice(cqt.shape[0] // 4, 3 * cqt.shape[0] // 4)
    assert int(cqt[middle].mean(0).argmax()) == round(12 * math.log2(440.0 / 65.0))
    for source in ("stft", "cqt"):
        chroma = frames_of(make("chroma", sample_rate, source=source), clip)
        assert int(chroma[middle].mean(0).argmax()) == 9, source  # C, C#, ..., A is class 9
        assert float(chroma[middle].max(1).values.min()) == pytest.approx(1.0)
    contrast = make("spectral-contrast", sample_rate)
    noise = np.random.default_rng(0).standard_normal(clip.size).astype(np.float32) * 0.3
    band = int(math.log2(440.0 / contrast.fmin)) + 1  # [400, 800] Hz
    assert float(frames_of(contrast, clip)[:, band].mean()) > float(frames_of(contrast, noise)[:, band].mean()) + 20


def test_a_non_finite_clip_gives_nan_frames_and_spares_the_batch() -> None:
    for name in FEATURES:
        feature = make(name, 8000)
        batch = torch.from_numpy(np.stack([voiced(0.4, 8000), voiced(0.4, 8000, seed=1)]))
        batch[1, 100] = float("nan")
        with torch.no_grad():
            out = feature(batch)
        assert torch.isfinite(out[0]).all(), name
        assert torch.isnan(out[1]).all(), name


# --- rules and refusals ----------------------------------------------------------------------


def test_cqt_layout_at_8_and_16_khz() -> None:
    assert (make("cqt", 8000).dim, make("cqt", 8000).hop_length) == (71, 96)
    assert (make("cqt", 16000).dim, make("cqt", 16000).hop_length) == (83, 192)


@pytest.mark.parametrize("sample_rate", [8000, 11025, 16000, 22050, 44100])
@pytest.mark.parametrize("hop_ms", [2.0, 10.0, 23.0])
def test_cqt_takes_every_bin_that_fits_and_a_hop_every_octave_can_halve(sample_rate: int, hop_ms: float) -> None:
    feature = make("cqt", sample_rate, hop_ms=hop_ms)
    multiple = 2 ** (feature.framing.n_octaves - 1)
    assert feature.hop_length % multiple == 0
    assert abs(feature.hop_length - round(sample_rate * hop_ms / 1000)) <= multiple / 2 or feature.hop_length == multiple
    assert max_cqt_bins(sample_rate, 65.0, 12) == feature.dim
    with pytest.raises(librosa.util.exceptions.ParameterError, match="Nyquist"):
        librosa.cqt(np.zeros(sample_rate, np.float32), sr=sample_rate, hop_length=feature.hop_length, fmin=65.0,
                    n_bins=feature.dim + 1, tuning=0.0)


@pytest.mark.parametrize(
    "name, sample_rate, params, message",
    [
        ("cqt", 8000, {"n_bins": "100"}, r"n_bins must be in 2\.\.71 at 8000 Hz"),
        ("cqt", 8000, {"fmin": "3900"}, "too close to the Nyquist"),
        ("cqt", 8000, {"fmin": "0"}, "fmin must lie between"),
        ("cqt", 8000, {"hop_ms": "0"}, "hop_ms must be a positive"),
        ("chroma", 8000, {"n_chroma": "0"}, "n_chroma"),
        ("spectral-contrast", 8000, {"n_bands": "6"}, r"n_bands must be in 1\.\.5"),
        ("spectral-contrast", 8000, {"win_ms": "2"}, "too coarse"),
        ("spectral-contrast", 8000, {"quantile": "1"}, "quantile"),
        ("mfcc-deltas", 16000, {"n_mfcc": "50"}, "n_mfcc must be in 1..n_mels"),
        ("mfcc-deltas", 16000, {"delta_width": "4"}, "delta_width must be an odd"),
        ("mfcc-deltas", 8000, {"f_max": "5000"}, "f_max"),
    ],
)
def test_impossible_settings_raise_a_clear_value_error(
    name: str, sample_rate: int, params: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make(name, sample_rate, **params)


# --- training and prediction -----------------------------------------------------------------


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared two-core machine, a second thread only adds hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Any:
    from audioseq.training import TrainConfig

    data = audioseq.load_dataset("synthetic", None, {"per_class": 20})
    config = TrainConfig(feature="mfcc-deltas", hidden_size=16, num_layers=1, epochs=4, augment=None,
                         batch_size=16, device="cpu", seed=0)
    out = tmp_path_factory.mktemp("librosa") / "mfcc-deltas.safetensors"
    return data, audioseq.train(data, config, out=out)


def test_training_on_mfcc_deltas_beats_chance(trained: Any) -> None:
    _, result = trained
    assert result.classifier.spec.feature == "mfcc-deltas"
    assert result.classifier.model.config.input_size == 39
    assert result.metrics["test"]["accuracy"] >= 0.6  # five classes: chance is 0.2


def test_prediction_computes_frames_in_workers(trained: Any, tmp_path: Path, one_thread: None) -> None:
    data, result = trained
    clf = audioseq.load(result.classifier.path)
    assert clf.frontend.in_workers
    test = data.examples("test")
    paths = []
    for i, ex in enumerate(test):
        wave, rate = ex.audio
        paths.append(str(tmp_path / f"{i}_{ex.label}.wav"))
        sf.write(paths[-1], wave, rate, subtype="FLOAT")
    parallel = clf.predict(paths, batch_size=4, num_workers=2)
    serial = clf.predict(paths, batch_size=4, num_workers=0)
    assert [p.source for p in parallel] == paths
    assert all(p.ok for p in parallel), [p.error for p in parallel if not p.ok]
    assert [p.label for p in parallel] == [p.label for p in serial]
    for a, b in zip(parallel, serial):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
    correct = sum(p.label == ex.label for p, ex in zip(parallel, test))
    assert correct / len(test) >= 0.6
