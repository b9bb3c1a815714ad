"""Decode and validate clips: every refusal is a typed :class:`AudioError` naming the clip.

Files are checked from their header before any sample is decoded, so a clip that is too
long, has too many channels or is damaged costs a few hundred bytes of I/O, not gigabytes.
WAV headers (RIFF, RIFX, RF64, BW64) are parsed here rather than by libsndfile, because
libsndfile silently clamps a ``data`` chunk that claims more bytes than the file holds: a
truncated or lying WAV would otherwise decode as a shorter clip without any warning. Plain
16-bit PCM WAV, the common case, is then read directly from the data chunk the header walk
found, scaled as libsndfile scales it (the same float32 values, tested); every other encoding
and container is decoded by libsndfile.

Every clip comes out as mono float32 at the requested rate: channels are averaged, then the
signal is resampled with :func:`torchaudio.functional.resample`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import stat
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional
import torchaudio.transforms

from .dataset import Audio
from .errors import (
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    UnreadableAudioError,
    UnsupportedInputError,
)
from .suffixes import AUDIO_SUFFIXES, has_audio

# First four bytes of a WAV file -> struct byte order of its chunk sizes and fmt fields.
_WAV_MAGIC = {b"RIFF": "<", b"RIFX": ">", b"RF64": "<", b"BW64": "<"}
# RF64/BW64 put this in a 32-bit size field whose real value lives in the ds64 chunk.
_SIZE_IN_DS64 = 0xFFFFFFFF
# Real WAVs carry a handful of chunks before the audio; a long run of tiny chunks is
# garbage, and bounding the walk keeps a hostile header from costing millions of reads.
_MAX_CHUNKS = 1024
# Codecs where one block_align-sized block holds exactly one frame: PCM, IEEE float,
# A-law, mu-law and WAVE_FORMAT_EXTENSIBLE (whose sub-formats in practice are PCM or float).
_WAVE_FORMAT_PCM = 0x0001
_ONE_FRAME_PER_BLOCK = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}
# What soundfile raises for a file it cannot open or decode (LibsndfileError is a
# RuntimeError; a failed seek inside a damaged FLAC surfaces as a plain RuntimeError).
_DECODE_ERRORS = (RuntimeError, OSError, ValueError, TypeError)
# No real recording is sampled faster; a header saying so is damaged (and would make
# resampling and the decode buffer explode).
_MAX_SAMPLE_RATE = 768_000
# torchaudio's sinc kernel has about new x orig taps once the rates are divided by their
# gcd: fine for 11025 -> 16000 (640 x 441), gigabytes for coprime rates like 44101 -> 16000.
_MAX_KERNEL_TERMS = 1 << 20


@dataclasses.dataclass(frozen=True)
class AudioLimits:
    """What :func:`read_audio` refuses, checked from the header before decoding."""

    max_seconds: float = 600.0  # longer clips: AudioTooLongError
    max_channels: int = 64  # more channels: UnreadableAudioError (no sensible mix-down)
    max_file_bytes: int = 2 * 1024**3  # bigger files are refused unopened: AudioTooLongError


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about its audio."""

    sample_rate: int  # Hz
    frames: int  # samples per channel (approximate for compressed codecs)
    channels: int
    duration: float  # seconds


def source_name(source: Any) -> str:
    """The name of a clip in messages: its path, ``"<waveform>"`` for an array (with or without
    its rate), else the input's type (``"<NoneType>"``)."""
    if isinstance(source, (str, bytes, os.PathLike)):
        return os.fsdecode(source)
    if isinstance(source, (tuple, np.ndarray, torch.Tensor)):
        return "<waveform>"
    return f"<{type(source).__name__}>"


def _not_a_clip(source: Any) -> str:
    """Why an input that is neither a path nor a (waveform, sample_rate) pair cannot be read."""
    if isinstance(source, (np.ndarray, torch.Tensor, list)):
        return (f"a bare {type(source).__name__} has no sample rate: pass (waveform, sample_rate), "
                "e.g. (samples, 16000)")
    return f"expected a path or a (waveform, sample_rate) pair, got {type(source).__name__}"


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Describe a file from its header alone, without decoding any sample.

    Raises:
        UnreadableAudioError: missing, not a file, unreadable, not audio, a damaged header,
            or a WAV whose data chunk claims more bytes than the file holds.
        EmptyAudioError: an empty file, or a header giving 0 Hz or 0 channels.
    """
    name = source_name(path)
    info, truncation, _ = _read_header(path, name, _file_size(path, name))
    if truncation:
        raise UnreadableAudioError(name, truncation)
    return info


def read_audio(
    source: Audio,
    sample_rate: int,
    limits: AudioLimits = AudioLimits(),
    name: str | None = None,
) -> torch.Tensor:
    """Decode and validate one clip as mono float32 at ``sample_rate`` Hz.

    Args:
        source: a file path (any format libsndfile reads: WAV, FLAC, OGG, MP3, ...) or a
            ``(waveform, sample_rate)`` tuple. The waveform is numpy or torch, ``(N,)`` or
            2-D; for 2-D the smaller dimension is the channels, so both ``(C, N)`` and
            soundfile's ``(N, C)`` work (a square array is read as ``(C, N)``). Integer
            waveforms are PCM and scaled to [-1, 1] by their type's full scale, as soundfile
            does for files.
        sample_rate: the rate of the result, in Hz.
        limits: what to refuse before decoding.
        name: the clip's name in error messages (default: the path, or ``"<waveform>"``).

    Returns:
        A CPU float32 tensor ``(N',)`` with N' = ceil(N * sample_rate / source rate):
        the mean over channels, resampled when the source rate differs.

    Raises:
        UnreadableAudioError: not audio, damaged or truncated, more than
            ``limits.max_channels`` channels, or a waveform that is not a 1-D/2-D numeric array.
        EmptyAudioError: no samples, or a sample rate / channel count of 0.
        AudioTooLongError: longer than ``limits.max_seconds`` or bigger than
            ``limits.max_file_bytes``.
        NonFiniteAudioError: any NaN or infinite sample.
        UnsupportedInputError: ``source`` is neither a path nor a ``(waveform, sample_rate)``
            pair (a ``TypeError`` as well as an ``UnreadableAudioError``).
    """
    if sample_rate <= 0:
        raise ValueError(f"target sample rate must be positive, got {sample_rate}")
    label = name if name is not None else source_name(source)
    if isinstance(source, tuple):
        samples, rate = _waveform_samples(source, limits, label)
    elif isinstance(source, (str, bytes, os.PathLike)):
        samples, rate = _decode_file(source, limits, label)
    else:
        raise UnsupportedInputError(label, _not_a_clip(source))
    return resample(_mix_down(samples, label), rate, sample_rate)


def resample(waveform: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample ``(..., N)`` at ``orig_sr`` Hz to ``(..., ceil(N * new_sr / orig_sr))``.

    Returns ``waveform`` itself when the rates are equal. Rates whose reduced ratio has
    huge terms (e.g. 44101 -> 16000) are resampled at the nearest ratio with terms under
    about 1000, which changes pitch and length by under 0.1 % (2 cents). For float32 on CPU
    the sinc kernels of the last few ratios are kept (:func:`_resampler`); the samples are
    those ``torchaudio.functional.resample`` gives.
    """
    if orig_sr == new_sr:
        return waveform
    ratio = _ratio(orig_sr, new_sr)
    if waveform.dtype == torch.float32 and waveform.device.type == "cpu":
        return _resampler(ratio.denominator, ratio.numerator)(waveform)
    return torchaudio.functional.resample(waveform, ratio.denominator, ratio.numerator)


def _ratio(orig_sr: int, new_sr: int) -> Fraction:
    """The ratio ``resample`` resamples at: new/orig, or the nearest with terms under about 1000."""
    ratio = Fraction(new_sr, orig_sr)
    if ratio.numerator * ratio.denominator > _MAX_KERNEL_TERMS:
        ratio = ratio.limit_denominator(max(1, math.isqrt(int(_MAX_KERNEL_TERMS / ratio))))
    return ratio


def resampled_length(num_samples: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Samples ``resample`` gives for clips of ``num_samples`` (LongTensor, any shape)."""
    n = torch.as_tensor(num_samples, dtype=torch.long)
    if orig_sr == new_sr:
        return n
    ratio = _ratio(orig_sr, new_sr)
    return (n * ratio.numerator + ratio.denominator - 1) // ratio.denominator


def resample_rows(waveform: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample a batch of clips ``(B, N)``, each zero-padded after its end, to
    ``(B, resampled_length(N))``, each row zeroed past its own clip's resampled end.

    A row's clip is taken to end at its last non-zero sample. Resampling rings a few samples
    past the end of a clip, into whatever zero padding follows it in a batch, and a clip alone
    has none there; cutting every row the same way keeps a clip's samples the same in any batch.
    """
    if orig_sr == new_sr:
        return waveform
    out = resample(waveform, orig_sr, new_sr)
    index = torch.arange(waveform.shape[-1], device=waveform.device)
    ends = torch.where(waveform != 0, index + 1, torch.zeros_like(index)).amax(dim=-1, keepdim=True)  # (B, 1)
    keep = torch.arange(out.shape[-1], device=out.device) < resampled_length(ends, orig_sr, new_sr)
    return out * keep


@functools.lru_cache(maxsize=8)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    """The resampler for one reduced ratio, its float32 kernel built once: building it took
    longer than applying it to a second of audio (22,050 -> 8,000 Hz: 0.97 against 0.20 ms a
    second of audio). At most 8 kept, a few KB each for common rates (4 MB at the term limit)."""
    return torchaudio.transforms.Resample(orig, new, dtype=torch.float32)


def check_not_silent(waveform: torch.Tensor, silence_dbfs: float | None, source: str) -> None:
    """Refuse a clip whose loudest sample stays below ``silence_dbfs`` (None: accept any level),
    a constant offset left out: a microphone's DC bias over silence is not sound.

    Raises:
        SilentAudioError: e.g. "the clip is silent (its loudest sample is below -60 dBFS)".
    """
    if silence_dbfs is None:
        return
    threshold = 10 ** (silence_dbfs / 20)
    lowest, highest = (float(v) for v in torch.aminmax(waveform)) if waveform.numel() else (0.0, 0.0)
    if max(-lowest, highest) < threshold:
        raise SilentAudioError(source, f"the clip is silent (its loudest sample is below {silence_dbfs:g} dBFS)")
    # A clip spanning 2·threshold strays at least that far from any offset: only a narrower one (rare,
    # and then cheap to look at again) can be an offset over silence.
    if highest - lowest < 2 * threshold and float((waveform - waveform.mean()).abs().max()) < threshold:
        raise SilentAudioError(source, f"the clip is silent: apart from a constant offset, its loudest sample is "
                                       f"below {silence_dbfs:g} dBFS")


def check_min_samples(
    waveform: torch.Tensor, min_samples: int, sample_rate: int, source: str
) -> None:
    """Refuse a clip ``(..., N)`` at ``sample_rate`` Hz with fewer than ``min_samples``.

    Raises:
        AudioTooShortError: e.g. "clip has 12 samples (1.5 ms); at least 200 (25 ms)
            are needed".
    """
    count = int(waveform.shape[-1])
    if count < min_samples:
        raise AudioTooShortError(
            source,
            f"clip has {count} samples ({_ms(count, sample_rate)}); "
            f"at least {min_samples} ({_ms(min_samples, sample_rate)}) are needed",
        )


def _ms(samples: int, sample_rate: int) -> str:
    return f"{round(1000 * samples / sample_rate, 2):g} ms"


def _decode_file(
    path: str | bytes | os.PathLike[str], limits: AudioLimits, name: str
) -> tuple[np.ndarray, int]:
    """Check the header against ``limits``, then decode to ``(N, C)`` float32."""
    size = _file_size(path, name)
    if size > limits.max_file_bytes:
        gib, limit = 1024**3, limits.max_file_bytes
        raise AudioTooLongError(
            name, f"file is {size / gib:.2f} GiB, over the {limit / gib:g} GiB limit"
        )
    info, truncation, pcm16 = _read_header(path, name, size)
    if info.channels > limits.max_channels:
        most = limits.max_channels
        raise UnreadableAudioError(
            name, f"header says {info.channels} channels; at most {most} can be mixed down"
        )
    # A lying WAV header that claims hours of audio is too long before it is truncated.
    if info.duration > limits.max_seconds:
        raise AudioTooLongError(
            name,
            f"header says {info.duration:.2f} s of audio, over the {limits.max_seconds:g} s limit",
        )
    if truncation:
        raise UnreadableAudioError(name, truncation)
    try:
        # The common case, plain 16-bit PCM, is read as libsndfile reads it, without its per-file overhead.
        direct = None if pcm16 is None else _read_pcm16(path, *pcm16, info.channels)
        samples, rate = (direct, info.sample_rate) if direct is not None else sf.read(
            _sf_path(path), dtype="float32", always_2d=True)
    except _DECODE_ERRORS as exc:
        raise UnreadableAudioError(
            name, f"the audio data is damaged or cut off (libsndfile: {_reason(exc)})"
        ) from exc
    except MemoryError as exc:  # soundfile allocates all the frames a header claims at once
        raise AudioTooLongError(name, "header claims more audio than fits in memory") from exc
    if samples.shape[0] == 0:
        raise EmptyAudioError(name, "file holds no audio samples")
    return samples, int(rate)


def _sf_path(path: str | bytes | os.PathLike[str]) -> str | bytes | os.PathLike[str]:
    """The path as soundfile can open it: on POSIX its bytes, since soundfile encodes a str
    strictly and so cannot open a file whose name is not UTF-8 (``os.fsdecode``'s surrogates)."""
    return os.fsencode(path) if os.name == "posix" else path


def _file_size(path: str | bytes | os.PathLike[str], name: str) -> int:
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise UnreadableAudioError(name, "no such file") from exc
    except OSError as exc:
        raise UnreadableAudioError(name, f"cannot access the file ({exc.strerror})") from exc
    if stat.S_ISDIR(st.st_mode):
        try:  # a look at the top of the folder, not a walk of the whole tree (it may be "/")
            os.scandir(path).close()
        except OSError as exc:
            raise UnreadableAudioError(name, f"is a folder that cannot be listed ({exc.strerror})") from exc
        if has_audio(Path(os.fsdecode(path))) is not False:
            raise UnreadableAudioError(name, "is a folder, not an audio file: pass the files in it "
                                             "(`audioseq predict` searches folders)")
        raise UnreadableAudioError(name, f"is a folder with no audio file in it (looked for "
                                         f"{', '.join(sorted(AUDIO_SUFFIXES))}, hidden files left out)")
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableAudioError(name, "is not a regular file")
    if st.st_size == 0:
        raise EmptyAudioError(name, "file is empty (0 bytes)")
    return st.st_size


def _read_pcm16(path: str | bytes | os.PathLike[str], offset: int, count: int, channels: int) -> np.ndarray | None:
    """The ``count`` bytes of 16-bit little-endian PCM at ``offset`` → (N, C) float32, scaled by
    1/32768 as libsndfile scales them (bit for bit); None if the file no longer holds them."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(count)
    if len(data) != count:
        return None  # changed since its header was read: let libsndfile have its say
    return np.frombuffer(data, dtype="<i2").reshape(-1, channels).astype(np.float32) * np.float32(1 / 32768)


def _read_header(
    path: str | bytes | os.PathLike[str], name: str, size: int
) -> tuple[AudioInfo, str | None, tuple[int, int] | None]:
    """What the header says, why the file holds less audio than that (WAV only), and where
    the samples are when they are plain 16-bit little-endian PCM (offset, bytes of whole frames)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(12)
            if magic[:4] in _WAV_MAGIC and magic[8:12] == b"WAVE":
                return _read_wav_header(fh, _WAV_MAGIC[magic[:4]], size, name)
    except OSError as exc:
        raise UnreadableAudioError(name, f"cannot read the file ({exc.strerror})") from exc
    try:
        info = sf.info(_sf_path(path))
    except _DECODE_ERRORS as exc:
        raise UnreadableAudioError(
            name, f"not a recognised audio format, or a damaged header (libsndfile: {_reason(exc)})"
        ) from exc
    _check_rate_and_channels(info.samplerate, info.channels, name)
    duration = info.frames / info.samplerate
    return AudioInfo(info.samplerate, info.frames, info.channels, duration), None, None


def _read_wav_header(
    fh: BinaryIO, order: str, size: int, name: str
) -> tuple[AudioInfo, str | None, tuple[int, int] | None]:
    """Walk the chunk list after the 12-byte RIFF/RF64 preamble up to fmt and data."""
    fmt: tuple[int, ...] | None = None
    ds64_data_bytes: int | None = None
    data_start = data_bytes = None
    for _ in range(_MAX_CHUNKS):
        head = fh.read(8)
        if len(head) < 8:
            break
        chunk_id = head[:4]
        (chunk_bytes,) = struct.unpack(order + "I", head[4:])
        body_start = fh.tell()
        if chunk_id == b"ds64":
            body = fh.read(16)
            if len(body) < 16:
                raise UnreadableAudioError(name, "WAV header is cut short in its 'ds64' chunk")
            (ds64_data_bytes,) = struct.unpack("<Q", body[8:16])
        elif chunk_id == b"fmt ":
            body = fh.read(16)
            if chunk_bytes < 16 or len(body) < 16:
                raise UnreadableAudioError(name, "WAV header is cut short in its 'fmt ' chunk")
            fmt = struct.unpack(order + "HHIIHH", body)
        elif chunk_id == b"data":
            if chunk_bytes == _SIZE_IN_DS64 and ds64_data_bytes is not None:
                chunk_bytes = ds64_data_bytes
            data_start, data_bytes = body_start, chunk_bytes
            if fmt is not None:
                break
        fh.seek(body_start + chunk_bytes + (chunk_bytes & 1))  # chunks are word-aligned
    if fmt is None or data_start is None or data_bytes is None:
        missing = "'fmt '" if fmt is None else "'data'"
        raise UnreadableAudioError(name, f"WAV header has no {missing} chunk (damaged or cut off)")
    codec, channels, rate, byte_rate, block_align, bits = fmt
    _check_rate_and_channels(rate, channels, name)
    if block_align == 0:
        # libsndfile recomputes a zero block_align the same way, and decodes the file.
        block_align = channels * ((bits + 7) // 8)
    if codec in _ONE_FRAME_PER_BLOCK and block_align > 0:
        frames = data_bytes // block_align
        duration = frames / rate
    elif byte_rate > 0:
        duration = data_bytes / byte_rate  # compressed codecs only promise a byte rate
        frames = round(duration * rate)
    else:
        raise UnreadableAudioError(name, "WAV header gives neither a block size nor a byte rate")
    held = size - data_start
    truncation = None
    if data_bytes > held:
        truncation = f"truncated: header says {data_bytes} bytes of audio, file holds {held}"
    plain = codec == _WAVE_FORMAT_PCM and bits == 16 and block_align == 2 * channels and order == "<"
    pcm16 = (data_start, frames * block_align) if plain and truncation is None else None
    return AudioInfo(rate, frames, channels, duration), truncation, pcm16


def _check_rate_and_channels(rate: int, channels: int, name: str) -> None:
    """Zero rate or channels is an empty clip (EmptyAudioError), not a damaged one."""
    if rate <= 0:
        raise EmptyAudioError(name, f"sample rate is {rate} Hz")
    if rate > _MAX_SAMPLE_RATE:
        raise UnreadableAudioError(
            name, f"sample rate is {rate} Hz, above the {_MAX_SAMPLE_RATE} Hz of any recording"
        )
    if channels <= 0:
        raise EmptyAudioError(name, f"clip has {channels} channels")


def _waveform_samples(
    source: tuple[Any, ...], limits: AudioLimits, name: str
) -> tuple[np.ndarray, int]:
    """Validate a ``(waveform, sample_rate)`` pair and return ``(N, C)`` float32."""
    if len(source) != 2:
        raise UnsupportedInputError(
            name, f"expected a (waveform, sample_rate) pair, got a tuple of {len(source)} items")
    waveform, rate = source
    if isinstance(rate, (torch.Tensor, np.ndarray)) and rate.ndim == 0:
        rate = rate.item()  # a rate kept in a 0-d tensor or array
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise UnreadableAudioError(name, f"sample rate must be a number of Hz, got {rate!r}")
    if not math.isfinite(rate) or rate != int(rate):
        raise UnreadableAudioError(name, f"sample rate must be a whole number of Hz, got {rate}")
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu()
        # bfloat16 has no numpy counterpart; integer tensors stay integer to be scaled as PCM.
        waveform = (waveform.float() if waveform.is_floating_point() else waveform).numpy()
    try:
        array = np.asarray(waveform)
    except (ValueError, TypeError) as exc:
        raise UnreadableAudioError(name, "waveform is not a numeric array") from exc
    if array.dtype.kind not in "fiu":
        raise UnreadableAudioError(name, f"waveform has dtype {array.dtype}, not audio samples")
    if array.ndim not in (1, 2):
        raise UnreadableAudioError(
            name, f"waveform has shape {array.shape}; expected (N,), (C, N) or (N, C)"
        )
    if array.ndim == 1:
        array = array[:, None]
    elif array.shape[0] <= array.shape[1]:
        array = array.T  # (C, N) -> (N, C): clips are longer than they are wide
    frames, channels = array.shape
    if array.size == 0:  # (2, 0) has "0 channels", also empty
        raise EmptyAudioError(name, "waveform holds no samples")
    _check_rate_and_channels(int(rate), channels, name)
    if channels > limits.max_channels:
        raise UnreadableAudioError(
            name, f"waveform has {channels} channels; at most {limits.max_channels} can be mixed"
        )
    if frames / rate > limits.max_seconds:
        raise AudioTooLongError(
            name, f"waveform lasts {frames / rate:.2f} s, over the {limits.max_seconds:g} s limit"
        )
    if array.dtype.kind == "f":
        return array.astype(np.float32), int(rate)
    # Integers are PCM at full scale, unsigned ones offset by half, as in 8-bit WAV.
    half_scale = np.float32(2 ** (8 * array.dtype.itemsize - 1))
    offset = half_scale if array.dtype.kind == "u" else np.float32(0)
    return (array.astype(np.float32) - offset) / half_scale, int(rate)


def _mix_down(samples: np.ndarray, name: str) -> torch.Tensor:
    """``(N, C)`` float32 -> ``(N,)`` mean over channels, refusing NaN or inf."""
    if not np.isfinite(samples).all():
        nan = int(np.isnan(samples).sum())
        inf = int(np.isinf(samples).sum())
        raise NonFiniteAudioError(
            name, f"{nan} NaN and {inf} infinite sample(s); samples must be finite numbers"
        )
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(mono))


def _reason(exc: BaseException) -> str:
    # LibsndfileError's str() repeats the path; its error_string is just the reason.
    return str(getattr(exc, "error_string", exc)).strip().rstrip(".")
