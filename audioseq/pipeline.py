"""From inputs to batches of frames: parallel decoding, preprocessing, length bucketing.

Decoding runs in DataLoader worker processes; a bad clip becomes an error item, never an
exception that stops the batch. The main process keeps a bounded buffer of decoded clips,
sorts it by length and cuts it into batches, so memory stays flat however many inputs there are.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import pickle
from pathlib import PurePath
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from .audio import AudioLimits, check_min_samples, check_not_silent, read_audio, source_name
from .errors import AudioError, ParameterError, PluginError, UnreadableAudioError
from .plugins import origin
from .preprocess import Preprocess, pad_batch


@dataclasses.dataclass
class Item:
    """One decoded input: its position, its name, and a waveform or frames — or an error."""

    index: int
    source: str
    waveform: Tensor | None = None  # (N,) preprocessed, at the frontend's rate
    frames: Tensor | None = None  # (T, F), only for features that run in workers
    error: AudioError | None = None

    @property
    def cost(self) -> int:
        """Values the item holds: samples, or frames × features (grows with the clip's length)."""
        if self.frames is not None:
            return self.frames.numel()
        return self.waveform.numel() if self.waveform is not None else 0


MAX_BATCH_VALUES = 4_000_000
"""Most values in one padded batch (16 MB of float32, about 8 minutes of 8 kHz audio): many
short clips share a batch, a long one goes with few others or alone."""


T = TypeVar("T")

FEATURE_CHUNK_VALUES = 1 << 17
"""Most padded samples per feature pass on CPU (128K, 16 s of 8 kHz audio): a batch of 128
short clips in groups of this size keeps the STFT's intermediates in cache, measured 1.3-1.6x
faster than one pass over the whole batch."""


def chunk_by_values(
    things: Sequence[T], budget: int, size: Callable[[T], int], max_count: int | None = None
) -> list[list[T]]:
    """Consecutive groups whose padded size (count × largest ``size``) stays within ``budget``
    and whose count stays within ``max_count``; a thing over the budget is a group of its own.
    Returns ``[[]]`` for no things, and never an empty group otherwise."""
    groups: list[list[T]] = []
    current: list[T] = []
    largest = 0
    for thing in things:
        n = size(thing)
        if current and (len(current) == max_count or (len(current) + 1) * max(largest, n) > budget):
            groups.append(current)
            current, largest = [], 0
        current.append(thing)
        largest = max(largest, n)
    if current or not groups:
        groups.append(current)
    return groups


class Frontend(nn.Module):
    """Waveform → frames, exactly as the model was trained: decode, preprocess, features.

    ``prepare`` runs per clip (in worker processes); ``forward`` runs batched.
    """

    def __init__(self, feature: nn.Module, sample_rate: int, preprocess: Preprocess, limits: AudioLimits) -> None:
        super().__init__()
        self.feature = feature
        self.sample_rate = sample_rate
        self.preprocess = preprocess
        self.limits = limits
        self.in_workers = bool(getattr(feature, "in_workers", False))

    @functools.cached_property
    def min_samples(self) -> int:
        """Fewest samples that give one frame (found once: it is asked for every clip)."""
        n = getattr(self.feature, "min_samples", None)
        if n is not None:
            return int(n)
        def frames(n: int) -> int:
            return int(self.feature.num_frames(torch.tensor([n]))[0])

        hi = 1
        while frames(hi) < 1:
            hi *= 2
        lo = hi // 2  # frames(lo) < 1 ≤ frames(hi): bisect for the fewest samples
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if frames(mid) >= 1 else (mid, hi)
        return hi

    def prepare(self, source: Any, name: str | None = None) -> Tensor:
        """Decode, mix down, resample, preprocess and check one clip → (N,) float32."""
        name = name or source_name(source)
        return self.finish(self.decode(source, name), name)

    def decode(self, source: Any, name: str) -> Tensor:
        """Decode, mix down and resample one clip → (N,) float32 at the model's rate."""
        return read_audio(source, self.sample_rate, self.limits, name=name)

    def finish(self, waveform: Tensor, name: str) -> Tensor:
        """Check a decoded clip is not silent, preprocess it and check it is long enough for a
        frame: (N,) → (N',)."""
        check_not_silent(waveform, self.preprocess.silence_dbfs, name)
        wave = self.preprocess(waveform, self.sample_rate)
        check_min_samples(wave, self.min_samples, self.sample_rate, name)
        return wave

    def clip_frames(self, waveform: Tensor) -> Tensor:
        """(N,) → (T, F) for one clip."""
        with torch.no_grad():
            return self._checked(self.feature(waveform.unsqueeze(0)), waveform.numel()).squeeze(0)

    def _checked(self, frames: Tensor, longest: int) -> Tensor:
        """The feature's frames (B, T, dim) for clips of at most ``longest`` samples, once T is what its
        ``num_frames`` says (the engine masks with it) and the last axis is its ``dim``."""
        expected = int(self.feature.num_frames(torch.tensor([longest]))[0])
        dim = self.feature.dim
        if frames.dim() != 3 or frames.shape[1] != expected or frames.shape[2] != dim:
            raise PluginError(
                f"{origin(self.feature)}: gave frames of shape {tuple(frames.shape)} for clips of at most "
                f"{longest} samples, where num_frames and dim say (B, {expected}, {dim}); both must be exact "
                "(audioseq.testing.check_feature checks every rule of the contract)")
        return frames

    def forward(self, waveforms: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Clips (N_i,) → frames (B, T_max, F) zero-padded, and lengths (B,) in frames.

        On CPU the clips go through the feature shortest first, in groups of at most
        ``FEATURE_CHUNK_VALUES`` padded samples, each group padded to its own longest clip;
        features do not depend on the batch, so the frames are the same as from one pass.
        """
        waveforms = list(waveforms)
        sizes = [w.numel() for w in waveforms]
        device = next((b.device for b in self.feature.buffers()), torch.device("cpu"))
        order = list(range(len(waveforms)))
        if device.type == "cpu":
            order.sort(key=sizes.__getitem__)
            groups = chunk_by_values([waveforms[i] for i in order], FEATURE_CHUNK_VALUES, Tensor.numel)
        else:
            groups = [waveforms]
        parts = [self._checked(self.feature(pad_batch(group)[0].to(device)), max(map(Tensor.numel, group), default=0))
                 for group in groups]
        t_max = max(part.shape[1] for part in parts)
        frames = torch.cat([F.pad(part, (0, 0, 0, t_max - part.shape[1])) for part in parts])
        if any(i != j for i, j in enumerate(order)):
            frames = frames[torch.argsort(torch.tensor(order))]  # back to the clips' order
        samples = torch.tensor(sizes, dtype=torch.long)
        lengths = self.feature.num_frames(samples)
        return frames, lengths.to(frames.device)

    def frames_of(self, items: Sequence[Item]) -> tuple[Tensor, Tensor]:
        """Batch the good items of a list: frames (B, T, F) and lengths (B,)."""
        if self.in_workers:
            lengths = torch.tensor([it.frames.shape[0] for it in items], dtype=torch.long)
            return pad_sequence([it.frames for it in items], batch_first=True), lengths
        return self([it.waveform for it in items])


class ClipDataset(torch.utils.data.Dataset):
    """Decodes and checks the inputs its loader hands it, as ``(index, source, name)`` jobs: the
    inputs themselves travel with the jobs, so one set of workers reads a list or a stream of any
    length, and no worker holds a copy of all of them."""

    def __init__(self, frontend: Frontend) -> None:
        self.frontend = frontend

    def __getitem__(self, job: tuple[int, Any, str]) -> Item:
        return self.__getitems__([job])[0]

    def __getitems__(self, jobs: Sequence[tuple[int, Any, str]]) -> list[Item]:
        """Decode a chunk of inputs, then preprocess them: each stage runs over the whole chunk
        before the next, so its code stays warm in the processor's caches (measured on FSDD:
        83 µs a clip, against 102 µs decoding and preprocessing one clip after another)."""
        indices = [index for index, _, _ in jobs]
        names = [name for _, _, name in jobs]
        waves = [source.wave if isinstance(source, _Decoded) else _attempt(self.frontend.decode, source, name)
                 for _, source, name in jobs]
        waves = [w if isinstance(w, AudioError) else _attempt(self.frontend.finish, w, name) for w, name in zip(waves, names)]
        items = []
        for index, name, wave in zip(indices, names, waves):
            if isinstance(wave, AudioError):
                item = Item(index, name, error=wave)
            elif self.frontend.in_workers:
                item = Item(index, name, frames=self.frontend.clip_frames(wave))
            else:
                item = Item(index, name, waveform=wave)
            items.append(_portable(item))
        return items


def _attempt(step: Callable[[Any, str], Tensor], value: Any, name: str) -> Tensor | AudioError:
    """One step for one clip; what goes wrong is that clip's error, never the chunk's."""
    try:
        return step(value, name)
    except AudioError as exc:
        return exc
    except Exception as exc:  # a decoder bug must cost one row, not the batch
        return UnreadableAudioError(name, f"{type(exc).__name__}: {exc}")


def _portable(item: Item) -> Item:
    """In a worker process, hold arrays as numpy: a small array pickles through the pipe in
    microseconds, while a tensor goes through a shared-memory file per clip."""
    if torch.utils.data.get_worker_info() is not None:
        if item.waveform is not None:
            item.waveform = item.waveform.numpy()
        if item.frames is not None:
            item.frames = item.frames.numpy()
    return item


def _as_tensors(item: Item) -> Item:
    if isinstance(item.waveform, np.ndarray):
        item.waveform = torch.from_numpy(item.waveform)
    if isinstance(item.frames, np.ndarray):
        item.frames = torch.from_numpy(item.frames)
    return item


def _collate(items: list[Item]) -> list[Item]:
    return items


def default_workers(n_inputs: int) -> int:
    """Worker processes for decoding.

    None for a handful of clips (start-up costs more), and none on a machine of one or two
    cores, where the main process already keeps them busy (measured on 2 cores: 2,370 clips/s
    decoding in-process against 1,300-1,500 with one or two workers).
    """
    cores = os.cpu_count() or 1
    if n_inputs < 64 or cores <= 2:
        return 0
    return min(4, cores - 1)


@dataclasses.dataclass
class _Decoded:
    """An input decoded where it was read, for a worker process it could not be sent to."""

    wave: Tensor | AudioError


def _jobs(sources: Iterable[Any], names: Sequence[str] | None, chunk: int,
          frontend: Frontend | None) -> Iterator[list[tuple[int, Any, str]]]:
    """The inputs in chunks of ``chunk`` ``(index, source, name)`` jobs, read from ``sources`` only
    as the loader asks for them. With the ``frontend`` of worker processes, an input that cannot be
    pickled to them (an open file, a pair holding a generator) is decoded here instead: in the
    queue's thread its pickling error would be lost, and the loader would wait for it forever."""
    numbered = enumerate(sources)
    while batch := list(itertools.islice(numbered, chunk)):
        if names is not None and batch[-1][0] >= len(names):
            raise ParameterError(f"names must give one name per input: {len(names)} names, and input "
                                 f"{len(names) + 1} has none")
        jobs = [(i, source, names[i] if names is not None else source_name(source)) for i, source in batch]
        yield jobs if frontend is None else [_sendable(job, frontend) for job in jobs]


def _sendable(job: tuple[int, Any, str], frontend: Frontend) -> tuple[int, Any, str]:
    index, source, name = job
    if isinstance(source, (str, bytes, PurePath)):  # always pickled: not worth trying
        return job
    try:
        pickle.dumps(source, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - whatever stops pickling, the input is read as in-process decoding reads it
        return index, _Decoded(_attempt(frontend.decode, source, name)), name
    return job


def workers_for(sources: Iterable[Any]) -> int:
    """:func:`default_workers` for a list of inputs, or for a stream, whose length is unknown and
    is taken to be long."""
    return default_workers(len(sources) if isinstance(sources, Sequence) else 64)


def iter_items(
    sources: Iterable[Any],
    frontend: Frontend,
    num_workers: int | None = None,
    chunk: int = 32,
    names: Sequence[str] | None = None,
) -> Iterator[Item]:
    """Decode inputs in order (in worker processes when ``num_workers`` > 0).

    ``sources`` may be a list or a stream: it is read a few chunks ahead of the decoding, and the
    same workers decode it to the end. ``names``: one per input (default: its path or
    ``<waveform>``)."""
    if num_workers is None:
        num_workers = workers_for(sources)
    loader = torch.utils.data.DataLoader(
        ClipDataset(frontend),
        # Any iterable of lists will do as the batch sampler: the lists are what __getitems__ gets.
        batch_sampler=_jobs(sources, names, chunk, frontend if num_workers else None),  # type: ignore[arg-type]
        num_workers=num_workers,
        collate_fn=_collate,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )
    for items in loader:
        for item in items:
            yield _as_tensors(item)


def iter_batches(
    items: Iterator[Item],
    batch_size: int,
    buffer_batches: int = 8,
    max_batch_values: int | None = None,
) -> Iterator[tuple[list[Item], list[Item]]]:
    """Group decoded items into (good batch, errors) pairs, batching clips of similar length.

    Items are buffered, sorted by length and cut into batches of at most ``batch_size`` clips
    and, padded to the longest, at most ``max_batch_values`` values (default
    :data:`MAX_BATCH_VALUES`; a longer clip goes alone).
    The buffer is emptied once it holds ``buffer_batches`` batches' worth of clips, of values or
    of errors, so memory is bounded by the buffer — not by the number of inputs, nor by how
    long they are — and errors stream out even when no clip is good.
    """
    if max_batch_values is None:
        max_batch_values = MAX_BATCH_VALUES
    buffer: list[Item] = []
    errors: list[Item] = []
    held = 0

    def flush() -> Iterator[tuple[list[Item], list[Item]]]:
        nonlocal buffer, errors, held
        ordered = sorted(buffer, key=lambda it: it.cost)
        batches = chunk_by_values(ordered, max_batch_values, lambda it: it.cost, batch_size)
        for i, batch in enumerate(batches):
            yield batch, (errors if i == 0 else [])
        buffer, errors, held = [], [], 0

    limit = batch_size * buffer_batches
    for item in items:
        if item.error is not None:
            errors.append(item)
        else:
            buffer.append(item)
            held += item.cost
        if len(buffer) >= limit or len(errors) >= limit or held >= max_batch_values * buffer_batches:
            yield from flush()
    if buffer or errors:
        yield from flush()
