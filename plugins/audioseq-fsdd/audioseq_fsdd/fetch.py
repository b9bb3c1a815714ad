"""Finding, downloading and checking the recordings of the Free Spoken Digit Dataset.

Free Spoken Digit Dataset (Zohar Jackson et al.), CC BY-SA 4.0:
https://github.com/Jakobovski/free-spoken-digit-dataset

A download goes to a fresh staging folder beside the cache folder, is checked there, and is
renamed into place only once it passes, so the cache never holds a partial copy.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

import platformdirs
import soundfile
from audioseq.errors import AudioseqError
from tqdm.auto import tqdm

MIN_RECORDINGS = 1500  # fewer means an incomplete copy: the release has 3,000, a 5-speaker subset 2,500
SAMPLE_RATE = 8000  # Hz; every FSDD recording is 8 kHz mono
ARCHIVE_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/{version}.tar.gz"
DIGITS = tuple(str(d) for d in range(10))
TIMEOUT_S = 60.0  # per network operation, not for the whole download
MAX_MEMBER_BYTES = 16 << 20  # a recording is a few tens of kB; anything far larger is not one
_NAME = re.compile(r"(?P<digit>[0-9])_(?P<speaker>[a-z]+)_(?P<index>[0-9]+)\.wav")
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\.wav")  # no separators, never "." or ".."
_OFFLINE_VALUES = ("1", "true", "yes", "on")


class FSDDError(AudioseqError):
    """The recordings cannot be found, downloaded or trusted. ``path`` names the folder, file or URL."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(f"{os.fspath(path)}: {message}")
        self.path = os.fspath(path)
        self.reason = message


@dataclasses.dataclass(frozen=True)
class Recording:
    """One clip, from its file name ``{digit}_{speaker}_{index}.wav``."""

    path: Path
    digit: str
    speaker: str
    index: int


def offline() -> bool:
    """True when the environment forbids downloads (``AUDIOSEQ_OFFLINE=1``)."""
    return os.environ.get("AUDIOSEQ_OFFLINE", "").strip().lower() in _OFFLINE_VALUES


def cache_folder(version: str) -> Path:
    """Where release ``version``'s recordings are kept: ``<user cache>/audioseq/fsdd/<version>/recordings``."""
    return Path(platformdirs.user_cache_dir("audioseq")) / "fsdd" / version / "recordings"


def local_folder(root: str | os.PathLike[str]) -> Path:
    """The recordings folder of a local copy: ``root/recordings`` when there is one, else ``root``."""
    path = Path(root).expanduser()
    if (path / "recordings").is_dir():
        return path / "recordings"
    if path.is_dir():
        return path
    raise FSDDError(path, "is not a folder; pass --data the FSDD recordings folder or the folder that holds it")


def verify(folder: Path, fix: str) -> list[Recording]:
    """Check every recording in ``folder`` and return them; ``fix`` ends every error message.

    Checks: each ``.wav`` is named ``{digit}_{speaker}_{index}.wav``; at least
    ``MIN_RECORDINGS`` of them; every digit present; each header reads as 8 kHz mono with
    samples (headers only, about 0.1 ms a file).
    """
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav")
    except OSError as exc:
        raise FSDDError(folder, f"cannot be listed ({exc.strerror or exc}); {fix}") from exc
    recordings = []
    for path in paths:
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise FSDDError(path, f"is not named {{digit}}_{{speaker}}_{{index}}.wav as FSDD recordings are; {fix}")
        recordings.append(Recording(path, match["digit"], match["speaker"], int(match["index"])))
    if len(recordings) < MIN_RECORDINGS:
        raise FSDDError(folder, f"holds {len(recordings)} recordings, fewer than the {MIN_RECORDINGS} of a complete copy; {fix}")
    missing = sorted(set(DIGITS) - {r.digit for r in recordings})
    if missing:
        raise FSDDError(folder, f"has no recording of digit(s) {', '.join(missing)}; {fix}")
    for rec in recordings:
        try:
            info = soundfile.info(str(rec.path))
        except (RuntimeError, OSError) as exc:  # soundfile's LibsndfileError is a RuntimeError
            raise FSDDError(rec.path, f"is not a readable WAV file ({exc}); {fix}") from exc
        if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.frames < 1:
            raise FSDDError(
                rec.path,
                f"is {info.samplerate} Hz, {info.channels} channel(s), {info.frames} samples, but FSDD recordings "
                f"are {SAMPLE_RATE} Hz mono; {fix}",
            )
    return recordings


def fetch(version: str, folder: Path) -> None:
    """Download release ``version`` from GitHub and place its checked recordings at ``folder``.

    Raises:
        FSDDError: offline, the download failed, the archive is damaged or unsafe, or the cache
            folder cannot be written.
    """
    url = ARCHIVE_URL.format(version=version)
    if offline():
        raise FSDDError(folder, "is not there and AUDIOSEQ_OFFLINE is set, so it is not downloaded; unset "
                                "AUDIOSEQ_OFFLINE, or pass --data a local copy of the FSDD recordings folder")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".download-", dir=folder.parent))
    except OSError as exc:
        raise FSDDError(folder.parent, f"the cache folder cannot be written ({exc}); pass --data a local copy") from exc
    try:
        archive = work / "release.tar.gz"
        _download(url, archive, version)
        staged = work / "recordings"
        _extract_recordings(archive, staged, url)
        verify(staged, f"the archive at {url} is damaged or is not the Free Spoken Digit Dataset; "
                       "try again later, or pass --data a local copy")
        try:
            os.rename(staged, folder)
        except OSError as exc:
            if not folder.is_dir():  # else another process placed a checked copy first: keep that one
                raise FSDDError(folder, f"cannot be created ({exc}); pass --data a local copy") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _download(url: str, dest: Path, version: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading FSDD {version}", disable=None) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        hint = f"check that {version!r} is a release tag of the dataset" if exc.code == 404 else "try again later"
        raise FSDDError(url, f"download failed with HTTP {exc.code} ({exc.reason}); {hint}, "
                             "or pass --data a local copy of the recordings folder") from exc
    except (OSError, TimeoutError) as exc:  # URLError is an OSError
        reason = getattr(exc, "reason", None) or exc
        raise FSDDError(url, f"download failed ({reason}); check the connection, or pass --data a local copy "
                             "of the recordings folder") from exc


def _recording_name(member: str) -> str | None:
    """The file name of an archive member ``<top>/recordings/<name>.wav``, else None.

    The name may hold only letters, digits, ``.``, ``_`` and ``-``, so it is one plain file name
    on every system; ``verify`` then insists on ``{digit}_{speaker}_{index}.wav``.
    """
    parts = PurePosixPath(member).parts
    if len(parts) != 3 or parts[0] in ("/", ".", "..") or parts[1] != "recordings":
        return None
    return parts[2] if _FILE_NAME.fullmatch(parts[2]) else None


def _extract_recordings(archive: Path, dest: Path, url: str) -> None:
    """Copy the recordings out of the release archive into ``dest``, flat.

    Nothing goes through ``tarfile``'s extract: only regular files named
    ``<top>/recordings/<name>.wav`` are read, and each is written under its bare name inside
    ``dest``. Absolute names, ``..``, links and devices therefore never write outside it —
    stricter than ``filter="data"``, which would still unpack the rest of the repository.
    """
    dest.mkdir()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = _recording_name(member.name)
                if name is None:
                    continue
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise FSDDError(url, f"archive member {member.name!r} is a link or special file, not a recording; "
                                         "the archive is refused")
                if member.size > MAX_MEMBER_BYTES:
                    raise FSDDError(url, f"archive member {member.name!r} is {member.size} bytes, too large for a "
                                         "recording; the archive is refused")
                with source, open(dest / name, "wb") as out:
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise FSDDError(url, f"the download is not a readable .tar.gz archive ({exc}); try again later, "
                             "or pass --data a local copy") from exc
