"""On real speech: the Free Spoken Digit Dataset (FSDD) at ``../shared/data/fsdd/recordings``.

Training with the default recipe through the command line must reach 98 % on the official test
split (index 0-4 of each speaker and digit), and the bundled ``digits`` model must classify
official test clips through the API and the command line.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

import audioseq
from audioseq.default_plugins.models import MODELS_DIR
from conftest import run_cli

pytestmark = [pytest.mark.fsdd, pytest.mark.usefixtures("one_thread")]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS_MODEL = MODELS_DIR / "digits.safetensors"


def _parts(path: Path) -> tuple[str, str, int]:
    """``7_jackson_32.wav`` -> ("7", "jackson", 32)."""
    digit, speaker, index = path.stem.split("_")
    return digit, speaker, int(index)


def _official_test_clips(recordings: Path, per_speaker_digit: int = 5) -> list[Path]:
    clips = [p for p in sorted(recordings.glob("*.wav")) if _parts(p)[2] < per_speaker_digit]
    assert clips, f"no test clips in {recordings}"
    return clips


def _digit(label: str | None) -> str | None:
    """A digit label as its numeral, whether the model names digits "7" or "seven"."""
    return str(DIGIT_WORDS.index(label)) if label in DIGIT_WORDS else label


def write_manifest(recordings: Path, manifest: Path) -> dict[str, int]:
    """path,label,split,group for every recording: the official split, grouped by speaker."""
    counts = {"train": 0, "test": 0}
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "group"])
        for path in sorted(recordings.glob("*.wav")):
            digit, speaker, index = _parts(path)
            split = "test" if index < 5 else "train"
            counts[split] += 1
            writer.writerow([path.resolve(), digit, split, speaker])
    return counts


@pytest.mark.slow
def test_the_default_recipe_reaches_98_percent_on_the_official_test_split(fsdd: Path, tmp_path: Path) -> None:
    counts = write_manifest(fsdd, tmp_path / "manifest.csv")
    start = time.monotonic()
    proc = run_cli("train", "--dataset", "manifest", "--data", "manifest.csv", "--out", "m.safetensors",
                   cwd=tmp_path, timeout=3 * 3600)
    minutes = (time.monotonic() - start) / 60
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "m.metrics.json").read_text())
    test = metrics["test"]
    print(f"FSDD default recipe: test accuracy {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f}, "
          f"{metrics['epochs_run']} epochs (best {metrics['best_epoch']}), {minutes:.1f} min")
    assert test["count"] == counts["test"] and test["errors"] == []
    assert test["labels"] == [str(d) for d in range(10)]
    assert test["accuracy"] >= 0.98, test


@pytest.fixture(scope="module")
def digits_model() -> Path:
    if not DIGITS_MODEL.is_file():
        pytest.skip(f"the bundled digits model is not built yet ({DIGITS_MODEL})")
    return DIGITS_MODEL


def test_the_digits_model_is_bundled_and_loads_by_name(digits_model: Path) -> None:
    assert "digits" in audioseq.bundled_models()
    clf = audioseq.load("digits")
    assert Path(clf.path) == digits_model
    assert sorted(_digit(label) for label in clf.labels) == [str(d) for d in range(10)]


def test_the_digits_model_classifies_100_official_test_clips(digits_model: Path, fsdd: Path) -> None:
    # Two clips per digit and speaker, from the official test indices (0-4).
    clips = [p for p in _official_test_clips(fsdd) if _parts(p)[2] < 2]
    speakers = {_parts(p)[1] for p in clips}
    assert len(clips) == 10 * len(speakers) * 2 >= 100
    clips = clips[:: len(clips) // 100][:100]  # evenly over digits and speakers when there are more
    clf = audioseq.load("digits")
    rows = clf.predict(clips, batch_size=32)
    assert [r.source for r in rows] == [str(p) for p in clips]
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    correct = sum(_digit(r.label) == _parts(p)[0] for r, p in zip(rows, clips))
    assert correct / len(clips) >= 0.97, f"{correct} of {len(clips)} correct"


def test_predict_digits_on_the_command_line(digits_model: Path, fsdd: Path) -> None:
    clips = [fsdd / "3_theo_0.wav", fsdd / "8_george_1.wav"]
    clips = [p for p in clips if p.is_file()] or _official_test_clips(fsdd)[:2]
    proc = run_cli("predict", "digits", *clips, "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["source"] for row in rows] == [str(p) for p in clips]
    for row, path in zip(rows, clips):
        assert _digit(row["label"]) == _parts(path)[0], row


def test_the_ready_lstm_shows_its_gates_and_labels_the_official_test_split(fsdd: Path) -> None:
    """digits-lstm is there to show an LSTM's gates in the app: it must be an LSTM, small, and right."""
    if "digits-lstm" not in audioseq.bundled_models():
        pytest.skip("digits-lstm is not built (scripts/train_digits.sh RECORDINGS digits-lstm)")
    clf = audioseq.load("digits-lstm")
    assert clf.spec.network.cell == "lstm" and clf.num_parameters() <= 100_000
    clips = _official_test_clips(fsdd)
    rows = clf.predict(clips, batch_size=64)
    correct = sum(_digit(r.label) == _parts(p)[0] for r, p in zip(rows, clips))
    assert correct / len(clips) >= 0.98, f"{correct} of {len(clips)} correct"
    ins = clf.inspect(str(clips[0]))
    assert set(ins.gates) == {"forget", "input", "candidate", "output"} and ins.cell_state_norm is not None
