"""The network as an ONNX graph, and the onnxruntime backend that runs it.

ONNX Runtime must compute what torch computes, for every exportable cell, pooling and
direction; follow the weights when they change; fall back to torch where it cannot run; and
give the same predictions, errors included, through the API and the CLI.
"""

from __future__ import annotations

import copy
import csv
import pickle
import re
import json
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import audioseq
from audioseq import hookimpl
from audioseq.classifier import Classifier
from audioseq.default_plugins.cells import GRUCell
from audioseq.errors import ParameterError
from audioseq.export import RUN_GROUP, ExportError, OnnxNetwork, exportable, onnxruntime_available, to_onnx
from audioseq.model import NetworkConfig, SequenceClassifier
from audioseq.plugins import get_component
from audioseq.spec import ModelSpec
from conftest import registered, run_cli, sweep, tiny_classifier

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not onnxruntime_available(), reason="needs onnx and onnxruntime"),
]

POOLINGS = ("last", "mean", "attention")
EXPORTABLE = [c for c in audioseq.list_cells() if hasattr(get_component("cell", c).factory, "onnx_recurrence")]
NOT_EXPORTABLE = [c for c in audioseq.list_cells() if c not in EXPORTABLE]
CELL_SETTINGS = [(c, {}) for c in EXPORTABLE] + [("rnn", {"nonlinearity": "relu"})]


def random_network(cell: str, params: dict[str, Any], pooling: str, bidirectional: bool, layers: int,
                   utterance_norm: bool = True) -> SequenceClassifier:
    torch.manual_seed(0)
    config = NetworkConfig(input_size=6, num_classes=5, cell=cell, cell_params=params, hidden_size=7,
                           num_layers=layers, bidirectional=bidirectional, pooling=pooling,  # type: ignore[arg-type]
                           utterance_norm=utterance_norm)
    model = SequenceClassifier(config).eval()
    with torch.no_grad():  # statistics as training leaves them, not the identity
        model.norm.mean.normal_()
        model.norm.std.uniform_(0.5, 2.0)
    return model


def test_the_built_in_cells_can_be_exported() -> None:
    assert {"rnn", "lstm", "gru"} <= set(EXPORTABLE)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("cell, params", CELL_SETTINGS, ids=[f"{c}{'-' + '-'.join(p.values()) if p else ''}" for c, p in CELL_SETTINGS])
def test_onnxruntime_computes_what_torch_computes(cell: str, params: dict[str, Any], pooling: str,
                                                  bidirectional: bool, layers: int) -> None:
    model = random_network(cell, params, pooling, bidirectional, layers)
    network = OnnxNetwork(model, threads=1)
    lengths = torch.tensor([5, 12, 1, 8, 12])  # ragged, unsorted, a one-frame clip
    frames = 3 * torch.randn(5, 12, 6)
    frames[0, 5:] = 1e3  # junk in the padding must not matter
    with torch.no_grad():
        expected = model(frames, lengths)
    got = network(frames, lengths)
    assert got.shape == expected.shape == (5, 5)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert (expected[0] - expected[1]).abs().max() > 1e-3  # the comparison can tell clips apart


def test_without_utterance_normalisation_too() -> None:
    model = random_network("gru", {}, "attention", True, 2, utterance_norm=False)
    frames, lengths = torch.randn(3, 9, 6) + 2, torch.tensor([9, 4, 2])
    with torch.no_grad():
        expected = model(frames, lengths)
    torch.testing.assert_close(OnnxNetwork(model, threads=1)(frames, lengths), expected, rtol=0, atol=1e-5)


def test_a_batch_of_several_run_groups_keeps_each_clip_in_its_place() -> None:
    """Clips run in groups of similar length, each group cut to its longest clip: the logits
    must come back in the batch's order and equal each clip's own, alone and unpadded."""
    model = random_network("gru", {}, "mean", True, 2)
    network = OnnxNetwork(model, threads=1)
    count = 3 * RUN_GROUP + 5
    generator = torch.Generator().manual_seed(1)
    lengths = torch.randint(2, 60, (count,), generator=generator)  # one frame normalises to zeros
    frames = 3 * torch.randn(count, 60, 6, generator=generator)
    got = network(frames, lengths)
    alone = torch.cat([network(frames[i : i + 1, : int(n)], lengths[i : i + 1]) for i, n in enumerate(lengths)])
    torch.testing.assert_close(got, alone, rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(got, model(frames, lengths), rtol=0, atol=1e-5)
    apart = (got[:, None] - got[None]).abs().amax(-1) + torch.eye(count)
    assert apart.min() > 1e-4  # no two clips give the same logits: a misplaced row would show


def test_an_empty_batch_gives_no_rows() -> None:
    network = OnnxNetwork(random_network("lstm", {}, "last", False, 1), threads=1)
    assert network(torch.zeros(0, 4, 6), torch.zeros(0, dtype=torch.long)).shape == (0, 5)


@pytest.mark.parametrize("cell", NOT_EXPORTABLE or ["(none)"])
def test_a_cell_without_an_onnx_form_runs_on_torch(cell: str) -> None:
    if cell == "(none)":
        pytest.skip("every installed cell can be exported")
    clf = tiny_classifier(cell)
    assert exportable(clf.model) is not None and cell in exportable(clf.model)
    with pytest.raises(ExportError, match=cell):
        to_onnx(clf.model)
    assert clf.runtime == "torch"  # auto falls back
    strict = tiny_classifier(cell, backend="onnxruntime")
    with pytest.raises(ExportError, match="no ONNX form"):
        strict.predict([(sweep(0.3, 8000), 8000)])


class ClippedGRUCell(GRUCell):
    """A GRU with a made-up clipping setting that ONNX's GRU has no form for."""

    def __init__(self, input_size: int, hidden_size: int, clip: float = 0.0) -> None:
        super().__init__(input_size, hidden_size)
        self.clip = clip

    def onnx_recurrence(self) -> Any:
        return None if self.clip else super().onnx_recurrence()


class RaisingGRUCell(GRUCell):
    def onnx_recurrence(self) -> Any:
        raise NotImplementedError("no form for this cell yet")


class OnnxShy:
    @hookimpl
    def register_cells(self, register: Any) -> None:
        register("clipped-gru", ClippedGRUCell)
        register("raising-gru", RaisingGRUCell)


@pytest.mark.parametrize(("cell", "params", "reason"), [
    ("clipped-gru", {"clip": 0.5}, "cell 'clipped-gru' has no ONNX form with its parameters {'clip': 0.5}"),
    ("raising-gru", {}, "cell 'raising-gru': onnx_recurrence raised NotImplementedError: no form for this cell yet"),
    ("clipped-gru", {}, None),
])
def test_a_cell_may_decline_an_onnx_form_for_its_parameters(cell: str, params: dict[str, Any], reason: str | None) -> None:
    with registered(OnnxShy(), "onnx-shy"):
        model = random_network(cell, params, "mean", False, 1)
        assert exportable(model) == reason
        network = NetworkConfig(input_size=16, num_classes=2, cell=cell, cell_params=params, hidden_size=4, num_layers=1)
        spec = ModelSpec(labels=["a", "b"], sample_rate=8000, network=network, feature="logmel",
                         feature_params={"n_mels": 16})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # auto picks torch without trying onnxruntime and warning
            clf = Classifier(spec)
            assert clf.runtime == ("onnxruntime" if reason is None else "torch")
            assert clf.predict([(sweep(0.4, 8000), 8000)])[0].error is None
        if reason is not None:
            with pytest.raises(ExportError, match=re.escape(reason)):
                to_onnx(model)


@pytest.mark.parametrize("cell", EXPORTABLE)
def test_both_backends_predict_the_same(cell: str) -> None:
    clips = [(sweep(0.2 + 0.15 * i, 8000, seed=i), 8000) for i in range(6)]
    by_backend = {}
    for backend in ("torch", "onnxruntime"):
        clf = tiny_classifier(cell, "attention", True, backend=backend)
        assert clf.runtime == backend
        by_backend[backend] = clf.predict(clips, batch_size=4)
    for a, b in zip(by_backend["torch"], by_backend["onnxruntime"]):
        assert a.label == b.label and a.source == b.source
        np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), rtol=0, atol=1e-5)


def test_auto_picks_onnxruntime_for_the_bundled_model_and_agrees_with_torch() -> None:
    fast, slow = audioseq.load("digits"), audioseq.load("digits", backend="torch")
    assert fast.runtime == "onnxruntime" and slow.runtime == "torch"
    clips = [(sweep(0.3 + 0.1 * i, 8000, seed=i), 8000) for i in range(5)]
    for a, b in zip(fast.predict(clips), slow.predict(clips)):
        np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), rtol=0, atol=1e-5)


def test_the_session_follows_weights_changed_in_place() -> None:
    clf = tiny_classifier("gru", "mean", backend="onnxruntime")
    clip = [(sweep(0.4, 8000), 8000)]
    before = clf.predict(clip)[0].probabilities
    with torch.no_grad():
        clf.model.head.bias[1] += 25.0  # label "b" now wins
    after = clf.predict(clip)[0]
    assert after.label == "b" and after.confidence > 0.99
    assert before != after.probabilities
    reference = tiny_classifier("gru", "mean", backend="torch")
    reference.model.load_state_dict(clf.model.state_dict())
    np.testing.assert_allclose(list(after.probabilities.values()),
                               list(reference.predict(clip)[0].probabilities.values()), rtol=0, atol=1e-5)


@pytest.mark.parametrize("workers, overlapped", [(0, True), (1, False)])
def test_the_network_overlaps_decoding_only_when_decoding_runs_in_process(workers: int, overlapped: bool) -> None:
    """A network thread while worker processes are forked could leave them holding its locks."""
    clf = tiny_classifier("gru", backend="onnxruntime")
    clips = [(sweep(0.2 + 0.01 * i, 8000, seed=i), 8000) for i in range(40)]
    seen = set()
    for _ in clf.predict_iter(clips, batch_size=4, num_workers=workers):
        seen |= {t.name.split("_")[0] for t in threading.enumerate()}
    assert ("audioseq-network" in seen) == overlapped
    reference = tiny_classifier("gru", backend="torch").predict(clips, batch_size=4, num_workers=0)
    for a, b in zip(clf.predict(clips, batch_size=4, num_workers=workers), reference):
        assert a.label == b.label and a.source == b.source


def test_features_run_on_one_torch_thread_and_the_callers_setting_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    clf = tiny_classifier("gru", backend="onnxruntime")
    clips = [(sweep(0.2 + 0.01 * i, 8000, seed=i), 8000) for i in range(20)]
    seen = []
    frames_of = clf.frontend.frames_of

    def recording(items: Any) -> Any:
        seen.append((threading.current_thread().name.split("_")[0], torch.get_num_threads()))
        return frames_of(items)

    monkeypatch.setattr(clf.frontend, "frames_of", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rows = clf.predict(clips, batch_size=4, num_workers=0)
        assert torch.get_num_threads() == 2  # the caller's setting is its own
    finally:
        torch.set_num_threads(before)
    assert all(r.ok for r in rows) and len(seen) == 5  # once a batch, in whichever thread
    assert {name for name, _ in seen} <= {"MainThread", "audioseq-network"}
    assert {threads for _, threads in seen} == {1}


def test_one_clip_starts_no_thread() -> None:
    clf = tiny_classifier("gru", backend="onnxruntime")
    clip = (sweep(0.3, 8000), 8000)
    for _ in clf.predict_iter([clip], num_workers=0):
        assert "audioseq-network" not in {t.name.split("_")[0] for t in threading.enumerate()}


def test_the_caller_shares_the_network_threads_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the network thread is behind, the caller computes features and runs batches that
    have not started; the predictions stay in order and equal torch's."""
    clf = tiny_classifier("gru", backend="onnxruntime")
    clips = [(sweep(0.2 + 0.01 * i, 8000, seed=i), 8000) for i in range(48)]
    where = []
    probabilities = clf.probabilities

    def slow(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        where.append(threading.current_thread().name.split("_")[0])
        if where[-1] == "audioseq-network":
            time.sleep(0.05)  # the network thread falls behind the decoding
        return probabilities(frames, lengths)

    monkeypatch.setattr(clf, "probabilities", slow)
    rows = clf.predict(clips, batch_size=4, num_workers=0)
    assert len(where) == 12 and {"MainThread", "audioseq-network"} <= set(where)
    reference = tiny_classifier("gru", backend="torch").predict(clips, batch_size=4, num_workers=0)
    assert [r.source for r in rows] == [r.source for r in reference]
    for a, b in zip(rows, reference):
        np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_non_finite_logits_are_an_error_row_not_a_prediction(backend: str) -> None:
    clf = tiny_classifier("gru", "mean", backend=backend)
    with torch.no_grad():
        clf.model.head.weight[0, 0] = float("nan")
    preds = clf.predict([(sweep(0.4, 8000), 8000)])
    assert preds[0].label is None and preds[0].error_type == "NonFiniteAudioError"


def test_onnxruntime_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    monkeypatch.setattr("audioseq.export.onnxruntime_available", lambda: False)
    assert tiny_classifier("gru").runtime == "torch"
    with pytest.raises(ExportError, match="pip install onnx onnxruntime"):
        tiny_classifier("gru", backend="onnxruntime").predict([(sweep(0.3, 8000), 8000)])


def test_a_classifier_with_a_session_copies_and_pickles() -> None:
    clf = tiny_classifier("gru", backend="onnxruntime")
    clip = [(sweep(0.4, 8000), 8000)]
    expected = clf.predict(clip)[0].probabilities  # the session exists now
    for other in (copy.deepcopy(clf), pickle.loads(pickle.dumps(clf))):
        assert other.runtime == "onnxruntime"
        assert other.predict(clip)[0].probabilities == expected
    assert clf.predict(clip)[0].probabilities == expected


def test_auto_falls_back_to_torch_when_onnxruntime_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH")

    monkeypatch.setattr("audioseq.export.OnnxNetwork", refuse)
    clip = [(sweep(0.4, 8000), 8000)]
    with pytest.warns(UserWarning, match="running the network on torch; onnxruntime failed: RuntimeError"):
        auto = tiny_classifier("gru")
        assert auto.runtime == "torch"
    expected = tiny_classifier("gru", backend="torch").predict(clip)[0].probabilities
    assert auto.predict(clip)[0].probabilities == expected
    with pytest.raises(RuntimeError, match="INVALID_GRAPH"):  # asked for by name: no silent fallback
        tiny_classifier("gru", backend="onnxruntime").predict(clip)


def test_the_command_line_offers_exactly_the_api_backends() -> None:
    from audioseq.classifier import BACKENDS
    from audioseq.cli import predict

    (option,) = [p for p in predict.params if p.name == "backend"]
    assert tuple(option.type.choices) == BACKENDS


def test_an_unknown_backend_is_a_parameter_error(tiny_model_file: Path) -> None:
    with pytest.raises(ParameterError, match="onnxruntime"):
        audioseq.load(tiny_model_file, backend="tensorflow")  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        Classifier(audioseq.load(tiny_model_file).spec, backend="fast")  # type: ignore[arg-type]


def test_cli_export_writes_a_graph_onnxruntime_runs(tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "digits.onnx"
    result = run_cli("export", "digits", str(out))
    assert result.returncode == 0, result.stderr
    clf = audioseq.load("digits", backend="torch")
    frames, lengths = clf.frontend([clf.frontend.prepare((sweep(s, 8000, seed=i), 8000)) for i, s in enumerate((0.3, 0.7))])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == clf.labels
    assert json.loads(meta["audioseq"]) == json.loads(json.dumps(clf.spec.to_document()))
    (logits,) = session.run(["logits"], {"frames": frames.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        expected = clf.model(frames, lengths).numpy()
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


def test_cli_backends_write_the_same_rows(tmp_path: Path, good_wavs: list[Path],
                                          bad_corpus: dict[str, tuple[Path, type]]) -> None:
    inputs = [str(p) for p in good_wavs] + [str(bad_corpus["random_bytes"][0])]
    rows = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.csv"
        result = run_cli("predict", "digits", *inputs, "--format", "csv", "--output", str(out),
                         "--backend", backend, "--max-errors", "1")
        assert result.returncode == 0, result.stderr
        with out.open(newline="", encoding="utf-8") as f:
            rows[backend] = [row[:4] for row in csv.reader(f)]
    assert len(rows["torch"]) == len(inputs) + 1  # header
    assert [r[:2] + r[3:] for r in rows["torch"]] == [r[:2] + r[3:] for r in rows["onnxruntime"]]
    assert rows["torch"][-1][3] == "UnreadableAudioError"
    confidences = [(float(a[2]), float(b[2])) for a, b in zip(rows["torch"][1:], rows["onnxruntime"][1:]) if a[2]]
    assert len(confidences) == len(good_wavs)
    np.testing.assert_allclose(*zip(*confidences), rtol=0, atol=1e-5)
