"""Training-time augmentation: each transform does what its settings say, and only that."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from audioseq.augment import Augment, reverberate, room_impulse

RATE = 8000
QUIET = dict(gain_db=0.0, noise_p=0.0, pad_p=0.0)  # waveform transforms off but the one tested


def clips(n: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(4000) / RATE
    return [torch.sin(2 * math.pi * (200 + 50 * i) * t) * 0.3 + 0.01 * torch.randn(4000, generator=g) for i in range(n)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rms(w: torch.Tensor) -> float:
    return float(w.pow(2).mean().sqrt())


def test_same_generator_seed_repeats_every_transform() -> None:
    aug = Augment(reverb_p=0.5, noise_p=0.5, pad_p=0.5)
    a = aug.waveforms(clips(), RATE, gen(3))
    b = aug.waveforms(clips(), RATE, gen(3))
    c = aug.waveforms(clips(), RATE, gen(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any(x.shape != y.shape or not torch.equal(x, y) for x, y in zip(a, c))


def test_inputs_are_not_modified_and_outputs_are_finite() -> None:
    waves = clips()
    before = [w.clone() for w in waves]
    out = Augment(reverb_p=1.0, noise_p=1.0, pad_p=1.0).waveforms(waves, RATE, gen())
    assert all(torch.equal(w, b) for w, b in zip(waves, before))
    assert len(out) == len(waves) and all(torch.isfinite(w).all() and w.numel() > 0 for w in out)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_length_by_the_factor(factor: float) -> None:
    aug = Augment(speeds=(factor,), **QUIET)
    out = aug.waveforms(clips(), RATE, gen())
    assert all(w.numel() == math.ceil(4000 / factor) for w in out)


def test_gain_stays_within_its_range() -> None:
    waves = clips(40)
    out = Augment(speeds=(1.0,), gain_db=6.0, noise_p=0.0, pad_p=0.0).waveforms(waves, RATE, gen())
    db = torch.tensor([20 * math.log10(rms(o) / rms(w)) for o, w in zip(out, waves)])
    assert db.abs().max() <= 6.0 + 1e-4 and db.std() > 1.0  # drawn, not fixed


def test_padding_adds_at_most_pad_seconds_each_side_and_keeps_the_clip() -> None:
    waves = [torch.randn(4000, generator=gen(i)) * 0.1 for i in range(20)]  # aperiodic: one alignment
    out = Augment(speeds=(1.0,), gain_db=0.0, noise_p=0.0, pad_p=1.0, pad_seconds=0.25).waveforms(waves, RATE, gen())
    added = torch.tensor([o.numel() - w.numel() for o, w in zip(out, waves)])
    assert (added >= 0).all() and (added <= 2 * 0.25 * RATE).all() and (added > 0).any()
    for o, w in zip(out, waves):  # the clip sits inside, 30-50 dB above the padding's noise
        start = int(torch.nn.functional.conv1d(o.view(1, 1, -1), w.view(1, 1, -1)).argmax())
        assert rms(o[start : start + w.numel()] - w) <= rms(w) * 10 ** (-30 / 20) * 1.1


def test_reverb_off_draws_nothing_so_other_settings_repeat() -> None:
    off = Augment(noise_p=0.5, pad_p=0.5)
    assert off.reverb_p == 0.0  # the default: existing recipes keep their random streams
    explicit = dataclasses.replace(off, rt60=(0.3, 0.9))
    a = off.waveforms(clips(), RATE, gen(1))
    b = explicit.waveforms(clips(), RATE, gen(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("rt60", [0.1, 0.5])
def test_room_impulse_decays_by_60_db_over_its_reverberation_time(rt60: float) -> None:
    h = room_impulse(rt60, 16000, gen())
    assert h.shape == (round(rt60 * 16000),) and h[0] == 1.0
    tail = h[1:].pow(2)
    energy = tail.sum()
    assert 0.2 < float(energy) < 0.3  # reverberant energy 6 dB below the direct sound
    # Schroeder backward integration: -20 dB is reached a third of the way through.
    decay = 10 * torch.log10(tail.flip(0).cumsum(0).flip(0) / energy)
    t20 = int((decay > -20).sum()) / 16000
    assert abs(t20 - rt60 / 3) < 0.15 * rt60


def test_reverberation_keeps_the_level_and_smears_the_clip_in_time() -> None:
    click = torch.zeros(2000)
    click[100] = 1.0
    h = room_impulse(0.2, RATE, gen())
    wet = reverberate(click, h)
    assert wet.numel() == click.numel() + h.numel() - 1
    assert rms(wet) == pytest.approx(rms(click), rel=1e-5)
    late = wet[100 + int(0.02 * RATE) :].pow(2).sum() / wet.pow(2).sum()
    assert late > 0.02  # energy more than 20 ms after the click: the room


def test_reverb_p_picks_that_share_of_clips() -> None:
    waves = clips(200)
    out = Augment(speeds=(1.0,), reverb_p=0.3, **QUIET).waveforms(waves, RATE, gen())
    hit = sum(o.numel() > w.numel() for o, w in zip(out, waves))
    assert 40 <= hit <= 80


def test_tempo_stretch_keeps_lengths_within_its_range() -> None:
    frames = torch.randn(8, 50, 13)
    lengths = torch.tensor([50, 40, 30, 20, 10, 5, 50, 25])
    out, new = Augment(stretch=(0.8, 1.25), time_masks=0, freq_masks=0).frames(frames, lengths, gen())
    ratio = new.float() / lengths.float()
    assert (ratio >= 0.8 - 0.1).all() and (ratio <= 1.25 + 0.1).all() and out.shape[1] == int(new.max())
    assert torch.allclose(out[0, 0], frames[0, 0]) and torch.allclose(out[0, int(new[0]) - 1], frames[0, 49])


def test_spec_augment_masks_respect_their_widths_and_clip_lengths() -> None:
    B, T, F = 64, 40, 13
    frames = torch.randn(B, T, F) + 5.0  # no value is 0 before masking
    lengths = torch.randint(10, T + 1, (B,))
    aug = Augment(stretch=(1.0, 1.0), time_masks=1, time_mask_frac=0.2, freq_masks=1, freq_mask_width=3)
    out, new = aug.frames(frames, lengths, gen())
    assert torch.equal(new, lengths)
    zero = out == 0
    rows = zero.all(dim=1)  # (B, F): bins masked over all frames
    cols = zero.all(dim=2)  # (B, T): frames masked over all bins
    assert (rows.sum(1) <= 3).all() and (rows.sum(1) > 0).any()
    for b in range(B):
        masked = cols[b].nonzero().flatten()
        assert masked.numel() <= 0.2 * int(lengths[b])
        assert masked.numel() == 0 or int(masked.max()) < int(lengths[b])  # inside the clip
    assert torch.equal(out[~zero], frames[~zero])  # nothing else changes


def test_feature_axis_warp_identity_and_stretch() -> None:
    frames = torch.arange(10.0).expand(2, 3, 10)
    assert torch.equal(Augment(warp=(1.0, 1.0)).warp_bins(frames, gen()), frames)
    warped = Augment(warp=(2.0, 2.0)).warp_bins(frames, gen())
    assert torch.allclose(warped[0, 0], torch.arange(10.0) / 2)  # bin f reads bin f / 2
