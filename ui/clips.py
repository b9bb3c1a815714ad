"""Recorded and uploaded clips, checked one by one before any model sees them.

An upload is bytes from a stranger. Each file is checked on its own — its size, then what its
header says (the duration, read by soundfile before anything is decoded), then whether it
holds any sound — so a bad file gets an error that names it while the other files of the same
upload still get their results. The model's own checks (damaged or cut-off data, too short)
come on top, through the errors ``Classifier.predict`` reports per clip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import soundfile as sf
import torch

import audioseq
from audioseq.audio import check_not_silent
from audioseq.preprocess import Preprocess

if TYPE_CHECKING:
    from streamlit.runtime.uploaded_file_manager import UploadedFile

MAX_BYTES = 20 * 1024 * 1024  # as server.maxUploadSize, which only guards the browser upload
MAX_SECONDS = 30.0
# A clip whose peak stays below this holds nothing to classify: the engine's default, checked here
# already so that a silent recording is refused before it reaches the Teach page's training.
SILENCE_DBFS = Preprocess().silence_dbfs
RECORDING_NAME = "recording.wav"

Upload = tuple[str, bytes]  # (file name as the user gave it, content)


@dataclasses.dataclass
class Clip:
    """One upload after the checks: ``path`` is its copy on disk, or ``error`` says why not."""

    name: str
    data: bytes
    path: Path | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclasses.dataclass
class Result:
    """A checked clip and the model's answer for it (None when a check refused the clip)."""

    clip: Clip
    prediction: audioseq.Prediction | None = None

    @property
    def error(self) -> str | None:
        if self.clip.error is not None:
            return self.clip.error
        return self.prediction.error if self.prediction is not None else None

    @property
    def ok(self) -> bool:
        return self.error is None


def uploads_of(files: Sequence[UploadedFile | None]) -> list[Upload]:
    """(name, bytes) of Streamlit's uploaded files and recordings; ``None`` entries are skipped."""
    return [(f.name, f.getvalue()) for f in files if f is not None]


def recording_of(recording: UploadedFile | None) -> list[Upload]:
    """``st.audio_input``'s value as an upload list with one entry named ``recording.wav``."""
    return [] if recording is None else [(RECORDING_NAME, recording.getvalue())]


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A private folder for the copies of this run's uploads, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="audioseq-app-") as folder:
        yield Path(folder)


def check_clip(name: str, data: bytes, path: Path, silence_dbfs: float | None = SILENCE_DBFS) -> Clip:
    """Check one upload and write it to ``path``; never raises for bad content. ``silence_dbfs``:
    the level under which a clip is silent, the model's own (None: any level)."""
    clip = Clip(name, data)
    if not data:
        clip.error = "the file is empty"
        return clip
    if len(data) > MAX_BYTES:
        clip.error = f"the file is {len(data) / 2**20:.1f} MB; files up to {MAX_BYTES // 2**20} MB are accepted"
        return clip
    path.write_bytes(data)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError):
        # soundfile's own message may talk about pipes or mpg123 resyncs; say what matters.
        clip.error = "not an audio file that can be read (WAV, FLAC, OGG or MP3 are accepted)"
        return clip
    if info.samplerate <= 0 or info.frames <= 0:
        clip.error = "the file holds no audio"
        return clip
    clip.seconds = info.frames / info.samplerate
    if clip.seconds > MAX_SECONDS:
        clip.error = f"the clip lasts {clip.seconds:.1f} s; clips up to {MAX_SECONDS:g} s are accepted"
        return clip
    clip.error = _wav_shortfall(path)
    if clip.error is not None:
        return clip
    try:
        samples, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, MemoryError):
        clip.error = "the audio data is damaged or cut off"
        return clip
    try:  # NaN compares false here, so the model's own check gets to name non-finite samples
        check_not_silent(torch.from_numpy(samples.mean(axis=1)), silence_dbfs, name)  # mixed down, as the model hears it
    except audioseq.SilentAudioError as exc:
        clip.error = exc.reason
        return clip
    clip.path = path
    return clip


def _wav_shortfall(path: Path) -> str | None:
    """Why a RIFF WAV is cut off: its data chunk claims more bytes than the file holds.

    soundfile quietly reads what is there, so a cut-off example would otherwise be taught as
    if it were whole (the model's own check only runs when a clip is classified).
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while len(chunk := fh.read(8)) == 8:
            claimed = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                held = size - fh.tell()
                if claimed > held:
                    return f"the file is cut off: its header promises {claimed} bytes of audio, it holds {held}"
                return None
            fh.seek(claimed + (claimed & 1), 1)  # chunks are word-aligned
    return None


def suffix_of(name: str) -> str:
    """The extension of an upload's name, if it looks like one; the name itself is never a path."""
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,6}", suffix) else ""


def check_clips(uploads: Sequence[Upload], folder: Path, classifier: audioseq.Classifier) -> list[Clip]:
    """Check every upload on its own, in order, writing the copies into ``folder``; silence is
    judged by the level ``classifier`` was trained to refuse."""
    silence = classifier.spec.preprocess.silence_dbfs
    return [
        check_clip(name, data, folder / f"clip-{i}{suffix_of(name)}", silence)
        for i, (name, data) in enumerate(uploads)
    ]


def classify(classifier: audioseq.Classifier, clips: Sequence[Clip]) -> list[Result]:
    """The model's prediction for every clip that passed the checks, in upload order."""
    good = [c for c in clips if c.ok and c.path is not None]
    # Decoding stays in this process: worker processes forked from the server's threads can
    # deadlock, and uploads are few and small.
    predictions = classifier.predict_iter(
        [str(c.path) for c in good], names=[c.name for c in good], num_workers=0
    )
    answers = {id(c): p for c, p in zip(good, predictions)}
    return [Result(c, answers.get(id(c))) for c in clips]


def named(name: str, message: str) -> str:
    """An error line naming the file, with the name shown literally (it may hold ``*`` or ``_``)."""
    return f"`{name.replace('`', chr(39))}`: {message}"


def results_table(results: Sequence[Result], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Rows for the results table and its CSV: file, label, confidence, error, p(label)…"""
    rows = []
    for r in results:
        p = r.prediction if r.ok else None
        row: dict[str, Any] = {
            "file": r.clip.name,
            "label": p.label if p else None,
            "confidence": round(p.confidence, 4) if p and p.confidence is not None else None,
            "error": r.error,
        }
        for label in labels:
            row[f"p({label})"] = round(p.probabilities[label], 4) if p else None
        rows.append(row)
    return rows
