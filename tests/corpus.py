"""A corpus of bad audio inputs, each paired with the typed error ``read_audio`` must raise.

``build_bad_corpus(folder)`` writes every case into ``folder`` (a few hundred KiB in all,
well under a second) so that any test reading audio can check it refuses them the same way.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from audioseq.errors import (
    AudioError,
    AudioTooLongError,
    EmptyAudioError,
    NonFiniteAudioError,
    UnreadableAudioError,
)

Case = tuple[Path, type[AudioError]]


def wav_bytes(
    samples: bytes = b"",
    *,
    sample_rate: int = 16000,
    channels: int = 1,
    bits: int = 16,
    codec: int = 1,
    data_bytes: int | None = None,
    extra_chunks: bytes = b"",
) -> bytes:
    """A canonical RIFF WAV: header (+ ``extra_chunks`` before ``data``) then ``samples``.

    ``data_bytes`` is what the data chunk claims (default: ``len(samples)``), so a header
    can lie about how much audio follows.
    """
    block_align = channels * bits // 8
    claimed = len(samples) if data_bytes is None else data_bytes
    fmt = struct.pack(
        "<HHIIHH", codec, channels, sample_rate, sample_rate * block_align, block_align, bits
    )
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + extra_chunks
        + b"data"
        + struct.pack("<I", claimed)
        + samples
    )
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


def _pcm16(seconds: float, sample_rate: int = 16000, channels: int = 1) -> bytes:
    frames = int(seconds * sample_rate)
    rng = np.random.default_rng(0)
    return rng.integers(-3000, 3000, size=(frames, channels), dtype="<i2").tobytes()


def _write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def _float_wav(folder: Path, name: str, bad_value: float) -> Path:
    samples = np.zeros((1600, 2), dtype=np.float32)
    samples[800, 1] = bad_value
    path = folder / name
    sf.write(path, samples, 16000, subtype="FLOAT")
    return path


def _hour_of_silence_flac(folder: Path) -> Path:
    # Written block by block: an hour of 8 kHz int16 silence compresses to ~90 KiB.
    path = folder / "one_hour_silence.flac"
    block = np.zeros(8000 * 600, dtype=np.int16)
    with sf.SoundFile(path, "w", 8000, 1, subtype="PCM_16", format="FLAC") as out:
        for _ in range(6):
            out.write(block)
    return path


def _rf64_claiming(folder: Path, data_bytes: int) -> Path:
    """An RF64 file whose ds64 chunk claims ``data_bytes`` of 16 kHz mono int16 audio."""
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    ds64 = struct.pack("<QQQI", data_bytes + 100, data_bytes, data_bytes // 2, 0)
    content = (
        b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
        + b"ds64" + struct.pack("<I", len(ds64)) + ds64
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", 0xFFFFFFFF) + _pcm16(0.05)
    )  # fmt: skip
    return _write(folder, "rf64_claims_1tb.wav", content)


def _cut_in_half(folder: Path, name: str, fmt: str) -> Path:
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    whole = folder / f"whole_{name}"
    sf.write(whole, tone, 16000, format=fmt)
    content = whole.read_bytes()
    whole.unlink()
    return _write(folder, name, content[: len(content) // 2])


def _directory(folder: Path) -> Path:
    path = folder / "a_directory.wav"
    path.mkdir()
    return path


_CASES: dict[str, Callable[[Path], Case]] = {
    "missing_file": lambda d: (d / "no_such_file.wav", UnreadableAudioError),
    "directory": lambda d: (_directory(d), UnreadableAudioError),
    "empty_file": lambda d: (_write(d, "empty.wav", b""), EmptyAudioError),
    "random_bytes": lambda d: (
        _write(d, "random.wav", np.random.default_rng(1).bytes(4096)),
        UnreadableAudioError,
    ),
    "text_renamed_wav": lambda d: (
        _write(d, "notes.wav", b"This is a text file, not a recording.\n" * 20),
        UnreadableAudioError,
    ),
    "riff_but_not_wave": lambda d: (
        _write(d, "movie.wav", b"RIFF" + struct.pack("<I", 1000) + b"AVI " + bytes(1000)),
        UnreadableAudioError,
    ),
    "header_only": lambda d: (_write(d, "header_only.wav", wav_bytes()), EmptyAudioError),
    "truncated_in_fmt": lambda d: (
        _write(d, "cut_in_fmt.wav", wav_bytes(_pcm16(0.1))[:30]),
        UnreadableAudioError,
    ),
    "truncated_before_data": lambda d: (
        _write(d, "cut_before_data.wav", wav_bytes(_pcm16(0.1))[:40]),
        UnreadableAudioError,
    ),
    "truncated_data": lambda d: (
        _write(d, "cut_data.wav", wav_bytes(_pcm16(1.0))[:44 + 1000]),
        UnreadableAudioError,
    ),
    "zero_sample_rate": lambda d: (
        _write(d, "zero_rate.wav", wav_bytes(_pcm16(0.1), sample_rate=0)),
        EmptyAudioError,
    ),
    "zero_channels": lambda d: (
        _write(d, "zero_channels.wav", wav_bytes(_pcm16(0.1), channels=0)),
        EmptyAudioError,
    ),
    "absurd_sample_rate": lambda d: (
        _write(d, "1.6_ghz.wav", wav_bytes(_pcm16(0.1), sample_rate=1_644_175_168)),
        UnreadableAudioError,
    ),
    "many_channels": lambda d: (
        _write(d, "100_channels.wav", wav_bytes(_pcm16(0.01, channels=100), channels=100)),
        UnreadableAudioError,
    ),
    "nan_float": lambda d: (_float_wav(d, "nan.wav", float("nan")), NonFiniteAudioError),
    "inf_float": lambda d: (_float_wav(d, "inf.wav", float("-inf")), NonFiniteAudioError),
    "one_hour_flac": lambda d: (_hour_of_silence_flac(d), AudioTooLongError),
    "wav_claims_4gb": lambda d: (
        _write(d, "claims_4gb.wav", wav_bytes(_pcm16(0.05), data_bytes=0xFFFFFFFF)),
        AudioTooLongError,
    ),
    "rf64_claims_1tb": lambda d: (_rf64_claiming(d, 2**40), AudioTooLongError),
    "truncated_flac": lambda d: (_cut_in_half(d, "cut.flac", "FLAC"), UnreadableAudioError),
    "truncated_ogg": lambda d: (_cut_in_half(d, "cut.ogg", "OGG"), UnreadableAudioError),
}
BAD_CASES = tuple(_CASES)


def build_bad_corpus(folder: Path) -> dict[str, tuple[Path, type[AudioError]]]:
    """Write every bad case into ``folder``: case name -> (path, error ``read_audio`` raises)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {name: make(folder) for name, make in _CASES.items()}
