"""Training: results, checkpoints, and a run killed at any point resuming to the very same weights."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

import audioseq
import audioseq.training
from audioseq.dataset import Example
from audioseq.errors import ModelFileError
from audioseq.modelfile import read_tensors, write_tensors
from audioseq.training import TrainConfig, checkpoint_path, detect_sample_rate, metrics_file
from conftest import TINY_DATASET_OPTS, TINY_TRAIN_ARGS, entry_point, run_cli, sweep, write_wav

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_config(**changes: Any) -> TrainConfig:
    settings: dict[str, Any] = dict(hidden_size=16, num_layers=1, epochs=3, seed=3)
    settings.update(changes)
    return TrainConfig(**settings)


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"tensor {name!r} differs"


# --- what a run gives -----------------------------------------------------------------------------


def test_train_returns_history_metrics_and_a_classifier(trained: Any) -> None:
    assert [row["epoch"] for row in trained.history] == [1, 2]
    for row in trained.history:
        assert np.isfinite(row["train_loss"]) and np.isfinite(row["valid_loss"])
        assert 0.0 <= row["valid_accuracy"] <= 1.0
    metrics = trained.metrics
    assert metrics["best_epoch"] in (1, 2) and metrics["epochs_run"] == 2
    assert metrics["train_clips"] == 5 * 9  # per_class=12: examples 0-6, 10 and 11 of each class train
    assert metrics["valid"]["count"] == 5 * 2 and metrics["test"]["count"] == 5
    assert trained.classifier.labels == sorted(audioseq.load_dataset("synthetic", None, TINY_DATASET_OPTS).labels)


def test_the_saved_model_reproduces_the_reported_test_scores(trained: Any, trained_model_file: Path) -> None:
    assert not checkpoint_path(trained_model_file).exists()
    clf = audioseq.load(trained_model_file)
    data = audioseq.load_dataset("synthetic", None, TINY_DATASET_OPTS)
    scores = audioseq.evaluate(clf, data, split="test")
    assert scores["confusion_matrix"] == trained.metrics["test"]["confusion_matrix"]
    assert clf.metrics["test"]["accuracy"] == trained.metrics["test"]["accuracy"]
    _assert_same_tensors(read_tensors(trained_model_file)[0],
                         {k: v.detach() for k, v in trained.classifier.model.state_dict().items()})


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not() -> None:
    data = audioseq.load_dataset("synthetic", None, {"per_class": 4})
    runs = [audioseq.train(data, _tiny_config(epochs=1, seed=seed)).classifier.model.state_dict()
            for seed in (3, 3, 4)]
    _assert_same_tensors(runs[0], runs[1])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_unreadable_training_clips_are_skipped_with_a_warning(tmp_path: Path) -> None:
    # Enough clips that decoding runs in worker processes, as it does on real datasets.
    examples = [Example(write_wav(tmp_path / f"{i}.wav", sweep(0.2, 8000, seed=i), 8000), "ab"[i % 2], "train")
                for i in range(90)]
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    examples.append(Example(broken, "a", "train"))
    with pytest.warns(UserWarning, match=r"left out 1 clip\(s\) that cannot be used \(1 UnreadableAudioError\)") as caught:
        result = audioseq.train(examples, _tiny_config(epochs=1, hidden_size=4, augment=None))
    assert caught[0].filename == __file__  # the warning points at the caller, not into audioseq
    assert result.metrics["train_clips"] + result.metrics["valid"]["count"] == 90
    [skipped] = result.metrics["skipped"]
    assert result.metrics["skipped_count"] == 1
    assert skipped["source"] == str(broken) and skipped["error_type"] == "UnreadableAudioError"
    assert "not a recognised audio format" in skipped["error"]


def _clips(n: int, label: str, split: str | None, seed: int = 0) -> list[Example]:
    freq = {"a": 300.0, "b": 900.0, "c": 1500.0}[label]
    t = np.arange(2400) / 8000
    rng = np.random.default_rng(seed)
    return [Example((np.sin(2 * np.pi * freq * (1 + 0.05 * i) * t).astype(np.float32)
                     + 0.01 * rng.standard_normal(t.size).astype(np.float32), 8000), label, split)
            for i in range(n)]


def test_rows_marked_valid_are_the_validation_and_rows_without_a_split_are_trained_on() -> None:
    examples = (_clips(6, "a", "train") + _clips(6, "b", "train") + _clips(4, "a", None, 1) + _clips(4, "b", None, 1)
                + _clips(3, "a", "valid", 2) + _clips(3, "b", "valid", 2))
    result = audioseq.train(examples, _tiny_config(epochs=1, augment=None))
    assert result.metrics["train_clips"] == 20  # train and unmarked rows
    assert result.metrics["valid"]["count"] == 6  # exactly the rows marked valid


def test_training_preprocesses_each_clip_once_as_prediction_does(tmp_path: Path) -> None:
    """Workers preprocess the clips as prediction does; after augmentation a batch trims them and sets
    their level again, but neither filters them again nor cuts them to the noise floor again, which
    would not be what prediction does."""
    from audioseq.preprocess import Preprocess
    from audioseq.training import Trainer

    rng = np.random.default_rng(0)
    examples = []
    for i in range(8):
        t = np.arange(8000) / 8000
        word = np.sin(2 * np.pi * (300 + 60 * i) * t) * np.exp(-((t - 0.5) / 0.12) ** 2)
        room = 0.01 * rng.standard_normal(t.size)  # quiet room noise around the word
        examples.append(Example(write_wav(tmp_path / f"{i}.wav", (0.5 * word + room).astype(np.float32), 8000),
                                "ab"[i % 2], "train" if i < 6 else "valid"))
    config = _tiny_config(augment=None, preprocess=Preprocess(highpass_hz=100.0, floor_db=10.0))
    trainer = Trainer(config, ["a", "b"], examples[:6], examples[6:])
    trainer.prepare_data()
    # What prediction reads, to rounding (the level is set twice).
    for ex, wave in zip(examples, trainer.train_waves):
        cleaned, read = trainer._clean(wave), trainer.frontend.prepare(ex.audio)
        assert cleaned.shape == read.shape and torch.allclose(cleaned, read, atol=1e-6)
    for ex, wave in zip(examples[6:], trainer.valid_waves):
        read = trainer.frontend.prepare(ex.audio)
        assert wave.shape == read.shape and torch.allclose(wave, read, atol=1e-6)


def test_the_best_epoch_is_chosen_by_macro_f1_not_by_accuracy(monkeypatch: pytest.MonkeyPatch) -> None:
    """On imbalanced validation an epoch that always answers the common class has the best accuracy."""
    from audioseq.training import Trainer

    scripted = [{"accuracy": 0.90, "macro_f1": 0.47, "loss": 0.5},   # all "a": 90% of the clips
                {"accuracy": 0.89, "macro_f1": 0.76, "loss": 0.6},   # finds most of the rare "b"
                {"accuracy": 0.90, "macro_f1": 0.47, "loss": 0.4}]
    calls: list[int] = []

    def evaluate_waves(self: Any, waves: Any, targets: Any) -> dict[str, float]:  # one call an epoch, then the last
        calls.append(1)
        return scripted[min(len(calls), len(scripted)) - 1]

    monkeypatch.setattr(Trainer, "evaluate_waves", evaluate_waves)
    examples = _clips(6, "a", "train") + _clips(6, "b", "train") + _clips(2, "a", "valid") + _clips(2, "b", "valid")
    result = audioseq.train(examples, _tiny_config(epochs=3, augment=None, patience=5))
    assert result.metrics["best_epoch"] == 2


def test_the_loss_sees_each_batch_as_trained_and_a_subclass_can_add_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trainer.loss gets each batch's logits, targets and clips (as augmented and preprocessed
    again); what it returns is what is minimised."""
    from audioseq.training import Trainer

    seen: list[tuple[int, int, int, float]] = []

    class Recording(Trainer):
        def loss(self, logits: torch.Tensor, targets: torch.Tensor, waves: list[torch.Tensor]) -> torch.Tensor:
            base = super().loss(logits, targets, waves)
            seen.append((logits.shape[0], targets.shape[0], len(waves), float(base.detach())))
            return base + 100.0  # a constant: the gradient, and so the weights, stay as without it

    examples = _clips(6, "a", "train") + _clips(6, "b", "train") + _clips(2, "a", "valid") + _clips(2, "b", "valid")
    plain = audioseq.train(examples, _tiny_config(epochs=2, batch_size=4))
    monkeypatch.setattr(audioseq.training, "Trainer", Recording)
    added = audioseq.train(examples, _tiny_config(epochs=2, batch_size=4))
    assert [(b, t, w) for b, t, w, _ in seen] == [(4, 4, 4)] * 6  # 12 clips in batches of 4, 2 epochs
    assert all(math.isfinite(loss) and loss > 0 for *_, loss in seen)
    assert [row["train_loss"] for row in added.history] == pytest.approx([row["train_loss"] + 100 for row in plain.history])
    _assert_same_tensors(plain.classifier.model.state_dict(), added.classifier.model.state_dict())


def test_a_label_without_training_clips_is_refused() -> None:
    examples = _clips(6, "a", "train") + _clips(6, "b", "train") + _clips(3, "c", "test")
    with pytest.raises(ValueError, match=r"no readable training clip of 'c': the model would have classes it never"):
        audioseq.train(examples, _tiny_config(epochs=1))
    with pytest.raises(ValueError, match=r"no training examples: all 6 are marked valid or test"):
        audioseq.train(_clips(3, "a", "valid") + _clips(3, "b", "test"), _tiny_config(epochs=1))


def test_resume_without_a_model_file_is_refused() -> None:
    with pytest.raises(ValueError, match="resume=True needs out"):
        audioseq.train(_clips(3, "a", None) + _clips(3, "b", None), _tiny_config(epochs=1), resume=True)


def test_labels_that_differ_only_in_case_or_spaces_are_named() -> None:
    examples = _clips(4, "a", None) + [Example(ex.audio, "A ", None) for ex in _clips(4, "b", None)]
    with pytest.warns(UserWarning, match=r"differ only in case or spaces are separate classes: 'A ' and 'a'"):
        audioseq.train(examples, _tiny_config(epochs=1, augment=None))


def test_labels_must_be_strings() -> None:
    examples = [Example(ex.audio, 0 if ex.label == "a" else 1, ex.split)  # type: ignore[arg-type]
                for ex in _clips(4, "a", None) + _clips(4, "b", None)]
    with pytest.raises(ValueError, match=r"labels must be strings .* got 0 \(int\)"):
        audioseq.train(examples, _tiny_config(epochs=1))


def test_a_test_split_that_cannot_be_scored_keeps_the_trained_model(tmp_path: Path) -> None:
    missing = [Example(str(tmp_path / f"gone{i}.wav"), "a", "test") for i in range(3)]
    out = tmp_path / "m.safetensors"
    with pytest.warns(UserWarning, match="the test split could not be scored"):
        result = audioseq.train(_clips(6, "a", None) + _clips(6, "b", None) + missing,
                                _tiny_config(epochs=1, augment=None), out=out)
    assert "test" not in result.metrics and "none of the 3 clips" in result.metrics["test_error"]
    assert audioseq.load(out).labels == ["a", "b"]


# --- interrupted and resumed ------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _stop_after(epoch: int) -> Any:
    def callback(row: dict[str, Any]) -> None:
        if row["epoch"] >= epoch:
            raise _Stop

    return callback


def test_resume_takes_the_same_files_however_spelled_and_on_another_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    waves = [(_clips(1, label, None, seed=i)[0].audio[0], label) for i in range(6) for label in "ab"]
    names = [write_wav(tmp_path / f"{label}{i}.wav", wave, 8000) for i, (wave, label) in enumerate(waves)]
    absolute = [Example(str(name), label) for name, (_, label) in zip(names, waves)]
    out = tmp_path / "m.safetensors"
    with pytest.raises(_Stop):
        audioseq.train(absolute, _tiny_config(augment=None, device="auto"), out=out, callback=_stop_after(1))
    monkeypatch.chdir(tmp_path)
    relative = [Example(Path(ex.audio).name, ex.label) for ex in absolute]
    resumed = audioseq.train(relative, _tiny_config(augment=None, device="cpu"), out=out, resume=True)
    assert resumed.metrics["resumed_after_epoch"] == 1


def test_mixed_sample_rates_warn_that_lower_rate_clips_are_upsampled() -> None:
    wave = np.zeros(800, dtype=np.float32)
    mixed = [Example((wave, 8000), "a")] * 2 + [Example((wave, 22050), "b")] * 3
    with pytest.warns(UserWarning, match=r"8000 Hz: 2, 22050 Hz: 3.*takes the most common, 22050 Hz.*8000 Hz are upsampled"):
        assert detect_sample_rate(mixed) == 22050
    # The most common rate being the lowest loses nothing: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert detect_sample_rate([Example((wave, 8000), "a")] * 3 + [Example((wave, 16000), "b")]) == 8000


@pytest.mark.parametrize("stop_after", [1, 2])
def test_an_interrupted_run_resumes_to_the_same_weights(stop_after: int, tmp_path: Path) -> None:
    data = audioseq.load_dataset("synthetic", None, TINY_DATASET_OPTS)
    whole = audioseq.train(data, _tiny_config(), out=tmp_path / "whole.safetensors")
    out = tmp_path / "resumed.safetensors"
    with pytest.raises(_Stop):
        audioseq.train(data, _tiny_config(), out=out, callback=_stop_after(stop_after))
    _, document = read_tensors(checkpoint_path(out), require_document=True)
    assert document["kind"] == "checkpoint" and document["epoch"] == stop_after
    assert len(document["history"]) == stop_after
    resumed = audioseq.train(data, _tiny_config(), out=out, resume=True)
    assert resumed.history == whole.history
    assert resumed.metrics["test"] == whole.metrics["test"]
    _assert_same_tensors(read_tensors(out)[0], read_tensors(tmp_path / "whole.safetensors")[0])
    assert not checkpoint_path(out).exists()


def test_resume_refuses_a_checkpoint_from_other_settings(tmp_path: Path) -> None:
    data = audioseq.load_dataset("synthetic", None, TINY_DATASET_OPTS)
    out = tmp_path / "m.safetensors"
    with pytest.raises(_Stop):
        audioseq.train(data, _tiny_config(), out=out, callback=_stop_after(1))
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.005 then, 0.001 now\); remove it"):
        audioseq.train(data, _tiny_config(lr=1e-3), out=out, resume=True)
    other_data = audioseq.load_dataset("synthetic", None, {"per_class": 11})
    with pytest.raises(ValueError, match=r"other data \(\d+ training and \d+ validation clips then, \d+ and \d+ now\)"):
        audioseq.train(other_data, _tiny_config(), out=out, resume=True)
    assert checkpoint_path(out).exists()  # refused, not deleted
    # The same number of clips with other samples: in-memory clips are known by their samples, not their names.
    resampled = audioseq.load_dataset("synthetic", None, {**TINY_DATASET_OPTS, "seed": 1})
    with pytest.raises(ValueError, match="other data"):
        audioseq.train(resampled, _tiny_config(), out=out, resume=True)


def _tamper(path: Path, change: str) -> None:
    tensors, document = read_tensors(path, require_document=True)
    if change == "epoch below zero":
        document["epoch"] = -3
    elif change == "more epochs than the run has":
        document["epoch"] = 10**6
    elif change == "history not a list":
        document["history"] = {"epoch": 1}
    elif change == "history rows not objects":
        document["history"] = [5] * len(document["history"])
    elif change == "best_key of words":
        document["best_key"] = ["best", "ever"]
    elif change == "optimiser state of another shape":
        name = next(k for k in tensors if k.startswith("optim.") and k.endswith(".exp_avg"))
        tensors[name] = torch.zeros(3)
    elif change == "a weight missing":
        del tensors[next(k for k in tensors if k.startswith("model."))]
    write_tensors(path, tensors, document)


@pytest.mark.parametrize("change", ["epoch below zero", "more epochs than the run has", "history not a list",
                                    "history rows not objects", "best_key of words", "optimiser state of another shape", "a weight missing"])
def test_a_damaged_checkpoint_is_a_model_file_error_and_is_kept(change: str, tmp_path: Path) -> None:
    data = audioseq.load_dataset("synthetic", None, TINY_DATASET_OPTS)
    out = tmp_path / "m.safetensors"
    with pytest.raises(_Stop):
        audioseq.train(data, _tiny_config(), out=out, callback=_stop_after(1))
    _tamper(checkpoint_path(out), change)
    with pytest.raises(ModelFileError, match="cannot resume from this checkpoint") as caught:
        audioseq.train(data, _tiny_config(), out=out, resume=True)
    assert caught.value.path == str(checkpoint_path(out))
    assert checkpoint_path(out).exists() and not out.exists()


def test_a_run_whose_validation_clips_are_all_unreadable_checkpoints_and_resumes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    examples = (_clips(6, "a", "train") + _clips(6, "b", "train")
                + [Example(str(junk), "a", "valid"), Example(str(junk), "b", "valid")])
    out = tmp_path / "m.safetensors"
    with pytest.raises(_Stop), pytest.warns(UserWarning, match="validation clips: left out 2 clip"):
        audioseq.train(examples, _tiny_config(augment=None), out=out, callback=_stop_after(1))
    with pytest.warns(UserWarning, match="validation clips: left out 2 clip"):
        resumed = audioseq.train(examples, _tiny_config(augment=None), out=out, resume=True)
    assert resumed.metrics["resumed_after_epoch"] == 1 and len(resumed.history) == 3
    assert all(math.isnan(row["valid_accuracy"]) for row in resumed.history)
    assert audioseq.load(out).labels == ["a", "b"]


def test_labels_with_control_characters_are_refused_before_training() -> None:
    examples = _clips(3, "a", None) + [Example(ex.audio, "b\tc") for ex in _clips(3, "b", None)]
    with pytest.raises(ValueError, match=r"labels must not hold control characters .*'b\\tc'"):
        audioseq.train(examples, _tiny_config(epochs=1))


def test_labels_that_are_not_unicode_are_refused_before_training() -> None:
    label = os.fsdecode(b"caf\xe9")  # a Latin-1 folder name on a UTF-8 system
    examples = _clips(3, "a", None) + [Example(ex.audio, label) for ex in _clips(3, "b", None)]
    with pytest.raises(ValueError, match=r"labels must be Unicode text"):
        audioseq.train(examples, _tiny_config(epochs=1))


def test_a_clip_whose_file_name_is_not_utf8_trains(tmp_path: Path) -> None:
    examples = []
    for label, freq in (("a", 300.0), ("b", 900.0)):
        folder = tmp_path / label
        folder.mkdir()
        for i in range(3):
            name = os.fsdecode(b"clip-\xe9-%d.wav" % i)  # not UTF-8: the fingerprint must still hash it
            wave = np.sin(2 * np.pi * freq * (1 + 0.05 * i) * np.arange(2400) / 8000)
            sf.write(os.fsencode(folder / name), wave, 8000, subtype="PCM_16")
            examples.append(Example(str(folder / name), label))
    result = audioseq.train(examples, _tiny_config(epochs=1, augment=None))
    assert result.classifier.labels == ["a", "b"]


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint holds, or None while there is none (it is replaced atomically)."""
    try:
        _, document = read_tensors(path, require_document=True)
    except ModelFileError:
        return None
    return int(document["epoch"])


def test_an_interrupted_run_says_how_to_resume_and_its_checkpoint_is_not_taken_for_a_model(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    args = ["train", "--dataset", "synthetic", "--epochs", "30", *TINY_TRAIN_ARGS, "--out", str(out)]
    # Ctrl-C in a terminal: SIGINT at its default disposition, which a suite started in the
    # background of a non-interactive shell (SIGINT ignored, and inherited) would not give
    proc = subprocess.Popen(entry_point() + [str(a) for a in args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while (_checkpoint_epoch(checkpoint_path(out)) or 0) < 1:
            assert proc.poll() is None, f"training ended before it could be interrupted: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert f"interrupted: {checkpoint_path(out)} holds the epochs finished; run the same command with --resume" in stderr
    with pytest.raises(ModelFileError, match="is a training checkpoint, not a model: run the training command again"):
        audioseq.load(checkpoint_path(out))
    resumed = run_cli(*args, "--resume", "--epochs", "30")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.startswith(f"resuming from {checkpoint_path(out)}")


def test_a_killed_training_process_resumes_to_exactly_the_uninterrupted_weights(tmp_path: Path) -> None:
    epochs = 6
    args = ["train", "--dataset", "synthetic", "--epochs", epochs, "--seed", "3", *TINY_TRAIN_ARGS]
    (tmp_path / "whole").mkdir()
    (tmp_path / "killed").mkdir()
    whole_out, out = tmp_path / "whole" / "m.safetensors", tmp_path / "killed" / "m.safetensors"

    reference = run_cli(*args, "--out", whole_out)
    assert reference.returncode == 0, reference.stderr

    ckpt = checkpoint_path(out)
    proc = subprocess.Popen(entry_point() + [str(a) for a in args] + ["--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while (_checkpoint_epoch(ckpt) or 0) < 2:
            assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 240 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    killed_at = _checkpoint_epoch(ckpt)
    assert killed_at is not None and 2 <= killed_at < epochs

    # Mark the restored history (it does not steer training) to see the run really resumed.
    tensors, document = read_tensors(ckpt, require_document=True)
    document["history"][0]["train_loss"] = 12345.0
    write_tensors(ckpt, tensors, document)

    resumed = run_cli(*args, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_tensors(read_tensors(out)[0], read_tensors(whole_out)[0])
    assert read_tensors(out)[1]["network"] == read_tensors(whole_out)[1]["network"]
    history = json.loads(out.with_suffix(".metrics.json").read_text())["history"]
    whole_history = json.loads(whole_out.with_suffix(".metrics.json").read_text())["history"]
    assert history[0]["train_loss"] == 12345.0  # from the checkpoint: epochs 1..killed_at were not rerun
    assert history[1:] == whole_history[1:]
    assert not ckpt.exists()


# --- fine-tuning a trained model ------------------------------------------------------------------


def test_fine_tuning_starts_from_the_model_and_keeps_its_design(trained: Any) -> None:
    base = trained.classifier
    data = audioseq.load_dataset("synthetic", None, {"per_class": 4, "seed": 5})
    # Settings that would build another network are ignored: the weights decide them.
    ignored = dict(cell="rnn", hidden_size=99, num_layers=3, feature="logmel", sample_rate=16000, epochs=1)
    still = audioseq.train(data, TrainConfig(**ignored, lr=0.0), init=base).classifier  # lr 0: nothing moves
    moved = audioseq.train(data, TrainConfig(**ignored, lr=3e-3), init=base).classifier
    for clf in (still, moved):
        assert clf.labels == base.labels and clf.sample_rate == base.sample_rate
        assert clf.spec.network == base.spec.network
        assert (clf.spec.feature, clf.spec.feature_params) == (base.spec.feature, base.spec.feature_params)
        assert clf.spec.preprocess == base.spec.preprocess
        assert clf.metrics["init"] == base.path
        for stat in ("norm.mean", "norm.std"):  # the statistics the weights were trained with
            assert torch.equal(clf.model.state_dict()[stat], base.model.state_dict()[stat])
    _assert_same_tensors(still.model.state_dict(), base.model.state_dict())
    assert any(not torch.equal(moved.model.state_dict()[k], v) for k, v in base.model.state_dict().items())


def test_fine_tuning_learns_from_the_new_data(trained: Any) -> None:
    """The two chirps swapped in the new data: the fine-tuned model follows the new labels on
    clips neither run has seen (all right with seeds 0 and two others, against none before)."""
    base = trained.classifier
    a, b = base.labels[:2]
    swap = {a: b, b: a}
    data = audioseq.load_dataset("synthetic", None, {"per_class": 12, "seed": 9})
    examples = [Example(ex.audio, swap.get(ex.label, ex.label), ex.split, ex.group) for ex in data.examples()]
    tuned = audioseq.train(examples, TrainConfig(epochs=20, lr=1e-2, seed=0), init=base)
    fresh = audioseq.load_dataset("synthetic", None, {"per_class": 12, "seed": 11}).examples()
    test = [Example(ex.audio, swap[ex.label], None, None) for ex in fresh if ex.label in swap]
    before = [p.label for p in base.predict([ex.audio for ex in test])]
    after = [p.label for p in tuned.classifier.predict([ex.audio for ex in test])]
    truth = [ex.label for ex in test]
    assert np.mean([p == t for p, t in zip(after, truth)]) >= 0.8
    assert np.mean([p == t for p, t in zip(before, truth)]) <= 0.2


def test_fine_tuning_refuses_labels_the_model_does_not_know(trained: Any) -> None:
    ex = Example((sweep(0.4, 8000), 8000), "whistle", "train", None)
    with pytest.raises(ValueError, match="does not know: whistle"):
        audioseq.train([ex, ex], TrainConfig(epochs=1), init=trained.classifier)
    with pytest.raises(ValueError, match="differ from those of the model"):
        audioseq.train(audioseq.load_dataset("synthetic", None, {"per_class": 4}), TrainConfig(epochs=1),
                       init=trained.classifier, labels=["x", "y"])


def test_cli_fine_tunes_a_model_file(trained_model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned.safetensors"
    proc = run_cli("train", "--dataset", "synthetic", "--dataset-opt", "per_class=4", "--dataset-opt", "seed=2",
                   "--init", trained_model_file, "--cell", "gru", "--epochs", "1", "--lr", "1e-3", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "warning: --init keeps the model's cell; ignoring --cell\n" in proc.stderr  # not silently
    tuned, base = audioseq.load(out), audioseq.load(trained_model_file)
    assert tuned.spec.network == base.spec.network and tuned.labels == base.labels
    assert json.loads(out.with_suffix(".metrics.json").read_text())["init"] == str(trained_model_file)
    default_lr = tmp_path / "default-lr.safetensors"  # --lr not given: the fine-tuning rate
    proc = run_cli("train", "--dataset", "synthetic", "--dataset-opt", "per_class=4", "--init", trained_model_file,
                   "--epochs", "1", "--out", default_lr)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(default_lr.with_suffix(".metrics.json").read_text())["recipe"]["lr"] == 1e-3


def test_an_interrupted_fine_tuning_resumes_to_the_same_weights(trained: Any, tmp_path: Path) -> None:
    data = audioseq.load_dataset("synthetic", None, {"per_class": 4, "seed": 5})
    config = TrainConfig(epochs=3, lr=1e-3, seed=2)
    whole = audioseq.train(data, config, out=tmp_path / "whole.safetensors", init=trained.classifier)
    out = tmp_path / "resumed.safetensors"
    with pytest.raises(_Stop):
        audioseq.train(data, config, out=out, callback=_stop_after(1), init=trained.classifier)
    other = copy.deepcopy(trained.classifier)  # the same design, other starting weights
    with torch.no_grad():
        other.model.head.bias.add_(0.5)
    with pytest.raises(ValueError, match=r"other data \(other clips, labels or starting weights\)"):
        audioseq.train(data, config, out=out, resume=True, init=other)
    resumed = audioseq.train(data, config, out=out, resume=True, init=trained.classifier)
    assert resumed.history == whole.history
    _assert_same_tensors(read_tensors(out)[0], read_tensors(tmp_path / "whole.safetensors")[0])


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("epochs", 0, "epochs must be an integer ≥ 1, got 0"),
    ("num_layers", 0, "num_layers must be an integer ≥ 1"),
    ("hidden_size", 2.5, "hidden_size must be an integer ≥ 1, got 2.5"),
    ("batch_size", True, "batch_size must be an integer ≥ 1, got True"),
    ("patience", -1, "patience must be an integer ≥ 1"),
    ("sample_rate", 0, "sample_rate must be None (the data's) or an integer ≥ 1 Hz, got 0"),
    ("lr", float("nan"), "lr must be ≥ 0, got nan"),
    ("max_seconds", 0.0, "max_seconds must be above 0"),
    ("weight_decay", -0.1, "weight_decay must be ≥ 0"),
    ("dropout", 1.0, "dropout must be ≥ 0 and below 1, got 1.0"),
    ("label_smoothing", -0.1, "label_smoothing must be ≥ 0 and below 1"),
    ("valid_fraction", 0.0, "valid_fraction must be above 0 and below 1, got 0.0"),
])
def test_a_setting_that_cannot_train_is_refused_when_the_config_is_made(setting: str, value: Any, message: str) -> None:
    with pytest.raises(audioseq.ParameterError, match=re.escape(message)):
        TrainConfig(**{setting: value})
    assert TrainConfig(sample_rate=8000, dropout=0.0).sample_rate == 8000  # the edges that can train


@pytest.mark.parametrize(("out", "metrics"), [
    ("m.safetensors", "m.metrics.json"), ("runs/m.v1", "runs/m.v1.metrics.json"), ("m", "m.metrics.json"),
])
def test_the_metrics_file_sits_beside_the_model_without_taking_another_models_name(out: str, metrics: str) -> None:
    assert metrics_file(out) == Path(metrics)
