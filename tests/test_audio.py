"""Decoding and validation of clips: the bad-input corpus, good inputs, and shape properties."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from hypothesis import given, settings
from hypothesis import strategies as st

from audioseq import audio
from audioseq.audio import (
    AudioInfo,
    AudioLimits,
    audio_info,
    check_min_samples,
    read_audio,
    resample,
    resample_rows,
    resampled_length,
    source_name,
)
from audioseq.errors import (
    AudioError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    NonFiniteAudioError,
    UnreadableAudioError,
)
from corpus import BAD_CASES, build_bad_corpus, wav_bytes

RATES = (8000, 11025, 16000, 22050, 44100, 48000)


def _tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(signal: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal.numpy()))
    return float(np.argmax(spectrum) * rate / len(signal))


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, type]]:
    return build_bad_corpus(tmp_path_factory.mktemp("bad_audio"))


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything is decoded: refusals must come from the header."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("soundfile.read was called")

    monkeypatch.setattr(audio.sf, "read", refuse)


# --- the bad-input corpus --------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_corpus_gives_exactly_the_expected_error(
    bad_corpus: dict[str, tuple[Path, type]], case: str
) -> None:
    path, expected = bad_corpus[case]
    with pytest.raises(AudioError) as caught:
        read_audio(path, 16000)
    assert type(caught.value) is expected, f"{case}: {caught.value!r}"
    assert caught.value.source == str(path)
    assert str(path) in str(caught.value)
    assert caught.value.reason  # a plain-words reason, not an empty message


def test_corpus_covers_every_error_kind(bad_corpus: dict[str, tuple[Path, type]]) -> None:
    kinds = {expected for _, expected in bad_corpus.values()}
    assert kinds == {UnreadableAudioError, EmptyAudioError, NonFiniteAudioError, AudioTooLongError}


@pytest.mark.parametrize("case", ["one_hour_flac", "wav_claims_4gb", "rf64_claims_1tb"])
def test_too_long_is_refused_from_the_header(
    bad_corpus: dict[str, tuple[Path, type]], case: str, no_decoding: None
) -> None:
    with pytest.raises(AudioTooLongError, match="600 s limit"):
        read_audio(bad_corpus[case][0], 16000)


def test_truncated_wav_message_gives_both_sizes(bad_corpus: dict[str, tuple[Path, type]]) -> None:
    with pytest.raises(UnreadableAudioError) as caught:
        read_audio(bad_corpus["truncated_data"][0], 16000)
    assert caught.value.reason == "truncated: header says 32000 bytes of audio, file holds 1000"


def test_truncation_is_caught_although_libsndfile_clamps(
    bad_corpus: dict[str, tuple[Path, type]],
) -> None:
    # libsndfile decodes the 500 frames that are there and reports nothing wrong.
    samples, _ = sf.read(bad_corpus["truncated_data"][0])
    assert len(samples) == 500
    with pytest.raises(UnreadableAudioError, match="truncated"):
        audio_info(bad_corpus["truncated_data"][0])


def test_a_3600_second_limit_lets_the_hour_through_to_decoding(
    bad_corpus: dict[str, tuple[Path, type]],
) -> None:
    clip = read_audio(bad_corpus["one_hour_flac"][0], 8000, AudioLimits(max_seconds=3600))
    assert clip.shape == (8000 * 3600,) and not clip.any()


def test_limits_on_channels_and_file_size(tmp_path: Path, no_decoding: None) -> None:
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_bytes(bytes(4000), channels=2))
    with pytest.raises(UnreadableAudioError, match="2 channels"):
        read_audio(path, 16000, AudioLimits(max_channels=1))
    with pytest.raises(AudioTooLongError, match="GiB"):
        read_audio(path, 16000, AudioLimits(max_file_bytes=1000))
    with pytest.raises(AudioTooLongError, match="0.06 s of audio, over the 0.05 s limit"):
        read_audio(path, 16000, AudioLimits(max_seconds=0.05))  # 1000 frames: 62.5 ms
    with pytest.raises(UnreadableAudioError, match="at most 1"):
        read_audio((np.zeros((2, 100)), 8000), 8000, AudioLimits(max_channels=1))


def test_name_overrides_the_source_in_messages(bad_corpus: dict[str, tuple[Path, type]]) -> None:
    with pytest.raises(NonFiniteAudioError) as caught:
        read_audio(bad_corpus["nan_float"][0], 16000, name="speaker3/take1")
    assert caught.value.source == "speaker3/take1"
    assert str(caught.value).startswith("speaker3/take1: ")


@pytest.mark.parametrize(
    ("source", "expected", "words"),
    [
        ((np.zeros((2, 3, 4)), 8000), UnreadableAudioError, "shape"),
        ((np.array(["a", "b"]), 8000), UnreadableAudioError, "dtype"),
        ((np.ones(8) + 1j, 8000), UnreadableAudioError, "dtype"),
        ((torch.ones(8, dtype=torch.bool), 8000), UnreadableAudioError, "dtype"),
        (([1.0, [2.0, 3.0]], 8000), UnreadableAudioError, "numeric"),
        ((np.ones(8), "fast"), UnreadableAudioError, "number"),
        ((np.ones(8), 22050.5), UnreadableAudioError, "whole number"),
        ((np.ones(8), 0), EmptyAudioError, "0 Hz"),
        ((np.ones(8), -16000), EmptyAudioError, "-16000 Hz"),
        ((np.zeros(0), 8000), EmptyAudioError, "no samples"),
        ((np.zeros((2, 0)), 8000), EmptyAudioError, "no samples"),
        ((np.array([0.0, np.nan, np.inf]), 8000), NonFiniteAudioError, "1 NaN and 1 infinite"),
        ((torch.full((2, 50), float("nan")), 8000), NonFiniteAudioError, "100 NaN"),
        ((np.zeros(8000 * 601, dtype=np.float32), 8000), AudioTooLongError, "601.00 s"),
    ],
)
def test_bad_waveforms(source: tuple, expected: type[AudioError], words: str) -> None:
    with pytest.raises(AudioError, match=words) as caught:
        read_audio(source, 16000)
    assert type(caught.value) is expected
    assert caught.value.source == "<waveform>"


def test_sources_that_are_not_clips_are_type_errors() -> None:
    with pytest.raises(TypeError):
        read_audio(np.zeros(100), 16000)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        read_audio((np.zeros(100), 8000, "extra"), 16000)  # type: ignore[arg-type]


def test_check_min_samples_message() -> None:
    check_min_samples(torch.zeros(200), 200, 8000, "ok.wav")
    with pytest.raises(AudioTooShortError) as caught:
        check_min_samples(torch.zeros(12), 200, 8000, "short.wav")
    assert str(caught.value) == (
        "short.wav: clip has 12 samples (1.5 ms); at least 200 (25 ms) are needed"
    )


# --- good inputs -----------------------------------------------------------------------


def test_stereo_file_is_mixed_down_to_the_channel_mean(tmp_path: Path) -> None:
    left, right = _tone(440, 0.25, 16000), _tone(1000, 0.25, 16000, amplitude=0.25)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", left, 16000, subtype="FLOAT")
    stereo = read_audio(tmp_path / "stereo.wav", 16000)
    assert stereo.dtype == torch.float32 and stereo.shape == (4000,)
    np.testing.assert_allclose(stereo.numpy(), (left + right) / 2, atol=1e-7)
    np.testing.assert_array_equal(read_audio(str(tmp_path / "mono.wav"), 16000).numpy(), left)


def test_integer_pcm_is_scaled_to_unit_range(tmp_path: Path) -> None:
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    sf.write(tmp_path / "pcm.wav", pcm, 8000, subtype="PCM_16")
    expected = pcm / 32768.0
    np.testing.assert_allclose(read_audio(tmp_path / "pcm.wav", 8000).numpy(), expected)
    np.testing.assert_allclose(read_audio((pcm, 8000), 8000).numpy(), expected)
    unsigned = np.array([0, 128, 255], dtype=np.uint8)
    np.testing.assert_allclose(read_audio((unsigned, 8000), 8000).numpy(), [-1, 0, 127 / 128])


def test_channels_first_and_channels_last_agree() -> None:
    rng = np.random.default_rng(0)
    channels_first = rng.uniform(-1, 1, size=(3, 1000)).astype(np.float32)
    a = read_audio((channels_first, 16000), 16000)
    b = read_audio((channels_first.T.copy(), 16000), 16000)
    c = read_audio((torch.from_numpy(channels_first), 16000), 16000)
    d = read_audio((torch.from_numpy(channels_first).to(torch.bfloat16), 16000), 16000)
    assert a.shape == (1000,)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(a, d, atol=1e-2, rtol=0)
    np.testing.assert_allclose(a.numpy(), channels_first.mean(axis=0), atol=1e-6)


def test_the_result_does_not_alias_the_callers_array() -> None:
    waveform = np.zeros(100, dtype=np.float32)
    clip = read_audio((waveform, 16000), 16000)
    clip += 1
    assert not waveform.any()


def test_resampling_8k_to_16k_keeps_a_1khz_tone(tmp_path: Path) -> None:
    tone = _tone(1000, 1.0, 8000)
    sf.write(tmp_path / "tone.wav", tone, 8000)
    clip = read_audio(tmp_path / "tone.wav", 16000)
    assert clip.shape == (16000,)
    assert _peak_hz(clip, 16000) == pytest.approx(1000, abs=2)
    from_array = read_audio((tone, 8000), 16000)
    torch.testing.assert_close(clip, from_array, atol=1e-4, rtol=0)


def test_coprime_rates_resample_through_a_small_kernel() -> None:
    # 44101 and 16000 share no factor: an exact kernel would need 16000 x 44101 taps.
    clip = resample(torch.from_numpy(_tone(1000, 1.0, 44101)), 44101, 16000)
    assert abs(len(clip) - 16000) <= 16  # within 0.1 %
    assert _peak_hz(clip, 16000) == pytest.approx(1000, abs=2)


@pytest.mark.parametrize(("orig", "new"), [(8000, 16000), (44100, 8000), (48000, 16000), (44101, 16000), (22050, 8000)])
def test_resampled_length_is_what_resampling_gives_and_rows_keep_their_samples_in_a_batch(orig: int, new: int) -> None:
    """Coprime rates included, where the ratio is rounded; a clip's row of a padded batch
    equals the clip resampled alone, cut at its own resampled end."""
    g = torch.Generator().manual_seed(0)
    for n in (1, 7, orig // 10, orig // 3 + 1):
        assert int(resampled_length(torch.tensor(n), orig, new)) == resample(torch.randn(n, generator=g), orig, new).numel()
    short, long = torch.randn(orig // 5, generator=g), torch.randn(orig // 2, generator=g)
    batch = torch.zeros(2, long.numel())
    batch[0, : short.numel()], batch[1] = short, long
    rows = resample_rows(batch, orig, new)
    alone = resample(short, orig, new)
    assert rows.shape == (2, int(resampled_length(torch.tensor(long.numel()), orig, new)))
    torch.testing.assert_close(rows[0, : alone.numel()], alone, atol=1e-5, rtol=0)
    assert not rows[0, alone.numel() :].any()


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])  # read directly, and by libsndfile
def test_a_decoder_running_out_of_memory_is_a_too_long_clip(
    subtype: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    path = tmp_path / "a.wav"
    sf.write(path, np.linspace(-0.5, 0.5, 800), 16000, subtype=subtype)
    monkeypatch.setattr(audio.sf, "read", out_of_memory)
    monkeypatch.setattr(audio, "_read_pcm16", out_of_memory)
    with pytest.raises(AudioTooLongError, match="memory"):
        read_audio(path, 16000)


@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 8000), (22050, 8000), (8000, 16000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_resample_gives_torchaudios_samples_with_its_kernel_kept(rates: tuple[int, int], dtype: torch.dtype) -> None:
    orig, new = rates
    x = torch.randn(2, orig // 10, dtype=dtype)
    expected = torchaudio.functional.resample(x, orig, new)
    for _ in range(2):  # the kernel is built by the first call, reused by the second
        got = resample(x, orig, new)
        assert got.dtype == dtype and torch.equal(got, expected)


def test_resample_is_identity_for_equal_rates_and_keeps_leading_dims() -> None:
    x = torch.randn(2, 3, 441)
    assert resample(x, 16000, 16000) is x
    assert resample(x, 44100, 16000).shape == (2, 3, 160)


@pytest.mark.parametrize(("fmt", "tolerance"), [("FLAC", 1e-4), ("OGG", 0.1), ("MP3", 0.1)])
def test_compressed_round_trip(tmp_path: Path, fmt: str, tolerance: float) -> None:
    tone = _tone(1000, 0.5, 16000)
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, tone, 16000, format=fmt)
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (16000, 1)
    clip = read_audio(path, 16000)
    assert abs(len(clip) - len(tone)) <= 1152  # an MP3 frame of padding at most
    assert _peak_hz(clip, 16000) == pytest.approx(1000, abs=4)
    if fmt == "FLAC":
        np.testing.assert_allclose(clip.numpy(), tone, atol=tolerance)
    else:
        assert float(np.abs(clip.numpy()).max()) == pytest.approx(0.5, abs=tolerance)


def test_audio_info_reads_wav_headers(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros((22050, 2), dtype=np.float32), 44100, subtype="FLOAT")
    assert audio_info(tmp_path / "a.wav") == AudioInfo(44100, 22050, 2, 0.5)
    sf.write(tmp_path / "b.wav", np.zeros(800, dtype=np.float32), 8000, format="RF64")
    assert audio_info(tmp_path / "b.wav") == AudioInfo(8000, 800, 1, 0.1)
    assert read_audio(tmp_path / "b.wav", 16000).shape == (1600,)


def test_wav_with_odd_sized_chunk_before_data(tmp_path: Path) -> None:
    # A 3-byte LIST chunk is followed by one pad byte; misreading it loses the data chunk.
    samples = np.array([1000, -1000, 2000], dtype="<i2")
    extra = b"LIST" + (3).to_bytes(4, "little") + b"abc\x00"
    path = tmp_path / "tagged.wav"
    path.write_bytes(wav_bytes(samples.tobytes(), extra_chunks=extra))
    assert audio_info(path) == AudioInfo(16000, 3, 1, 3 / 16000)
    np.testing.assert_allclose(read_audio(path, 16000).numpy(), samples / 32768)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file names are bytes")
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_a_file_whose_name_is_not_utf8_is_read(tmp_path: Path, suffix: str) -> None:
    path = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9" + suffix.encode())  # a Latin-1 name: lone surrogates
    sf.write(os.fsencode(path), np.full(800, 0.5, dtype=np.float32) * np.sin(np.arange(800)), 8000)
    assert audio.audio_info(path).frames == 800
    assert audio.read_audio(path, 8000).numel() == 800


def test_source_name() -> None:
    assert source_name(Path("/data/a.wav")) == "/data/a.wav"
    assert source_name("b.flac") == "b.flac"
    assert source_name((np.zeros(3), 8000)) == "<waveform>"


# --- properties ------------------------------------------------------------------------


def _encoded(fmt: str, subtype: str) -> bytes:
    out = io.BytesIO()
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, size=(800, 2))
    sf.write(out, samples, 8000, format=fmt, subtype=subtype)
    return out.getvalue()


_ENCODED = {
    fmt: _encoded(fmt, subtype)
    for fmt, subtype in [
        ("WAV", "PCM_16"), ("WAV", "FLOAT"), ("RF64", "PCM_16"), ("W64", "PCM_16"),
        ("AIFF", "PCM_16"), ("AU", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"),
    ]
}  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(
    fmt=st.sampled_from(sorted(_ENCODED)),
    edits=st.lists(st.tuples(st.integers(0, 79), st.integers(0, 255)), min_size=1, max_size=4),
    keep=st.none() | st.integers(0, 4000),
)
def test_damaged_headers_only_ever_raise_audio_errors(
    tmp_path_factory: pytest.TempPathFactory,
    fmt: str,
    edits: list[tuple[int, int]],
    keep: int | None,
) -> None:
    content = bytearray(_ENCODED[fmt])
    for position, value in edits:
        content[position] = value
    path = tmp_path_factory.mktemp("damaged") / "clip"
    path.write_bytes(bytes(content[:keep]))
    try:
        clip = read_audio(path, 16000)
    except AudioError as error:
        assert error.source == str(path)
    else:
        assert clip.dtype == torch.float32 and clip.ndim == 1 and torch.isfinite(clip).all()


@settings(max_examples=30, deadline=None)
@given(
    frames=st.integers(1, 5000),
    orig=st.sampled_from(RATES),
    target=st.sampled_from(RATES),
    channels=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_any_written_wav_reads_as_finite_mono_at_the_target_rate(
    tmp_path_factory: pytest.TempPathFactory,
    frames: int,
    orig: int,
    target: int,
    channels: int,
    seed: int,
) -> None:
    samples = np.random.default_rng(seed).uniform(-1, 1, size=(frames, channels))
    path = tmp_path_factory.mktemp("prop") / "clip.wav"
    sf.write(path, samples.astype(np.float32), orig, subtype="PCM_16")
    clip = read_audio(path, target)
    assert clip.dtype == torch.float32 and clip.ndim == 1
    assert abs(clip.shape[0] - round(frames * target / orig)) <= 1
    assert torch.isfinite(clip).all()


# --- plain 16-bit WAV: read directly, exactly as libsndfile reads it -------------------------------


def _pcm16_wavs(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for channels in (1, 2, 6):
        samples = rng.integers(-32768, 32768, size=(1001, channels)).astype(np.int16)
        samples[:4, 0] = [-32768, 32767, 0, -1]  # both ends of the range
        plain = folder / f"plain-{channels}.wav"
        sf.write(plain, samples, 8000, subtype="PCM_16")
        tagged = folder / f"tagged-{channels}.wav"  # a LIST chunk after the data, as editors write
        with sf.SoundFile(tagged, "w", 8000, channels, "PCM_16") as f:
            f.title = "a title"
            f.write(samples)
        paths += [plain, tagged]
    return paths


def test_plain_16_bit_wavs_decode_bit_for_bit_as_libsndfile_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _pcm16_wavs(tmp_path)
    fsdd = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
    paths += sorted(fsdd.glob("*.wav"))[:50]  # real recordings too, where they are
    read = audio._read_pcm16
    taken = []
    monkeypatch.setattr(audio, "_read_pcm16", lambda *args: taken.append(args) or read(*args))
    for path in paths:
        fast, rate = audio._decode_file(path, AudioLimits(), str(path))
        expected, expected_rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == expected_rate and fast.dtype == np.float32
        np.testing.assert_array_equal(fast, expected)
    assert len(taken) == len(paths)  # every one of them took the direct path


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT", "PCM_U8", "ULAW"])
def test_other_wav_encodings_go_through_libsndfile(subtype: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, np.linspace(-0.5, 0.5, 800), 8000, subtype=subtype)
    monkeypatch.setattr(audio, "_read_pcm16", lambda *args: pytest.fail("not plain 16-bit PCM"))
    got, _ = audio._decode_file(path, AudioLimits(), str(path))
    np.testing.assert_array_equal(got, sf.read(path, dtype="float32", always_2d=True)[0])
