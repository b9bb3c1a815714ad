"""The Python API: ``audioseq.load`` and ``Classifier.predict`` / ``predict_iter``.

Batching must not change a clip's prediction, every input gets exactly one row in order,
bad inputs become typed error rows, decoding is lazy, and damaged model files are refused
with a typed error naming the file.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import safetensors.torch
import soundfile as sf
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import audioseq
import audioseq.pipeline
from audioseq.errors import (
    AudioTooShortError,
    EmptyAudioError,
    ModelFileError,
    NonFiniteAudioError,
    UnknownComponentError,
)
from audioseq.export import exportable, onnxruntime_available
from audioseq.modelfile import METADATA_KEY, read_tensors, write_tensors
from conftest import sweep, tiny_classifier, write_wav
from corpus import BAD_CASES

pytestmark = pytest.mark.usefixtures("one_thread")

POOLINGS = ("last", "mean", "attention")
RATES = (8000, 16000, 22050, 44100, 48000)


def probs(prediction: Any) -> np.ndarray:
    assert prediction.error is None, f"{prediction.source}: {prediction.error_type}: {prediction.error}"
    return np.array(list(prediction.probabilities.values()))


def assert_valid_prediction(prediction: Any, labels: list[str]) -> None:
    p = probs(prediction)
    assert list(prediction.probabilities) == labels
    assert np.isfinite(p).all() and (p >= 0).all()
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert prediction.label == labels[int(p.argmax())]
    assert prediction.confidence == pytest.approx(p.max())
    assert prediction.error_type is None


# --- batching never changes a prediction ----------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell", audioseq.list_cells())
def test_prediction_does_not_depend_on_the_batch(cell: str, pooling: str, bidirectional: bool, backend: str) -> None:
    clf = tiny_classifier(cell, pooling, bidirectional, backend=backend)
    if backend == "onnxruntime" and (not onnxruntime_available() or exportable(clf.model)):
        pytest.skip(f"{cell} has no ONNX form here: runs on torch")
    short = (sweep(0.25, 8000, seed=1), 8000)
    longer = [(sweep(0.6, 8000, seed=2), 8000), (sweep(0.9, 16000, seed=3), 16000)]
    alone = probs(clf.predict([short])[0])
    batched = clf.predict([longer[0], short, longer[1]], batch_size=8)
    np.testing.assert_allclose(probs(batched[1]), alone, rtol=0, atol=1e-5)
    # Log-probabilities too, where a saturated random network would hide a difference in probabilities.
    kept = alone > 1e-6
    np.testing.assert_allclose(log(probs(batched[1]))[kept], log(alone)[kept], rtol=0, atol=1e-4)
    for other in (batched[0], batched[2]):  # the comparison is sharp enough to see another clip
        assert np.abs(log(probs(other)) - log(alone)).max() > 1e-3
    # and the longest clip is unchanged by the shorter ones
    np.testing.assert_allclose(probs(batched[2]), probs(clf.predict([longer[1]])[0]), rtol=0, atol=1e-5)


def log(p: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(p, 1e-38))


# --- one row per input, in order ----------------------------------------------------------

_KINDS = {
    "good": None,
    "empty": EmptyAudioError,
    "nan": NonFiniteAudioError,
    "short": AudioTooShortError,
}


def _make_input(kind: str, seed: int) -> tuple[np.ndarray, int]:
    if kind == "empty":
        return np.zeros(0, dtype=np.float32), 8000
    if kind == "nan":
        wave = sweep(0.2, 8000, seed=seed)
        wave[seed % len(wave)] = np.nan
        return wave, 8000
    if kind == "short":
        return sweep(0.01, 8000, seed=seed), 8000  # 80 samples; one frame needs 256
    return sweep(0.1 + (seed % 4) * 0.1, 8000, seed=seed), 8000


@settings(max_examples=25, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(sorted(_KINDS)), min_size=1, max_size=14),
    batch_size=st.integers(1, 5),
)
def test_predict_iter_gives_one_row_per_input_in_order(kinds: list[str], batch_size: int) -> None:
    clf = _shared_classifier()
    inputs = [_make_input(kind, seed) for seed, kind in enumerate(kinds)]
    names = [f"clip-{i}-{kind}" for i, kind in enumerate(kinds)]
    rows = list(clf.predict_iter(inputs, batch_size=batch_size, num_workers=0, names=names))
    assert [r.source for r in rows] == names
    for kind, row, source in zip(kinds, rows, inputs):
        expected = _KINDS[kind]
        if expected is None:
            assert_valid_prediction(row, clf.labels)
            np.testing.assert_allclose(probs(row), _alone(source), rtol=0, atol=1e-5)
        else:
            assert row.error_type == expected.__name__, row
            assert row.label is None and row.confidence is None and row.probabilities == {}
            assert row.error and not row.ok
    assert len(clf.predict(inputs, batch_size=batch_size)) == len(inputs)


_CACHE: dict[str, Any] = {}


def _shared_classifier() -> Any:
    if "clf" not in _CACHE:
        _CACHE["clf"] = tiny_classifier("lstm", "attention", True, num_layers=1)
    return _CACHE["clf"]


def _alone(source: tuple[np.ndarray, int]) -> np.ndarray:
    key = f"{source[1]}:{hash(source[0].tobytes())}"
    if key not in _CACHE:
        _CACHE[key] = probs(_shared_classifier().predict([source])[0])
    return _CACHE[key]


def test_a_single_input_need_not_be_a_list(good_wavs: list[Path]) -> None:
    clf = tiny_classifier()
    wave, rate = sweep(0.5, 8000), 8000
    for single in (str(good_wavs[0]), good_wavs[0], (wave, rate)):
        rows = clf.predict(single)
        assert len(rows) == 1
        assert_valid_prediction(rows[0], clf.labels)
    assert clf.predict(str(good_wavs[0]))[0].source == str(good_wavs[0])
    assert clf.predict((wave, rate))[0].source == "<waveform>"
    assert clf.predict([]) == []


def test_a_sample_rate_held_in_a_0d_tensor_or_numpy_scalar_is_one_clip() -> None:
    clf = tiny_classifier()
    wave = sweep(0.5, 8000)
    expected = probs(clf.predict((wave, 8000))[0])
    for rate in (torch.tensor(8000), np.int64(8000), np.array(8000.0), torch.tensor(8000.0)):
        [row] = clf.predict((wave, rate))
        np.testing.assert_allclose(probs(row), expected, atol=1e-6)
    [row] = clf.predict([(wave, torch.tensor(True))])
    assert row.error_type == "UnreadableAudioError" and "sample rate must be a number of Hz" in row.error


def test_predict_iter_checks_its_arguments_when_called() -> None:
    clf = tiny_classifier()
    with pytest.raises(audioseq.ParameterError, match="batch_size must be an integer ≥ 1, got 0"):
        clf.predict_iter(["never-read.wav"], batch_size=0)  # not only once the first row is asked for
    with pytest.raises(audioseq.ParameterError, match="num_workers must be an integer ≥ 0 or None, got -1"):
        clf.predict_iter(["never-read.wav"], num_workers=-1)


def test_silence_is_a_typed_error_unless_the_model_accepts_it() -> None:
    clf = tiny_classifier()
    quiet = 10 ** (-65 / 20) * sweep(0.5, 8000)  # peak at -65 dBFS
    rows = clf.predict([(np.zeros(4000, dtype=np.float32), 8000), (quiet, 8000), (sweep(0.5, 8000), 8000)])
    assert [row.error_type for row in rows] == ["SilentAudioError", "SilentAudioError", None]
    assert rows[1].error == "the clip is silent (its loudest sample is below -60 dBFS)" and rows[1].label is None
    clf.frontend.preprocess = dataclasses.replace(clf.frontend.preprocess, silence_dbfs=None)
    rows = clf.predict([(np.zeros(4000, dtype=np.float32), 8000), (quiet, 8000)])
    assert all(row.error is None and row.label in clf.labels for row in rows)


def test_paths_and_arrays_of_the_same_clip_agree(tmp_path: Path) -> None:
    clf = tiny_classifier("gru", "attention", True)
    wave = sweep(0.7, 16000, seed=5)
    path = tmp_path / "clip.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    by_path, by_array, by_tensor = clf.predict([path, (wave, 16000), (torch.from_numpy(wave), 16000)])
    np.testing.assert_allclose(probs(by_path), probs(by_array), atol=1e-6)
    np.testing.assert_allclose(probs(by_tensor), probs(by_array), atol=1e-6)
    assert by_path.source == str(path)


def test_a_saved_and_loaded_model_predicts_the_same(tmp_path: Path) -> None:
    clf = tiny_classifier("rnn", "last", True)
    clf.save(tmp_path / "m.safetensors")
    loaded = audioseq.load(tmp_path / "m.safetensors")
    assert loaded.labels == clf.labels and loaded.sample_rate == clf.sample_rate
    assert loaded.path == str(tmp_path / "m.safetensors")
    clips = [(sweep(s, 8000, seed=i), 8000) for i, s in enumerate((0.2, 0.9, 1.4))]
    for a, b in zip(clf.predict(clips), loaded.predict(clips)):
        np.testing.assert_array_equal(probs(a), probs(b))


# --- the bad-input corpus --------------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_a_typed_error_row_between_good_ones(
    case: str, bad_corpus: dict[str, tuple[Path, type]], good_wavs: list[Path], tiny_model_file: Path
) -> None:
    path, expected = bad_corpus[case]
    clf = audioseq.load(tiny_model_file)
    rows = clf.predict([good_wavs[0], path, good_wavs[1]], batch_size=2)
    assert [r.source for r in rows] == [str(good_wavs[0]), str(path), str(good_wavs[1])]
    assert rows[1].error_type == expected.__name__, rows[1]
    assert rows[1].error and rows[1].label is None and rows[1].probabilities == {}
    for good in (rows[0], rows[2]):
        assert_valid_prediction(good, clf.labels)


@pytest.mark.parametrize(("bad", "source", "reason"), [
    (None, "<NoneType>", "expected a path or a (waveform, sample_rate) pair, got NoneType"),
    (np.zeros(800, np.float32), "<waveform>", "a bare ndarray has no sample rate: pass (waveform, sample_rate)"),
    ((np.zeros(800, np.float32), 8000, "mono"), "<waveform>", "expected a (waveform, sample_rate) pair, got a tuple of 3"),
])
def test_an_input_that_is_not_a_clip_is_an_error_row_saying_what_to_pass(
    bad: Any, source: str, reason: str, good_wavs: list[Path]
) -> None:
    clf = tiny_classifier()
    rows = clf.predict([good_wavs[0], bad, good_wavs[1]])
    assert rows[1].source == source and rows[1].error_type == "UnsupportedInputError"
    assert rows[1].error is not None and rows[1].error.startswith(reason)
    for good in (rows[0], rows[2]):
        assert_valid_prediction(good, clf.labels)
    with pytest.raises(audioseq.UnsupportedInputError) as caught:  # inspect takes one clip and raises
        clf.inspect(bad)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, audioseq.UnreadableAudioError)


@pytest.mark.parametrize("kind", ["str", "bytes", "Path", "pair", "array", "tensor"])
def test_one_clip_given_alone_is_one_row(kind: str, good_wavs: list[Path]) -> None:
    wave = sweep(0.4, 8000)
    clip = {"str": str(good_wavs[0]), "bytes": os.fsencode(good_wavs[0]), "Path": good_wavs[0],
            "pair": (wave, 8000), "array": wave, "tensor": torch.from_numpy(wave)}[kind]
    clf = tiny_classifier()
    for rows in (clf.predict(clip), list(clf.predict_iter(clip))):
        assert len(rows) == 1
        if kind in ("array", "tensor"):  # a waveform without its rate: one row saying so, not one per sample
            assert rows[0].error_type == "UnsupportedInputError"
        else:
            assert_valid_prediction(rows[0], clf.labels)


@pytest.mark.parametrize("stream", [False, True])
def test_names_stay_with_their_inputs_in_a_list_and_in_a_stream(stream: bool) -> None:
    clips = [(sweep(0.3 + 0.1 * i, 8000, seed=i), 8000) for i in range(5)] + [None]
    names = [f"take {i}" for i in range(6)]
    rows = list(tiny_classifier().predict_iter((c for c in clips) if stream else clips, batch_size=2, names=names))
    assert [r.source for r in rows] == names
    assert rows[-1].error_type == "UnsupportedInputError" and all(r.error is None for r in rows[:-1])


@pytest.mark.parametrize("stream", [False, True])
def test_names_must_give_one_name_per_input(stream: bool) -> None:
    clips = [(sweep(0.3, 8000, seed=i), 8000) for i in range(5)]
    inputs = (c for c in clips) if stream else clips
    with pytest.raises(audioseq.ParameterError, match="names must give one name per input: 3 names"):
        list(tiny_classifier().predict_iter(inputs, names=["a", "b", "c"]))


def test_inputs_that_are_neither_a_clip_nor_iterable_are_refused_at_the_call() -> None:
    with pytest.raises(TypeError, match="inputs must be a clip or an iterable of clips, got int"):
        tiny_classifier().predict_iter(5)


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="watches workers through a patched class")
def test_a_long_stream_is_decoded_by_one_set_of_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A stream of 1,000 clips (many batches and decoding chunks) read through 2 workers: the same 2
    processes decode all of it, started once, and the stream is read only a few chunks ahead."""
    from audioseq.pipeline import Frontend

    log = tmp_path / "pids"
    decode = Frontend.decode

    def logged(self: Frontend, source: Any, name: str) -> torch.Tensor:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return decode(self, source, name)

    monkeypatch.setattr(Frontend, "decode", logged)  # the workers are forked with it
    clips = [(sweep(0.3 + 0.01 * (i % 7), 8000, seed=i), 8000) for i in range(1000)]
    read = []

    def stream() -> Iterator[tuple[np.ndarray, int]]:
        for i, clip in enumerate(clips):
            read.append(i)
            yield clip

    rows = tiny_classifier().predict_iter(stream(), batch_size=2, num_workers=2)
    first = next(rows)
    assert len(read) < 500  # not read whole before the first answer
    rows = [first, *rows]
    assert len(rows) == len(clips) and all(r.error is None for r in rows)
    pids = set(log.read_text().split())
    assert len(pids) == 2 and str(os.getpid()) not in pids


UNPICKLABLE = """
import json, sys
import numpy as np
import audioseq

if __name__ == "__main__":
    clf = audioseq.load(sys.argv[1])
    wave = (0.3 * np.sin(np.arange(4000) * 0.3)).astype("float32")
    with open(sys.argv[1], "rb") as f:
        inputs = [(wave, 8000), f, ((x for x in range(3)), 8000)] * 30
        ways = [clf.predict(inputs, batch_size=4, num_workers=w) for w in (0, 2)]
    print(json.dumps([[[r.label, r.error_type, r.error] for r in rows] for rows in ways]))
"""


def test_inputs_that_cannot_go_to_a_worker_are_rows_not_a_hang(tiny_model_file: Path) -> None:
    """An open file, and a pair holding a generator, cannot be pickled to a decoding worker:
    each is the same row it is when decoding runs in this process, and the rest are classified."""
    proc = subprocess.run([sys.executable, "-c", UNPICKLABLE, str(tiny_model_file)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    in_process, in_workers = json.loads(proc.stdout)
    assert in_workers == in_process and len(in_process) == 90
    assert in_process[1][1:] == ["UnsupportedInputError",
                                 "expected a path or a (waveform, sample_rate) pair, got BufferedReader"]
    assert in_process[2][1] == "UnreadableAudioError" and in_process[0][1] is None


def test_whole_corpus_in_worker_processes_matches_in_process(
    bad_corpus: dict[str, tuple[Path, type]], good_wavs: list[Path], tiny_model_file: Path
) -> None:
    clf = audioseq.load(tiny_model_file)
    bad = [path for path, _ in bad_corpus.values()]
    inputs = list(itertools.chain.from_iterable(zip(bad, itertools.cycle(good_wavs))))
    in_process = clf.predict(inputs, batch_size=3, num_workers=0)
    in_workers = clf.predict(inputs, batch_size=3, num_workers=2)
    assert len(in_workers) == len(inputs)
    expected = {str(path): cls.__name__ for path, cls in bad_corpus.values()}
    for a, b in zip(in_process, in_workers):
        assert a.source == b.source
        assert a.error_type == b.error_type == expected.get(a.source)
        if a.ok:
            np.testing.assert_allclose(probs(a), probs(b), atol=1e-6)


def test_too_short_clips_are_typed_errors(tmp_path: Path) -> None:
    clf = tiny_classifier()
    path = write_wav(tmp_path / "blip.wav", sweep(0.01, 8000), 8000)
    rows = clf.predict([path, (sweep(0.005, 48000), 48000), (sweep(0.5, 8000), 8000)])
    assert [r.error_type for r in rows] == ["AudioTooShortError", "AudioTooShortError", None]
    assert "samples" in rows[0].error


# --- lengths, rates and channel counts --------------------------------------------------------

clip_specs = st.fixed_dictionaries({
    "seconds": st.floats(0.05, 2.0),
    "rate": st.sampled_from(RATES),
    "channels": st.integers(1, 4),
    "amplitude": st.sampled_from([0.0, 1e-6, 0.05, 0.5, 1.0]),
    "seed": st.integers(0, 2**16),
})


def _clip(spec: dict[str, Any]) -> np.ndarray:
    wave = sweep(spec["seconds"], spec["rate"], spec["seed"], spec["channels"])
    return (wave / 0.42 * spec["amplitude"]).astype(np.float32)


def _check(row: Any, labels: list[str], amplitude: float) -> None:
    if amplitude < 10 ** (-60 / 20):  # 0 and 1e-6 (-120 dBFS): below the models' silence level
        assert row.error_type == "SilentAudioError", row
    elif row.error is not None:
        assert row.error_type == "AudioTooShortError", row
    else:
        assert_valid_prediction(row, labels)


@settings(max_examples=40, deadline=None)
@given(spec=clip_specs, channels_first=st.booleans(), dtype=st.sampled_from(["float32", "float64", "int16"]))
@example(spec={"seconds": 0.01, "rate": 48000, "channels": 2, "amplitude": 0.5, "seed": 0},
         channels_first=False, dtype="float32")
def test_any_array_gives_finite_probabilities_or_is_too_short_or_silent(
    spec: dict[str, Any], channels_first: bool, dtype: str
) -> None:
    clf = _shared_classifier()
    wave = _clip(spec)
    if dtype == "int16":
        wave = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)
    else:
        wave = wave.astype(dtype)
    if channels_first and wave.ndim == 2:
        wave = np.ascontiguousarray(wave.T)
    rows = clf.predict([(wave, spec["rate"])])
    assert len(rows) == 1
    _check(rows[0], clf.labels, spec["amplitude"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=clip_specs, subtype=st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]))
def test_any_wav_file_gives_finite_probabilities_or_is_too_short_or_silent(spec: dict[str, Any], subtype: str) -> None:
    clf = _shared_classifier()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.wav"
        sf.write(path, np.clip(_clip(spec), -1, 1), spec["rate"], subtype=subtype)
        rows = clf.predict([path])
    assert len(rows) == 1 and rows[0].source == str(path)
    _check(rows[0], clf.labels, spec["amplitude"])


def _sensitive_classifier(cell: str, bidirectional: bool) -> Any:
    """A random network with a sharpened output layer, so different clips get clearly different answers."""
    clf = tiny_classifier(cell, "attention", bidirectional)
    with torch.no_grad():
        clf.model.head.weight.mul_(10)
    return clf


def _sound(seed: int, rate: int) -> np.ndarray:
    """A tone, a chirp or a pulse train under 3 kHz, so that 8 kHz keeps all of it."""
    rng = np.random.default_rng(seed)
    n = int(rng.uniform(0.3, 1.0) * rate)
    t = np.arange(n) / rate
    kind = seed % 3
    if kind == 0:
        wave = np.sin(2 * np.pi * rng.uniform(200, 1500) * t)
    elif kind == 1:
        freq = np.linspace(rng.uniform(150, 600), rng.uniform(2000, 3000), n)
        wave = np.sin(2 * np.pi * np.cumsum(freq) / rate)
    else:
        wave = np.zeros(n)
        wave[:: int(rate / rng.uniform(8, 30))] = 1.0
        wave = np.convolve(wave, np.hanning(rate // 500), mode="same")
    return (0.5 * wave + 0.01 * rng.standard_normal(n)).astype(np.float32)


def decimate(wave: np.ndarray, factor: int) -> np.ndarray:
    """Another resampler than the engine's: a Kaiser-windowed sinc low-pass, then every factor-th sample."""
    n = np.arange(-32 * factor, 32 * factor + 1)
    cutoff = 0.92 / factor  # of the input Nyquist frequency
    taps = cutoff * np.sinc(cutoff * n) * np.kaiser(len(n), 8.0)
    return np.convolve(wave, taps / taps.sum(), mode="same")[::factor].astype(np.float32)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), cell=st.sampled_from(["rnn", "lstm", "gru"]), bidirectional=st.booleans())
def test_a_48k_clip_and_its_resampled_copy_agree(seed: int, cell: str, bidirectional: bool) -> None:
    clf = _sensitive_classifier(cell, bidirectional)
    assert clf.sample_rate == 8000
    wave = _sound(seed, 48000)
    resampled = decimate(wave, 6)
    at_48k, at_8k = clf.predict([(wave, 48000), (resampled, 8000)])
    np.testing.assert_allclose(probs(at_48k), probs(at_8k), rtol=0, atol=0.01)


def test_the_resampling_comparison_tells_clips_apart() -> None:
    clf = _sensitive_classifier("gru", True)
    rows = clf.predict([(_sound(seed, 48000), 48000) for seed in range(6)])
    gaps = [np.abs(probs(a) - probs(b)).max() for a, b in itertools.combinations(rows, 2)]
    assert np.median(gaps) > 0.05  # far above the 0.01 tolerance used for resampled copies


# --- laziness -----------------------------------------------------------------------------------


@pytest.fixture
def decode_counter(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"decoded": 0}
    real = audioseq.pipeline.read_audio

    def counting(*args: Any, **kwargs: Any) -> Any:
        counts["decoded"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(audioseq.pipeline, "read_audio", counting)
    return counts


def test_predict_iter_decodes_progressively(decode_counter: dict[str, int]) -> None:
    clf = tiny_classifier(num_layers=1)
    clip = (sweep(0.05, 8000), 8000)
    total = 300
    rows = clf.predict_iter([clip] * total, batch_size=2, num_workers=0)
    first = next(rows)
    assert first.ok
    assert 0 < decode_counter["decoded"] <= 64, decode_counter
    assert 1 + sum(1 for _ in rows) == total
    assert decode_counter["decoded"] == total


def test_predict_iter_pulls_a_generator_progressively(decode_counter: dict[str, int]) -> None:
    clf = tiny_classifier(num_layers=1)
    total, pulled = 300, [0]

    def clips() -> Any:
        for i in range(total):
            pulled[0] += 1
            yield sweep(0.05, 8000, seed=i), 8000  # a stream of waveforms must not be held all at once

    rows = clf.predict_iter(clips(), batch_size=2, num_workers=0)
    first = next(rows)
    assert first.ok
    assert decode_counter["decoded"] < total
    assert pulled[0] < total, f"all {total} inputs were pulled before the first prediction"
    assert 1 + sum(1 for _ in rows) == total


def _items(sizes: list[int | None]) -> list[audioseq.pipeline.Item]:
    """Decoded items of the given lengths; None is an error item."""
    return [
        audioseq.pipeline.Item(i, f"clip{i}", error=EmptyAudioError(f"clip{i}", "no samples"))
        if n is None
        else audioseq.pipeline.Item(i, f"clip{i}", waveform=torch.zeros(n))
        for i, n in enumerate(sizes)
    ]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.one_of(st.none(), st.integers(1, 3000)), max_size=80),
    batch_size=st.integers(1, 9),
    budget=st.integers(1, 5000),
)
def test_batches_hold_every_item_once_within_both_limits(sizes: list[int | None], batch_size: int, budget: int) -> None:
    seen = []
    for batch, errors in audioseq.pipeline.iter_batches(iter(_items(sizes)), batch_size, 2, budget):
        assert batch or errors
        assert all(it.error is not None for it in errors) and all(it.error is None for it in batch)
        assert len(batch) <= batch_size
        if len(batch) > 1:
            assert len(batch) * max(it.cost for it in batch) <= budget, [it.cost for it in batch]
        seen += [it.index for it in batch + errors]
    assert sorted(seen) == list(range(len(sizes)))


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 3000), max_size=40), budget=st.integers(1, 5000))
def test_feature_groups_keep_order_and_the_budget(sizes: list[int], budget: int) -> None:
    waves = [torch.zeros(n) for n in sizes]
    groups = audioseq.pipeline.chunk_by_values(waves, budget, torch.Tensor.numel)
    assert all(groups) or groups == [[]]
    assert [id(w) for g in groups for w in g] == [id(w) for w in waves]
    for g in groups:
        if len(g) > 1:
            assert len(g) * max(w.numel() for w in g) <= budget


@pytest.mark.parametrize("budget", [1, 2000, 1 << 17])
def test_frames_computed_in_groups_equal_one_pass(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    clf = tiny_classifier()
    clips = [torch.from_numpy(sweep(d, 8000, seed=i)) for i, d in enumerate([0.1, 0.3, 0.12, 0.5, 0.2, 0.05])]
    monkeypatch.setattr(audioseq.pipeline, "FEATURE_CHUNK_VALUES", 1 << 40)
    whole, whole_lengths = clf.frontend(clips)
    monkeypatch.setattr(audioseq.pipeline, "FEATURE_CHUNK_VALUES", budget)
    grouped, lengths = clf.frontend(clips)
    assert torch.equal(lengths, whole_lengths) and grouped.shape == whole.shape
    for i, n in enumerate(lengths.tolist()):  # FFT rounding may differ with the batch shape
        torch.testing.assert_close(grouped[i, :n], whole[i, :n], rtol=0, atol=1e-5)
        # the clips are grouped shortest first; each comes back in its own place
        torch.testing.assert_close(grouped[i, :n], clf.frontend.clip_frames(clips[i]), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "sizes, first_batch_after",
    [
        ([600] * 40, 4),  # long clips: 2 batches' worth of values (2 × 1000) is 4 clips, not 16
        ([10] * 40, 16),  # short clips: 2 batches' worth of clips
        ([None] * 40, 16),  # errors alone still stream out
    ],
)
def test_the_buffer_is_bounded_by_values_clips_and_errors(sizes: list[int | None], first_batch_after: int) -> None:
    pulled = [0]

    def stream() -> Any:
        for item in _items(sizes):
            pulled[0] += 1
            yield item

    batches = audioseq.pipeline.iter_batches(stream(), 8, 2, 1000)
    next(batches)
    assert pulled[0] == first_batch_after


def test_a_failing_step_costs_its_clip_a_row_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clips are decoded a chunk at a time, then preprocessed: an unexpected exception in
    either step, or a clip too short once trimmed, is that clip's error row."""
    clf = tiny_classifier()
    clips = [(sweep(0.3, 8000, seed=i), 8000) for i in range(6)]
    clips[4] = ((0.1 * np.sin(np.arange(40))).astype(np.float32), 8000)  # 5 ms: shorter than one frame
    decode, finish = clf.frontend.decode, clf.frontend.finish

    def broken_decode(source: Any, name: str) -> torch.Tensor:
        if source is clips[1]:
            raise RuntimeError("decoder bug")
        return decode(source, name)

    def broken_finish(waveform: torch.Tensor, name: str) -> torch.Tensor:
        if waveform.numel() == clips[2][0].size and torch.equal(waveform, torch.from_numpy(clips[2][0])):
            raise ValueError("preprocessing bug")
        return finish(waveform, name)

    monkeypatch.setattr(clf.frontend, "decode", broken_decode)
    monkeypatch.setattr(clf.frontend, "finish", broken_finish)
    rows = clf.predict(clips, num_workers=0)
    assert [r.error_type for r in rows] == [None, "UnreadableAudioError", "UnreadableAudioError", None, "AudioTooShortError", None]
    assert "RuntimeError: decoder bug" in rows[1].error and "ValueError: preprocessing bug" in rows[2].error
    reference = tiny_classifier().predict([clips[i] for i in (0, 3, 5)])
    for row, expected in zip([rows[0], rows[3], rows[5]], reference):
        assert probs(row) == pytest.approx(probs(expected), abs=1e-6)


@pytest.mark.parametrize("backend", ["torch"] + (["onnxruntime"] if onnxruntime_available() else []))
def test_a_long_clip_is_predicted_in_a_batch_of_its_own(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    clf = tiny_classifier(num_layers=1, backend=backend)
    short, long = (sweep(0.1, 8000), 8000), (sweep(2.0, 8000, seed=1), 8000)
    batches = []
    real = clf.probabilities

    def recording(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batches.append(lengths.tolist())
        return real(frames, lengths)

    monkeypatch.setattr(clf, "probabilities", recording)
    monkeypatch.setattr(audioseq.pipeline, "MAX_BATCH_VALUES", 8000)
    rows = clf.predict([short, long, short, short], batch_size=4)
    assert [r.ok for r in rows] == [True] * 4
    longest = max(n for lengths in batches for n in lengths)
    assert [lengths for lengths in batches if longest in lengths] == [[longest]], batches
    assert sum(map(len, batches)) == 4  # every clip went through the network once
    alone = clf.predict([long])[0]
    np.testing.assert_allclose(probs(rows[1]), probs(alone), atol=1e-6)


# --- model files --------------------------------------------------------------------------------


def _edited(source: Path, target: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    tensors, document = read_tensors(source)
    edit(document)
    write_tensors(target, tensors, document)
    return target


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        node = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


MISMATCHES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "wrong hidden_size": _set("network", "hidden_size", value=32),
    "one label too many": lambda d: d["labels"].append("extra"),
    "labels and outputs both wrong": lambda d: (d["labels"].append("extra"), d["network"].update(num_classes=4)),
    "one label too few": lambda d: (d["labels"].pop(), d["network"].update(num_classes=2)),
    "unknown network key": _set("network", "kernel_size", value=3),
    "format version from the future": _set("format_version", value=2),
    "not an audioseq model": _set("format", value="something.else"),
    "no labels": lambda d: d.pop("labels"),
    "duplicate labels": _set("labels", value=["a", "a", "b"]),
    "more layers": _set("network", "num_layers", value=3),
    "bidirectional": _set("network", "bidirectional", value=True),
    "other pooling with weights": _set("network", "pooling", value="attention"),
    "unknown pooling": _set("network", "pooling", value="median"),
    "other cell": _set("network", "cell", value="lstm"),
    "input size": _set("network", "input_size", value=17),
    "feature size": _set("feature", "params", "n_mels", value=20),
    "bad feature parameter": _set("feature", "params", "n_mels", value="many"),
    "unknown cell parameter": _set("network", "cell_params", value={"forget_bias": 1.0}),
    "cell parameters not an object": _set("network", "cell_params", value="forget_bias=1"),
    "feature not an object": _set("feature", value="logmel"),
    "absurd sample rate": _set("sample_rate", value=5),
    "unknown preprocessing": _set("preprocess", "denoise", value=True),
    # A file of a few kilobytes describing a network or feature of many gigabytes: refused before allocating it.
    "enormous hidden size": _set("network", "hidden_size", value=65536),
    "tens of thousands of layers": _set("network", "num_layers", value=65536),
    "an analysis window of days": _set("feature", "params", "win_ms", value=1e9),
    "a size that is a boolean": _set("network", "num_layers", value=True),
    # Preprocessing a stranger wrote: refused when the model loads, not blamed on every clip later.
    "preprocessing setting of the wrong type": _set("preprocess", "highpass_hz", value="x"),
    "unknown normalisation": _set("preprocess", "normalize", value="loud"),
    "trim that is not a flag": _set("preprocess", "trim", value="yes"),
    "target level above full scale": _set("preprocess", "target_db", value=1e6),
    "high-pass above the Nyquist rate": _set("preprocess", "highpass_hz", value=4000.0),
    "a label with a terminal escape": lambda d: d["labels"].__setitem__(0, "a\x1b[31m"),
    "a label with a line break": lambda d: d["labels"].__setitem__(0, "two\nlines"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_a_description_that_does_not_match_the_weights_is_a_model_file_error(
    case: str, tiny_model_file: Path, tmp_path: Path
) -> None:
    path = _edited(tiny_model_file, tmp_path / "edited.safetensors", MISMATCHES[case])
    with pytest.raises(ModelFileError) as caught:
        audioseq.load(path)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("key", "kind"), [(("network", "cell"), "cell"), (("feature", "name"), "feature")])
def test_a_component_from_a_missing_plugin_is_named(key: tuple[str, str], kind: str, tiny_model_file: Path,
                                                     tmp_path: Path) -> None:
    path = _edited(tiny_model_file, tmp_path / "plugin.safetensors", _set(*key, value=f"nope-{kind}"))
    with pytest.raises(UnknownComponentError) as caught:
        audioseq.load(path)
    assert caught.value.kind == kind and caught.value.name == f"nope-{kind}"
    assert f"'nope-{kind}'" in str(caught.value) and "plugin" in str(caught.value)


def test_a_model_needing_two_missing_plugins_names_both(tiny_model_file: Path, tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["network"]["cell"], doc["feature"]["name"] = "nope-cell", "nope-feature"
        doc["providers"] = {"cell": {"plugin": "nc", "distribution": "audioseq-nope-cells", "version": "1.0"},
                            "feature": {"plugin": "nf", "distribution": "audioseq-nope-features", "version": "2.0"}}

    path = _edited(tiny_model_file, tmp_path / "two.safetensors", edit)
    with pytest.raises(UnknownComponentError) as caught:
        audioseq.load(path)
    message = str(caught.value)
    assert caught.value.kind == "cell" and "install audioseq-nope-cells" in message
    assert caught.value.also == ["feature 'nope-feature' from audioseq-nope-features"]
    assert "The model also needs feature 'nope-feature' from audioseq-nope-features, not loaded either." in message
    assert str(pickle.loads(pickle.dumps(caught.value))) == message  # crosses process boundaries intact


def test_non_finite_weights_are_refused(tiny_model_file: Path, tmp_path: Path) -> None:
    tensors, document = read_tensors(tiny_model_file)
    name = "head.weight"
    tensors[name] = tensors[name].clone()
    tensors[name][0, 0] = math.inf
    path = tmp_path / "inf.safetensors"
    # write_tensors refuses to write this, as it should: build the file by hand.
    path.write_bytes(safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(document)}))
    with pytest.raises(ModelFileError, match="non-finite") as caught:
        audioseq.load(path)
    assert caught.value.path == str(path) and name in str(caught.value)


@pytest.mark.parametrize(("change", "words"), [
    ("float64 beyond float32", "holds values that are not finite as float32"),
    ("zero spread", "'norm.std' must be positive"),
])
def test_weights_that_would_break_every_prediction_are_refused(change: str, words: str, tiny_model_file: Path,
                                                                tmp_path: Path) -> None:
    tensors, document = read_tensors(tiny_model_file)
    if change == "float64 beyond float32":
        tensors["head.weight"] = tensors["head.weight"].double()
        tensors["head.weight"][0, 0] = 1e300
    else:
        tensors["norm.std"] = torch.zeros_like(tensors["norm.std"])
    path = tmp_path / "odd.safetensors"
    path.write_bytes(safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(document)}))
    with pytest.raises(ModelFileError, match=re.escape(words)) as caught:
        audioseq.load(path)
    assert caught.value.path == str(path)


def test_a_lone_surrogate_in_the_description_is_refused(tiny_model_file: Path, tmp_path: Path) -> None:
    tensors, document = read_tensors(tiny_model_file)
    raw = json.dumps(document).replace(json.dumps(document["labels"][0]), '"\\ud800"', 1)
    path = tmp_path / "surrogate.safetensors"
    path.write_bytes(safetensors.torch.save(tensors, metadata={METADATA_KEY: raw}))
    with pytest.raises(ModelFileError) as caught:
        audioseq.load(path)
    assert caught.value.path == str(path)


def test_a_provider_of_another_kind_does_not_hide_why_the_model_does_not_build(
    tiny_model_file: Path, tmp_path: Path
) -> None:
    tensors, document = read_tensors(tiny_model_file)
    document["network"]["cell_params"] = {"no_such_param": 1}
    document.setdefault("providers", {})["extra"] = {"plugin": "x", "version": "1"}
    path = tmp_path / "extra.safetensors"
    write_tensors(path, tensors, document)
    with pytest.raises(ModelFileError, match="cannot build the network"):
        audioseq.load(path)


def test_a_provider_that_is_not_a_plain_name_is_dropped(tiny_model_file: Path, tmp_path: Path) -> None:
    odd = "pip install --index-url https://example.invalid/simple audioseq-fix"
    path = _edited(tiny_model_file, tmp_path / "providers.safetensors", _set(
        "providers", value={"cell": {"plugin": "fixer", "distribution": odd, "version": "1.0"}}))
    assert audioseq.load(path).spec.providers == {"cell": {"plugin": "fixer", "version": "1.0"}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from([
    ("labels",), ("sample_rate",), ("feature",), ("network",), ("preprocess",), ("max_seconds",), ("metrics",),
    ("format_version",), ("feature", "name"), ("feature", "params"), ("network", "cell"),
    ("network", "cell_params"), ("network", "hidden_size"), ("network", "pooling"), ("network", "dropout"),
    ("network", "num_classes"), ("preprocess", "trim_db"), ("providers",), ("providers", "cell"),
]), value=json_values)
def test_any_edited_description_loads_or_is_a_typed_error(
    where: tuple[str, ...], value: Any, tiny_model_file: Path, tmp_path: Path
) -> None:
    path = _edited(tiny_model_file, tmp_path / "fuzzed.safetensors", _set(*where, value=value))
    try:
        audioseq.load(path)
    except ModelFileError as exc:
        assert exc.path == str(path)
    except UnknownComponentError:
        pass
