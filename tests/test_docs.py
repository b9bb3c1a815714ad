"""The Python examples of the docs run as written and do what the text around them says."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO

DOCS = REPO / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def test_the_batch_example_writes_one_row_per_clip_in_order_with_errors_as_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (example,) = python_blocks(DOCS / "batch.md")
    folder = tmp_path / "recordings"
    (folder / "b" / "c").mkdir(parents=True)
    rng = np.random.default_rng(0)
    clips = [folder / "a.wav", folder / "b" / "c" / "d.flac", folder / "b" / "e.wav"]
    for i, path in enumerate(clips):
        t = np.arange(4000 + 1000 * i) / 8000
        sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * (i + 1) * t) + 0.01 * rng.standard_normal(t.size)), 8000)
    (folder / "b" / "broken.wav").write_bytes(b"RIFF" + bytes(40))
    (folder / "notes.txt").write_text("not a clip\n")
    monkeypatch.chdir(tmp_path)

    exec(compile(example, "docs/batch.md", "exec"), {})

    assert capsys.readouterr().out == "could not be classified: 1\n"
    with open(tmp_path / "predictions.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["file", "label", "confidence", "error_type", "error"]
    assert [row[0] for row in rows] == [str(Path("recordings") / p) for p in
                                         ("a.wav", "b/broken.wav", "b/c/d.flac", "b/e.wav")]
    labels = [str(d) for d in range(10)]
    for row in rows:
        if row[0].endswith("broken.wav"):
            assert row[1:4] == ["", "", "UnreadableAudioError"] and row[4]
        else:
            assert row[1] in labels and 0.0 < float(row[2]) <= 1.0 and row[3:] == ["", ""]
