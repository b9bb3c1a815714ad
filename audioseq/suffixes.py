"""Which files are audio: what ``audioseq predict`` looks for in folders and what the ``folder``
dataset reads (soundfile decodes each; the check is on the lower-cased suffix)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus"})


def hidden(relative: Path) -> bool:
    """A path below a searched folder that is not the user's audio: hidden files and folders
    (``.name``, including macOS's ``._name`` companions) and ``__MACOSX`` folders of unzipped archives."""
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)


def find_audio(folder: Path) -> list[Path]:
    """Every audio file below ``folder``, sorted, hidden ones left out. A broken link with an audio
    suffix is kept (reading it is then an error to report); links to folders are not followed.
    A folder below ``folder`` that cannot be listed is kept too, so that it is reported rather than
    silently left out."""
    audio, _, unlisted = sort_files(folder)
    return sorted(audio + [u for u in unlisted if u != folder])  # the folder itself: its caller reports it


def has_audio(folder: Path, look_at: int = 10_000) -> bool | None:
    """Whether ``folder`` holds an audio file :func:`find_audio` would give, stopping at the first;
    None when the first ``look_at`` files hold none (a huge tree is not walked for a message)."""
    for seen, path in enumerate(_files(folder, [])):
        if path.suffix.lower() in AUDIO_SUFFIXES:
            return True
        if seen >= look_at:
            return None
    return False


def _files(folder: Path, unlisted: list[Path]) -> "Iterator[Path]":
    def failed(exc: OSError) -> None:
        if exc.filename is not None:
            unlisted.append(Path(os.fsdecode(exc.filename)))

    for root, dirs, files in os.walk(folder, onerror=failed):  # links to folders are not followed
        top = Path(root)
        dirs[:] = [d for d in dirs if not hidden(Path(d))]
        for f in files:
            if not hidden(Path(f)):
                yield top / f


def sort_files(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """One walk below ``folder``: its audio files and its other files, hidden ones left out of both,
    and the folders that could not be listed (``folder`` itself among them when it cannot be)."""
    audio: list[Path] = []
    other: list[Path] = []
    unlisted: list[Path] = []
    for path in _files(folder, unlisted):
        (audio if path.suffix.lower() in AUDIO_SUFFIXES else other).append(path)
    return sorted(audio), sorted(other), sorted(unlisted)
