"""The bundled models' recipe scripts: synthetic voices, the FSDD manifest and the training recipe."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import audioseq
import audioseq.training
from audioseq.audio import audio_info, read_audio
from audioseq.cli import cli

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
needs_synth = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="espeak-ng and flite are not installed (apt-get install espeak-ng flite)",
)


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.wav"))}


@needs_synth
def test_synth_speech_writes_decodable_labelled_clips_deterministically(tmp_path: Path) -> None:
    synth = script("synth_speech")
    count = synth.synthesise(tmp_path / "a", ["two", "five"], ["2", "5"], per_word=3, seed=7)
    assert count == 2 * (3 + 45)  # espeak-ng clips plus flite's 5 voices x 3 durations x 3 pitches
    files = sorted((tmp_path / "a").rglob("*.wav"))
    assert len(files) == count
    assert {p.parent.name for p in files} == {"2", "5"}
    for path in files[:: len(files) // 8]:
        rate = audio_info(path).sample_rate
        wave = read_audio(str(path), rate)
        assert rate in (8000, 16000, 22050) and wave.numel() > 0.15 * rate  # a word, not silence
        assert float(wave.abs().max()) > 0.01
    with open(tmp_path / "a" / "voices.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == count and {r["engine"] for r in rows} == {"espeak-ng", "flite"}
    assert all((tmp_path / "a" / r["file"]).exists() for r in rows)
    # Same seed, same clips; another seed draws other voices.
    synth.synthesise(tmp_path / "b", ["two", "five"], ["2", "5"], per_word=3, seed=7)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    def voices(seed: int) -> list[tuple[str, int]]:
        return [(c["voice"], c["pitch"]) for c in synth.plan(["two"], ["2"], 3, seed) if c["engine"] == "espeak-ng"]

    assert voices(7) == [(r["voice"], int(r["pitch"])) for r in rows if r["engine"] == "espeak-ng" and r["label"] == "2"]
    assert voices(8) != voices(7)


def test_synth_speech_engines_choose_clips_without_changing_the_espeak_draws() -> None:
    synth = script("synth_speech")
    default = synth.plan(["six"], ["6"], 4, seed=3)
    every = synth.plan(["six"], ["6"], 4, seed=3, engines=synth.ENGINES)
    assert {c["engine"] for c in default} == {"espeak-ng", "flite"}
    festival = [c for c in every if c["engine"] == "festival"]
    assert len(festival) == len(synth.FESTIVAL_VOICES) * len(synth.FESTIVAL_PITCHES) * len(synth.FESTIVAL_STRETCHES)
    assert len({c["file"] for c in every}) == len(every)  # no clip overwrites another
    assert [c for c in every if c["engine"] != "festival"] == default
    assert {(c["voice"], c["pitch"], c["speed"]) for c in festival} == {
        (v, p, s) for v in synth.FESTIVAL_VOICES for p in synth.FESTIVAL_PITCHES for s in synth.FESTIVAL_STRETCHES
    }


def test_synth_speech_names_unknown_engines_and_missing_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synth = script("synth_speech")
    with pytest.raises(SystemExit, match="unknown engine mbrola; known: espeak-ng, flite, festival"):
        synth.synthesise(tmp_path, ["one"], ["1"], per_word=1, engines=("mbrola",))
    monkeypatch.setattr(synth.shutil, "which", lambda tool: None if tool == "text2wave" else "/usr/bin/" + tool)
    with pytest.raises(SystemExit, match="text2wave not found: apt-get install festival festvox-kallpc16k"):
        synth.synthesise(tmp_path, ["one"], ["1"], per_word=1, engines=("flite", "festival"))


@pytest.mark.skipif(
    shutil.which("text2wave") is None
    or not all(Path(f"/usr/share/festival/voices/english/{v}").is_dir() for v in ("kal_diphone", "ked_diphone")),
    reason="festival and its diphone voices are not installed (apt-get install festival festvox-kallpc16k festvox-kdlpc16k)",
)
def test_synth_speech_festival_voices_follow_their_pitch_targets(tmp_path: Path) -> None:
    synth = script("synth_speech")
    count = synth.synthesise(tmp_path, ["nine"], ["9"], engines=("festival",))
    assert count == len(synth.plan(["nine"], ["9"], 0, 0, engines=("festival",)))
    with open(tmp_path / "voices.csv") as fh:
        rows = list(csv.DictReader(fh))
    # Each clip speaks at its pitch target ("nine" is voiced throughout): autocorrelation over
    # the loudest 60 ms.
    def f0(wave: np.ndarray, rate: int) -> float:
        n = int(0.06 * rate)
        energy = np.convolve(wave**2, np.ones(n), "valid")
        seg = wave[int(np.argmax(energy)) :][:n]
        ac = np.correlate(seg, seg, "full")[n - 1 :]
        lags = np.arange(rate // 400, rate // 60)
        strong = lags[ac[lags] >= 0.85 * ac[lags].max()]  # shortest strong period: no octave-down errors
        return rate / float(strong[0])

    durations = {}
    for r in rows:
        rate = audio_info(tmp_path / r["file"]).sample_rate
        wave = read_audio(str(tmp_path / r["file"]), rate)
        assert wave.numel() > 0.2 * rate and float(wave.abs().max()) > 0.05
        assert abs(f0(wave.numpy(), rate) / int(r["pitch"]) - 1) < 0.15, r
        durations.setdefault(float(r["speed"]), []).append(wave.numel() / rate)
    # Duration stretch makes the word longer.
    means = [np.mean(durations[s]) for s in sorted(durations)]
    assert means == sorted(means) and means[-1] > 1.3 * means[0]


def test_synth_speech_rejects_mismatched_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synth = script("synth_speech")
    monkeypatch.setattr(synth.shutil, "which", lambda tool: "/usr/bin/" + tool)
    with pytest.raises(SystemExit, match="2 words but 1 labels"):
        synth.synthesise(tmp_path, ["one", "two"], ["1"], per_word=1)


def test_fsdd_manifest_extra_clips_train_only_and_validation_is_recordings(tmp_path: Path) -> None:
    recordings = tmp_path / "rec"
    recordings.mkdir()
    wave = np.sin(np.linspace(0, 400, 4000)).astype("float32")
    for digit in "01":
        for speaker in ("ann", "bob"):
            for index in range(10):
                sf.write(recordings / f"{digit}_{speaker}_{index}.wav", wave, 8000)
        (tmp_path / "extra" / digit).mkdir(parents=True)
        for n in range(3):
            sf.write(tmp_path / "extra" / digit / f"espeak_{n}.wav", wave, 16000)
    out = tmp_path / "m.csv"
    subprocess.run(
        [sys.executable, str(SCRIPTS / "fsdd_manifest.py"), str(recordings), str(out), "--no-groups", "--extra", str(tmp_path / "extra")],
        check=True, capture_output=True,
    )  # fmt: skip
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    extra = [r for r in rows if "/extra/" in r["path"]]
    recorded = [r for r in rows if "/rec/" in r["path"]]
    assert len(extra) == 6 and {r["split"] for r in extra} == {"train"}
    assert {r["label"] for r in extra} == {"0", "1"}
    assert sum(r["split"] == "test" for r in recorded) == 2 * 2 * 5  # index 0-4
    valid = [r for r in recorded if r["split"] == "valid"]
    assert len(valid) == 2 * 2 and {r["label"] for r in valid} == {"0", "1"}  # 15% of each digit's 10
    dataset = audioseq.load_dataset("manifest", str(out))
    assert {ex.split for ex in dataset.examples()} == {"train", "valid", "test"}
    # With the speaker as the group, validation holds a whole speaker out, as training would.
    grouped = tmp_path / "g.csv"
    subprocess.run(
        [sys.executable, str(SCRIPTS / "fsdd_manifest.py"), str(recordings), str(grouped), "--extra", str(tmp_path / "extra")],
        check=True, capture_output=True,
    )  # fmt: skip
    with open(grouped) as fh:
        valid = [r for r in csv.DictReader(fh) if r["split"] == "valid"]
    assert len({r["group"] for r in valid}) == 1 and len(valid) == 2 * 5  # one speaker's index 5-9


def script_recipe(model: str) -> list[str]:
    """The ``audioseq train`` flags ``scripts/train_digits.sh`` gives ``model``: its recipe array and
    the sample rate every model shares."""
    text = (SCRIPTS / "train_digits.sh").read_text()
    found = re.search(rf"^\s*{re.escape(model)}\) recipe=\((.*?)\) ;;", text, re.MULTILINE | re.DOTALL)
    assert found, f"no recipe for {model} in train_digits.sh"
    shared = re.search(r"audioseq train .*?(--sample-rate \d+)", text, re.DOTALL)
    assert shared, "train_digits.sh does not set the sample rate"
    return shlex.split(shared.group(1)) + shlex.split(found.group(1), comments=True)


@pytest.mark.parametrize("model", ["digits", "digits-lstm"])
def test_the_bundled_models_were_trained_with_the_scripts_recipe(
    model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipe ``audioseq train`` makes of the script's flags is the one the shipped file records,
    so the script retrains the model that ships (a change to either must change both)."""
    if model not in audioseq.bundled_models():
        pytest.skip(f"{model} is not built")
    made = {}

    def capture(dataset: object, config: audioseq.TrainConfig, **kwargs: object) -> None:
        made["recipe"] = config.to_dict()
        raise SystemExit(0)

    monkeypatch.setattr(audioseq.training, "train", capture)
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(cli, ["train", "--dataset", "synthetic", "--out", str(out), *script_recipe(model)])
    assert result.exit_code == 0 and "recipe" in made, result.output
    recipe = json.loads(json.dumps(made["recipe"]))  # tuples as the file's JSON holds them
    shipped = audioseq.load(model).metrics["recipe"]
    assert {k: recipe.get(k) for k in shipped} == shipped
