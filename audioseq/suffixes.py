"""Which files are audio: what ``audioseq predict`` looks for in folders and what the ``folder``
dataset reads (soundfile decodes each; the check is on the lower-cased suffix)."""

from __future__ import annotations

from pathlib import Path

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus"})


def hidden(relative: Path) -> bool:
    """A path below a searched folder that is not the user's audio: hidden files and folders
    (``.name``, including macOS's ``._name`` companions) and ``__MACOSX`` folders of unzipped archives."""
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)


def find_audio(folder: Path) -> list[Path]:
    """Every audio file below ``folder``, sorted, hidden ones left out. A broken link with an audio
    suffix is kept (reading it is then an error to report); links to folders are not followed."""
    return sort_files(folder)[0]


def sort_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """One walk below ``folder``: (its audio files, as :func:`find_audio` gives them; its other files),
    hidden ones left out of both."""
    audio, other = [], []
    for path in sorted(folder.rglob("*")):
        if hidden(path.relative_to(folder)) or path.is_dir():
            continue
        (audio if path.suffix.lower() in AUDIO_SUFFIXES else other).append(path)
    return audio, other
