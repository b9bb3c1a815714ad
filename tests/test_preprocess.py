"""Waveform preprocessing stored in the model: frame levels, trimming quiet ends, level.

Every clip goes through it in training, evaluation, the API, the CLI and the app, so it must
find the sound where it is, keep the margin it promises, and reach the level it is asked for.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioseq.preprocess import Preprocess, frame_levels_db, normalise_level, trim_quiet_ends

RATE = 8000


def reference_levels(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """The definition: mean square of each window (or of the whole clip when shorter), in dB."""
    if x.size < frame:
        power = np.array([np.mean(x.astype(np.float64) ** 2) if x.size else 0.0])
    else:
        power = np.array([np.mean(x[s : s + frame].astype(np.float64) ** 2) for s in range(0, x.size - frame + 1, hop)])
    return 10 * np.log10(np.maximum(power, 1e-12))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), frame=st.integers(1, 400), hop_div=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_frame_levels_match_their_definition(n: int, frame: int, hop_div: int, seed: int) -> None:
    hop = max(1, frame // hop_div)
    x = (np.random.default_rng(seed).standard_normal(n) * 0.3).astype(np.float32)
    got = frame_levels_db(x, frame, hop)
    expected = reference_levels(x, frame, hop)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


def burst(start_s: float, stop_s: float, total_s: float = 1.0, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    n = int(total_s * RATE)
    x = noise * rng.standard_normal(n)
    a, b = int(start_s * RATE), int(stop_s * RATE)
    x[a:b] += 0.5 * np.sin(2 * np.pi * 440 * np.arange(b - a) / RATE)
    return torch.from_numpy(x.astype(np.float32))


@pytest.mark.parametrize("start, stop", [(0.3, 0.6), (0.0, 0.2), (0.7, 1.0), (0.45, 0.5)])
@pytest.mark.parametrize("margin_ms", [0.0, 60.0])
def test_trimming_keeps_the_sound_and_its_margin(start: float, stop: float, margin_ms: float) -> None:
    x = burst(start, stop, noise=1e-4)
    kept = trim_quiet_ends(x, RATE, trim_db=40.0, floor_db=None, margin_ms=margin_ms)
    frame, margin = int(0.02 * RATE), int(margin_ms / 1000 * RATE)
    # the kept span is a slice of the clip
    offset = next(i for i in range(x.numel() - kept.numel() + 1) if torch.equal(x[i : i + kept.numel()], kept))
    begin, end = offset, offset + kept.numel()
    a, b = int(start * RATE), int(stop * RATE)
    assert begin <= max(0, a - margin) and end >= min(x.numel(), b + margin)  # the sound and its margin
    assert kept.numel() < x.numel() or (a == 0 and b == x.numel())
    assert begin >= max(0, a - margin - frame) and end <= min(x.numel(), b + margin + frame)  # and no more


def test_a_flat_clip_is_not_trimmed() -> None:
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(RATE).astype(np.float32))
    for x in (torch.zeros(RATE), 0.1 * torch.ones(RATE), noise):
        assert torch.equal(trim_quiet_ends(x, RATE, trim_db=40.0, floor_db=None, margin_ms=0.0), x)
        assert torch.equal(trim_quiet_ends(x, RATE, trim_db=40.0, floor_db=6.0, margin_ms=0.0), x)
    short = torch.ones(100)  # fewer than three frames: nothing to compare
    assert trim_quiet_ends(short, RATE, 40.0, None, 0.0).numel() == 100


def test_the_noise_floor_rule_trims_steady_background() -> None:
    x = burst(0.4, 0.6, total_s=2.0, noise=0.02)  # the tone stands 25 dB over the noise
    by_peak = trim_quiet_ends(x, RATE, trim_db=40.0, floor_db=None, margin_ms=0.0)
    by_floor = trim_quiet_ends(x, RATE, trim_db=40.0, floor_db=10.0, margin_ms=0.0)
    assert by_peak.numel() == x.numel()  # the noise is within 40 dB of the peak
    assert 0.2 * RATE <= by_floor.numel() <= 0.2 * RATE + 2 * int(0.02 * RATE)


@pytest.mark.parametrize("target_db", [-30.0, -20.0, -6.0])
def test_rms_normalisation_reaches_the_target(target_db: float) -> None:
    x = burst(0.2, 0.8, noise=1e-3) * 0.01
    y = normalise_level(x, "rms", target_db)
    assert 20 * math.log10(float(y.pow(2).mean().sqrt())) == pytest.approx(target_db, abs=1e-3)
    assert torch.allclose(y / y.abs().max(), x / x.abs().max(), atol=1e-6)  # a gain, nothing else


def test_peak_normalisation_and_clipping() -> None:
    x = burst(0.2, 0.8) * 0.1
    y = normalise_level(x, "peak", -6.0)
    assert 20 * math.log10(float(y.abs().max())) == pytest.approx(-6.0, abs=1e-3)
    assert float(normalise_level(x, "peak", 6.0).abs().max()) <= 1.0  # above full scale: clamped


def test_silence_keeps_its_gain_and_bad_modes_are_refused() -> None:
    assert torch.equal(normalise_level(torch.zeros(100), "rms", -20.0), torch.zeros(100))
    assert torch.equal(normalise_level(torch.zeros(0), "peak", -20.0), torch.zeros(0))
    with pytest.raises(ValueError, match="peak, rms or none"):
        normalise_level(torch.ones(10), "loudness", -20.0)


def test_the_whole_chain_and_its_description() -> None:
    pre = Preprocess(trim_db=30.0, margin_ms=20.0, normalize="rms", target_db=-18.0)
    assert Preprocess.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError, match="unknown preprocessing settings: loudness"):
        Preprocess.from_dict({**pre.to_dict(), "loudness": 1})
    y = pre(burst(0.3, 0.5, noise=1e-4) * 0.05, RATE)
    assert 0.2 * RATE <= y.numel() <= 0.2 * RATE + 2 * (int(0.02 * RATE) + int(0.02 * RATE))
    assert 20 * math.log10(float(y.pow(2).mean().sqrt())) == pytest.approx(-18.0, abs=1e-3)


def test_the_high_pass_is_torchaudio_s_biquad_without_its_clamp() -> None:
    import torchaudio

    from audioseq.preprocess import highpass

    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(8000).astype(np.float32)) * 0.2
    assert torch.equal(highpass(wave, 8000, 100.0), torchaudio.functional.highpass_biquad(wave, 8000, 100.0))
    loud = highpass(wave * 5, 8000, 100.0)  # above full scale, as float input or a gain augmentation can be
    assert float(loud.abs().max()) > 1.5
    assert torch.allclose(loud, 5 * highpass(wave, 8000, 100.0), atol=1e-4)
