"""The ``fsdd`` dataset: local copies, splits, the cached download, verification, the CLI.

No test uses the network: ``urllib.request.urlopen`` fails the test unless a test serves a
small archive built here.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf

import audioseq
from audioseq.errors import AudioseqError, ParameterError
from audioseq.plugins import build, get_component
from audioseq.testing import check_dataset
from audioseq_fsdd import FSDD, FSDDError, fetch

REPO = Path(__file__).resolve().parents[3]
FSDD_RECORDINGS = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")
TOP = "free-spoken-digit-dataset-1.0.10"
URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        pytest.fail(f"network access at test time: urlopen{args}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.delenv("AUDIOSEQ_OFFLINE", raising=False)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache folder; the release lands in ``cache/fsdd/v1.0.10/recordings``."""
    root = tmp_path / "cache"
    monkeypatch.setattr(fetch.platformdirs, "user_cache_dir", lambda *args, **kwargs: str(root))
    return root


@pytest.fixture(scope="module")
def recordings() -> Path:
    if not FSDD_RECORDINGS.is_dir() or not any(FSDD_RECORDINGS.glob("*.wav")):
        pytest.skip(f"FSDD recordings not found at {FSDD_RECORDINGS}")
    return FSDD_RECORDINGS


@pytest.fixture(scope="module")
def official(recordings: Path) -> FSDD:
    return FSDD(str(recordings))


# --- a small release archive, served instead of GitHub ---------------------------------------------


def wav_bytes(seed: int, rate: int = 8000, channels: int = 1) -> bytes:
    wave = 0.1 * np.random.default_rng(seed).standard_normal((800, channels)).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, wave, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def release(extra: Callable[[tarfile.TarFile], None] | None = None) -> bytes:
    """20 recordings (digits 0-9 by ann, index 0, and by bob, index 5) plus the rest of a repository."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for digit in range(10):
            add_file(tar, f"{TOP}/recordings/{digit}_ann_0.wav", wav_bytes(digit))
            add_file(tar, f"{TOP}/recordings/{digit}_bob_5.wav", wav_bytes(100 + digit))
        add_file(tar, f"{TOP}/README.md", b"# FSDD\n")
        add_file(tar, f"{TOP}/utils/spectrogramer.py", b"print('not a recording')\n")
        if extra is not None:
            extra(tar)
    return out.getvalue()


class Response(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[[bytes], list[str]]:
    """Serve an archive at any URL with a lowered minimum; returns the list of URLs asked for."""

    def start(archive: bytes) -> list[str]:
        asked: list[str] = []

        def urlopen(url: str, timeout: float | None = None) -> Response:
            asked.append(url)
            return Response(archive)

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)
        monkeypatch.setattr(fetch, "MIN_RECORDINGS", 20)
        return asked

    return start


# --- registration ------------------------------------------------------------------------------


def test_registers_through_the_entry_point() -> None:
    points = importlib.metadata.entry_points(group="audioseq", name="fsdd")
    assert [p.value for p in points] == ["audioseq_fsdd"]
    component = get_component("dataset", "fsdd")
    assert component.plugin == "fsdd"
    assert [(p.name, p.default) for p in component.params] == [
        ("test_speakers", ()), ("download", True), ("version", "v1.0.10")
    ]
    assert "fsdd" in audioseq.list_datasets()
    assert "CC BY-SA 4.0" in (FSDD.__doc__ or "") and "Zohar Jackson" in (FSDD.__doc__ or "")


# --- a local copy ------------------------------------------------------------------------------


@pytest.mark.fsdd
def test_official_split(official: FSDD, recordings: Path) -> None:
    everything = official.examples()
    assert len(everything) == 2500
    assert official.labels == [str(d) for d in range(10)]
    assert official.speakers == list(SPEAKERS)
    test, train = official.examples("test"), official.examples("train")
    assert (len(test), len(train), len(official.examples("valid"))) == (250, 2250, 0)
    assert {int(Path(ex.audio).stem.split("_")[2]) for ex in test} == set(range(5))
    assert min(int(Path(ex.audio).stem.split("_")[2]) for ex in train) == 5
    assert Counter((ex.group, ex.label) for ex in test) == {(s, str(d)): 5 for s in SPEAKERS for d in range(10)}
    assert all(ex.group == Path(ex.audio).stem.split("_")[1] for ex in everything)
    assert all(ex.label == Path(ex.audio).name[0] for ex in everything)
    assert all(Path(ex.audio).parent == recordings for ex in everything)


@pytest.mark.fsdd
def test_a_folder_holding_recordings_is_accepted(recordings: Path, official: FSDD) -> None:
    parent = FSDD(str(recordings.parent))
    assert parent.folder == recordings
    assert parent.examples() == official.examples()


@pytest.mark.fsdd
def test_leave_speakers_out(recordings: Path, cache: Path) -> None:
    data = FSDD(str(recordings), test_speakers=("theo",))
    test, train = data.examples("test"), data.examples("train")
    assert len(test) == 500 and {ex.group for ex in test} == {"theo"}
    assert len(train) == 2000 and "theo" not in {ex.group for ex in train}
    from_cli = build("dataset", "fsdd", str(recordings), params={"test_speakers": "george,theo"})
    assert {ex.group for ex in from_cli.examples("test")} == {"george", "theo"}
    assert len(from_cli.examples("test")) == 1000
    assert not cache.exists(), "a local copy must never touch the cache"


@pytest.mark.fsdd
def test_unknown_or_all_test_speakers_are_refused(recordings: Path) -> None:
    with pytest.raises(ParameterError, match="bob not found.*george, jackson, lucas, nicolas, theo"):
        FSDD(str(recordings), test_speakers=("theo", "bob"))
    with pytest.raises(ParameterError, match="none is left to train on"):
        FSDD(str(recordings), test_speakers=SPEAKERS)


@pytest.mark.fsdd
def test_keeps_the_dataset_contract(recordings: Path) -> None:
    check_dataset(FSDD, str(recordings))
    check_dataset(FSDD, str(recordings), test_speakers="theo")


def test_a_missing_local_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FSDDError, match="is not a folder; pass --data"):
        FSDD(str(tmp_path / "nowhere"))


def test_local_copies_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "MIN_RECORDINGS", 20)
    folder = tmp_path / "recordings"
    folder.mkdir()
    for digit in range(10):
        for speaker in ("ann", "bob"):
            (folder / f"{digit}_{speaker}_1.wav").write_bytes(wav_bytes(digit))
    assert len(FSDD(str(folder)).examples()) == 20
    (folder / "9_bob_1.wav").unlink()
    with pytest.raises(FSDDError, match="holds 19 recordings, fewer than the 20"):
        FSDD(str(folder))
    (folder / "0_cyd_1.wav").write_bytes(wav_bytes(0))
    (folder / "9_ann_1.wav").rename(folder / "8_ann_2.wav")
    with pytest.raises(FSDDError, match="no recording of digit.* 9"):
        FSDD(str(folder))
    (folder / "nine.wav").write_bytes(wav_bytes(9))
    with pytest.raises(FSDDError, match=r"nine\.wav: is not named \{digit\}_\{speaker\}_\{index\}\.wav"):
        FSDD(str(folder))
    (folder / "nine.wav").unlink()
    (folder / "9_ann_1.wav").write_bytes(wav_bytes(9, rate=16000))
    with pytest.raises(FSDDError, match="9_ann_1.wav: is 16000 Hz.*8000 Hz mono; fix or replace the files in"):
        FSDD(str(folder))


# --- the cached download -----------------------------------------------------------------------


def test_downloads_once_into_the_cache(cache: Path, serve: Callable[[bytes], list[str]]) -> None:
    asked = serve(release())
    data = FSDD()
    folder = cache / "fsdd" / "v1.0.10" / "recordings"
    assert asked == [URL]
    assert data.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{d}_ann_0.wav" for d in range(10)] + [f"{d}_bob_5.wav" for d in range(10)]
    )
    assert [p.name for p in folder.parent.iterdir()] == ["recordings"], "no staging folder or archive is left"
    assert len(data.examples("test")) == 10 and {ex.group for ex in data.examples("test")} == {"ann"}
    again = FSDD(None)
    assert asked == [URL], "a second construction must use the cache"
    assert again.examples() == data.examples()
    check_dataset(FSDD, None)


def test_archive_members_cannot_write_outside(cache: Path, tmp_path: Path, serve: Callable[[bytes], list[str]]) -> None:
    def evil(tar: tarfile.TarFile) -> None:
        add_file(tar, "../evil.wav", wav_bytes(1))
        add_file(tar, f"{TOP}/recordings/../../evil.wav", wav_bytes(2))
        add_file(tar, f"/{TOP}/recordings/0_eve_0.wav", wav_bytes(3))
        add_file(tar, f"{TOP}/recordings/sub/0_eve_1.wav", wav_bytes(4))

    serve(release(evil))
    data = FSDD()
    assert len(data.examples()) == 20 and "eve" not in data.speakers
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.parent == data.folder for p in written), written
    assert not (tmp_path.parent / "evil.wav").exists()


def test_a_link_posing_as_a_recording_refuses_the_archive(cache: Path, serve: Callable[[bytes], list[str]]) -> None:
    def link(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(f"{TOP}/recordings/0_eve_0.wav")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)

    serve(release(link))
    with pytest.raises(FSDDError, match="is a link or special file"):
        FSDD()
    assert not (cache / "fsdd" / "v1.0.10" / "recordings").exists()
    assert list((cache / "fsdd" / "v1.0.10").iterdir()) == [], "the staging folder is removed"


def test_an_oversized_member_refuses_the_archive(
    cache: Path, serve: Callable[[bytes], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(release())
    monkeypatch.setattr(fetch, "MAX_MEMBER_BYTES", 1000)  # the generated recordings are 1.6 kB
    with pytest.raises(FSDDError, match="bytes, too large for a recording; the archive is refused"):
        FSDD()
    assert list((cache / "fsdd" / "v1.0.10").iterdir()) == []


def test_a_corrupt_cached_file_fails_verification(cache: Path, serve: Callable[[bytes], list[str]]) -> None:
    serve(release())
    folder = FSDD().folder
    (folder / "3_bob_5.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(FSDDError) as caught:
        FSDD()
    message = str(caught.value)
    assert "3_bob_5.wav: is not a readable WAV file" in message
    assert f"delete {folder.parent} to download it again, or pass --data" in message
    assert isinstance(caught.value, AudioseqError)


@pytest.mark.parametrize(
    "failure, message",
    [
        (urllib.error.HTTPError(URL, 404, "Not Found", {}, None), "HTTP 404.*check that 'v1.0.10' is a release tag"),  # type: ignore[arg-type]
        (urllib.error.URLError("Name or service not known"), "download failed .Name or service not known.; check the connection"),
        (TimeoutError("timed out"), "download failed .timed out."),
    ],
)
def test_download_failures_are_clear(
    cache: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception, message: str
) -> None:
    def urlopen(url: str, timeout: float | None = None) -> None:
        raise failure

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(FSDDError, match=message):
        FSDD()
    assert not (cache / "fsdd" / "v1.0.10" / "recordings").exists()


def test_a_damaged_or_foreign_archive_is_refused(cache: Path, serve: Callable[[bytes], list[str]]) -> None:
    serve(b"<html>not an archive</html>")
    with pytest.raises(FSDDError, match="not a readable .tar.gz archive"):
        FSDD()
    serve(release()[:-200])
    with pytest.raises(FSDDError, match="not a readable .tar.gz archive"):
        FSDD()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        add_file(tar, f"{TOP}/README.md", b"no recordings\n")
    serve(out.getvalue())
    with pytest.raises(FSDDError, match="holds 0 recordings.*is not the Free Spoken Digit Dataset"):
        FSDD()
    serve(release(lambda tar: add_file(tar, f"{TOP}/recordings/seven.wav", wav_bytes(7))))
    with pytest.raises(FSDDError, match=r"seven\.wav: is not named .*is not the Free Spoken Digit Dataset"):
        FSDD()
    assert list((cache / "fsdd" / "v1.0.10").iterdir()) == []


def test_offline_or_no_download_is_a_clear_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FSDDError, match="download is off; pass --data"):
        FSDD(None, download=False)
    monkeypatch.setenv("AUDIOSEQ_OFFLINE", "1")
    with pytest.raises(FSDDError, match="AUDIOSEQ_OFFLINE is set.*pass --data"):
        FSDD(None)


def test_version_must_be_a_tag(cache: Path) -> None:
    with pytest.raises(ParameterError, match="not a release tag"):
        FSDD(None, version="../../etc")
    assert not cache.exists()


# --- the command line --------------------------------------------------------------------------


def audioseq_command() -> list[str]:
    script = Path(sys.executable).with_name("audioseq")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from audioseq.cli import main; main()"]


@pytest.mark.fsdd
def test_training_through_the_cli(recordings: Path, tmp_path: Path) -> None:
    out = tmp_path / "digits.safetensors"
    # Offline, and only this plugin, whatever the calling environment holds.
    env = {**os.environ, "AUDIOSEQ_OFFLINE": "1", "AUDIOSEQ_LOAD_PLUGINS": "fsdd"}
    proc = subprocess.run(
        audioseq_command() + [
            "train", "--dataset", "fsdd", "--data", str(recordings), "--dataset-opt", "test_speakers=theo",
            "--out", str(out), "--epochs", "1", "--hidden", "8", "--layers", "1", "--no-bidirectional",
            "--no-augment", "--batch-size", "64", "--device", "cpu",
        ],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "test accuracy" in proc.stdout
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["test"]["count"] == 500 and metrics["epochs_run"] == 1
    assert audioseq.load(out).labels == [str(d) for d in range(10)]
