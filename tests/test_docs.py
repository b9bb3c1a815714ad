"""The Python examples of the docs run as written and do what the text around them says."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, sweep, write_wav

DOCS = REPO / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def test_the_batch_example_writes_one_row_per_clip_in_order_with_errors_as_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (example,) = python_blocks(DOCS / "batch.md")
    folder = tmp_path / "recordings"
    for i, name in enumerate(("a.wav", "b/c/d.flac", "b/e.wav")):
        write_wav(folder / name, sweep(0.5 + 0.125 * i, 8000, seed=i), 8000)
    (folder / "b" / "broken.wav").write_bytes(b"RIFF" + bytes(40))
    (folder / "notes.txt").write_text("not a clip\n")
    monkeypatch.chdir(tmp_path)

    exec(compile(example, "docs/batch.md", "exec"), {})

    assert capsys.readouterr().out == "could not be classified: 1\n"
    with open(tmp_path / "predictions.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["file", "label", "confidence", "error_type", "error"]
    given = [str(p) for p in Path("recordings").rglob("*") if p.suffix in {".wav", ".flac"}]  # the order it walks
    assert sorted(given) == [str(Path("recordings") / p) for p in ("a.wav", "b/broken.wav", "b/c/d.flac", "b/e.wav")]
    assert [row[0] for row in rows] == given
    labels = [str(d) for d in range(10)]
    for row in rows:
        if row[0].endswith("broken.wav"):
            assert row[1:4] == ["", "", "UnreadableAudioError"] and row[4]
        else:
            assert row[1] in labels and 0.0 < float(row[2]) <= 1.0 and row[3:] == ["", ""]


def test_the_training_example_writes_the_model_and_its_metrics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import audioseq

    (example,) = python_blocks(DOCS / "training.md")
    for label, freq in (("yes", 400.0), ("no", 1600.0)):
        for i in range(8):
            wave = 0.5 * np.sin(2 * np.pi * freq * (1 + 0.02 * i) * np.arange(2400) / 8000)
            write_wav(tmp_path / "clips" / label / f"{i}.wav", wave.astype(np.float32), 8000)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "docs/training.md", "exec"), namespace)

    best_epoch, accuracy = capsys.readouterr().out.split()
    metrics = json.loads((tmp_path / "model.metrics.json").read_text())
    assert int(best_epoch) == metrics["best_epoch"] and float(accuracy) == metrics["valid"]["accuracy"]
    assert metrics["valid"]["count"] == 4 and metrics["recipe"]["valid_fraction"] == 0.2  # 20% of 16 clips
    assert audioseq.load(tmp_path / "model.safetensors").labels == namespace["clf"].labels == ["no", "yes"]


@pytest.mark.parametrize("page", ["README.md", "docs/inside-the-rnn.md"])
def test_the_examples_run_in_order_on_clips_of_the_names_they_use(
    page: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each page's blocks run one after the other, as a reader would paste them."""
    blocks = python_blocks(REPO / page)
    assert blocks
    for seed, (name, rate) in enumerate((("7_jackson_0.wav", 8000), ("b.flac", 16000), ("clip.wav", 44100))):
        write_wav(tmp_path / name, sweep(0.6, rate, seed=seed), rate)
    namespace: dict = {}
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)

    clf, ins = namespace["clf"], namespace["ins"]
    assert ins.frame_probabilities.shape == (len(ins.frames), len(clf.labels))
    if page == "README.md":
        assert [p.error for p in namespace["preds"]] == [None, None, None]
    else:
        assert ins.label == clf.predict("clip.wav")[0].label  # "the same answer as clf.predict"
        assert set(namespace["grads"]) == {"rnn", "lstm", "gru"}
        assert namespace["per_frame"].shape == (len(ins.frames),)
