"""Every registered cell, feature and dataset against its contract, and the contract checks themselves.

The component lists are read from the registries at collection time, so an installed plugin's
components are tested here without a line of test code of their own.
"""

from __future__ import annotations

import csv
import math
import os
import re
import socket
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import audioseq
from audioseq.classifier import Classifier
from audioseq.dataset import Example
from audioseq.default_plugins.cells import GRUCell, RNNCell
from audioseq.default_plugins.datasets import SyntheticDataset
from audioseq.default_plugins.features import LogMel
from audioseq.export import OnnxRecurrence, onnxruntime_available
from audioseq.model import NetworkConfig
from audioseq.plugins import build, get_component
from audioseq.recurrent import RecurrentEncoder, make_cell, unroll
from audioseq.spec import ModelSpec
from audioseq.testing import ContractError, check_cell, check_dataset, check_feature

CELLS = audioseq.list_cells()
FEATURES = audioseq.list_features()
DATASETS = audioseq.list_datasets()
BUILTIN_CELLS = ("rnn", "lstm", "gru")
RATE = 8000
FSDD = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fsdd" / "recordings"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny networks, one thread


# -- every registered component keeps its contract ------------------------------------------------


@pytest.mark.parametrize("name", CELLS)
def test_cell_contract(name: str) -> None:
    check_cell(get_component("cell", name).factory)


@pytest.mark.parametrize("name", CELLS)
def test_every_gate_is_explained(name: str) -> None:
    """What the app and Inspection.gate_meanings show beside each gate's activations."""
    cell = get_component("cell", name).factory(4, 3)
    assert set(getattr(cell, "gate_meanings", {})) == set(cell.gate_names)
    assert all(len(text) > 20 for text in cell.gate_meanings.values())


@pytest.mark.parametrize("name", FEATURES)
def test_feature_contract(name: str) -> None:
    check_feature(get_component("feature", name).factory, sample_rate=16000)


def _torchaudio_reference(name: str, sample_rate: int) -> Callable[[Tensor], Tensor]:
    """The built-in feature written plainly with torchaudio's transforms, (B, N) → (B, T, dim)."""
    import torchaudio

    win, hop = round(sample_rate * 0.025), round(sample_rate * 0.010)
    n_fft = 1 << math.ceil(math.log2(win))
    if name == "spectrogram":
        spec = torchaudio.transforms.Spectrogram(n_fft=n_fft, win_length=win, hop_length=hop, center=False, power=2.0)
        return lambda w: torch.log(spec(w).clamp(min=1e-10)).transpose(1, 2)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate, n_fft=n_fft, win_length=win, hop_length=hop, center=False, power=2.0, n_mels=40,
        f_min=20.0 if name == "logmel" else 100.0, norm="slaney", mel_scale="slaney",
    )
    if name == "logmel":
        return lambda w: torch.log(mel(w).clamp(min=1e-10)).transpose(1, 2)
    dct = torchaudio.functional.create_dct(13, 40, norm="ortho")
    return lambda w: torch.log(mel(w).clamp(min=1e-10)).transpose(1, 2) @ dct


@pytest.mark.parametrize("name", ["logmel", "mfcc", "spectrogram"])
def test_builtin_features_equal_torchaudio_in_values_and_gradients(name: str) -> None:
    """The faster built-in computation (squares in place, power folded into the mel product) is
    the same function as the plain torchaudio one, gradients with respect to the waveform included."""
    feature = build("feature", name, 8000)
    reference = _torchaudio_reference(name, 8000)
    g = torch.Generator().manual_seed(0)
    waves = 0.1 * torch.randn(3, 4000, generator=g)
    weights = torch.randn(feature(waves).shape, generator=g)
    grads = []
    for fn in (feature, reference):
        w = waves.clone().requires_grad_()
        out = fn(w)
        (out * weights).sum().backward()
        grads.append((out.detach(), w.grad))
    (mine, mine_grad), (ref, ref_grad) = grads
    assert float((mine - ref).abs().max()) <= 1e-4
    assert float((mine_grad - ref_grad).abs().max()) <= 1e-4 * float(ref_grad.abs().max())


@pytest.mark.parametrize("deltas", [1, 2])
@pytest.mark.parametrize("name", ["logmel", "mfcc", "spectrogram"])
def test_time_derivatives_keep_the_feature_contract(name: str, deltas: int) -> None:
    check_feature(get_component("feature", name).factory, sample_rate=8000, deltas=deltas)


@pytest.mark.parametrize("name", ["logmel", "mfcc", "spectrogram"])
def test_time_derivatives_are_the_frames_regression_without_the_ends(name: str) -> None:
    """Static part = the plain feature less 4 frames at each end; Δ and ΔΔ = torchaudio's
    regression over ±2 frames of the clip alone; a clip batched with a longer one is unchanged."""
    import torchaudio

    plain, both = build("feature", name, 8000), build("feature", name, 8000, params={"deltas": 2})
    g = torch.Generator().manual_seed(0)
    clip = 0.1 * torch.randn(1, 3000, generator=g)
    base = plain(clip)  # (1, T, F)
    out = both(clip)
    T, F_ = base.shape[1], base.shape[2]
    assert out.shape == (1, T - 8, 3 * F_) and both.dim == 3 * F_
    assert int(both.num_frames(torch.tensor([3000]))) == T - 8
    d1 = torchaudio.functional.compute_deltas(base.transpose(1, 2), win_length=5)
    d2 = torchaudio.functional.compute_deltas(d1, win_length=5)
    expected = torch.cat([base.transpose(1, 2), d1, d2], dim=1)[..., 4 : T - 4].transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)
    batch = torch.cat([torch.nn.functional.pad(clip, (0, 2000)), 0.1 * torch.randn(1, 5000, generator=g)])
    batched = both(batch)[:1, : T - 8]
    torch.testing.assert_close(batched, out, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="deltas must be 0, 1 or 2"):
        build("feature", name, 8000, params={"deltas": 3})


def _write_clips(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` short noisy tones as 16-bit WAVs (0.1-0.3 s at 8 kHz)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        n = int(rng.integers(RATE // 10, 3 * RATE // 10))
        wave = 0.5 * np.sin(2 * math.pi * rng.uniform(200, 2000) * np.arange(n) / RATE) + 0.01 * rng.standard_normal(n)
        path = folder / f"clip{i}.wav"
        sf.write(path, wave.astype(np.float32), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def _folder_root(tmp_path: Path) -> str:
    for split_index, split in enumerate(("train", "valid")):
        for label_index, label in enumerate(("no", "yes")):
            _write_clips(tmp_path / "data" / split / label, 2, 10 * split_index + label_index)
    return str(tmp_path / "data")


def _manifest_root(tmp_path: Path) -> str:
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "group"])
        for i, path in enumerate(_write_clips(tmp_path / "clips", 6, 0)):
            split = ("train", "test", "")[i % 3]
            writer.writerow([path.relative_to(tmp_path).as_posix(), ("up", "down")[i % 2], split, f"speaker{i // 3}"])
    return str(manifest)


def _fsdd_root(tmp_path: Path) -> str:
    if not FSDD.is_dir():
        pytest.skip(f"the FSDD recordings are not at {FSDD.resolve()}")
    return str(FSDD)


ROOTS: dict[str, Callable[[Path], str]] = {"folder": _folder_root, "manifest": _manifest_root, "fsdd": _fsdd_root}
DATASET_PARAMS: dict[str, dict[str, Any]] = {"synthetic": {"per_class": 4}}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing downloads at test time: a dataset that would fetch its files without a root fails fast instead."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access is disabled in the tests")

    monkeypatch.setenv("AUDIOSEQ_OFFLINE", "1")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.usefixtures("offline")
def test_dataset_contract(name: str, tmp_path: Path) -> None:
    factory = get_component("dataset", name).factory
    params = DATASET_PARAMS.get(name, {})
    if name in ROOTS:
        root: str | None = ROOTS[name](tmp_path)
    else:
        root = None
        try:
            factory(None, **params)
        except Exception as exc:
            pytest.skip(f"dataset {name!r} needs a root this test cannot know ({type(exc).__name__}: {exc})")
    check_dataset(factory, root, **params)


def test_the_folder_dataset_reads_every_audio_suffix_and_reports_a_broken_link(tmp_path: Path) -> None:
    for label, suffix, fmt in (("a", ".aiff", "AIFF"), ("a", ".WAV", "WAV"), ("b", ".au", "AU"), ("b", ".flac", "FLAC")):
        path = tmp_path / label / f"clip{suffix}"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, np.zeros(800, dtype=np.float32), 8000, format=fmt)
    (tmp_path / "b" / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    (tmp_path / "b" / "notes.txt").write_text("not a clip")
    with pytest.warns(UserWarning, match=r"left out 1 files of other types \(e.g. .*notes.txt\)"):
        data = get_component("dataset", "folder").factory(str(tmp_path))
    assert sorted(Path(ex.audio).name for ex in data.examples()) == ["clip.WAV", "clip.aiff", "clip.au",
                                                                        "clip.flac", "gone.wav"]


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(800, dtype=np.float32), 8000)


def test_the_folder_dataset_names_folders_it_cannot_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a/one.wav", "b/two.wav", "b/locked/three.wav", "c/four.wav"):
        _wav(tmp_path / name)
    locked = {tmp_path / "b" / "locked", tmp_path / "c"}
    listing = os.scandir

    def scandir(path: Any = ".") -> Any:  # as for folders without read permission (root would read them)
        if Path(os.fsdecode(path)) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(UserWarning, match=r"left out 2 folders that cannot be listed \(e.g. .*b/locked\)") as caught:
        data = get_component("dataset", "folder").factory(str(tmp_path))
    assert data.labels == ["a", "b"] and "label folders without audio files" not in str(caught[0].message)


def test_the_folder_dataset_leaves_out_hidden_files_and_says_what_else_it_left_out(tmp_path: Path) -> None:
    for name in ("a/one.wav", "b/two.wav", "a/.hidden.wav", "a/._one.wav", "__MACOSX/a/._one.wav", ".cache/x.wav",
                 "loose.wav"):
        _wav(tmp_path / name)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "take.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")  # a phone's format soundfile cannot read
    (tmp_path / "d").mkdir()
    with pytest.warns(UserWarning) as caught:
        data = get_component("dataset", "folder").factory(str(tmp_path))
    assert data.labels == ["a", "b"]  # no __MACOSX, no label without audio
    assert sorted(Path(ex.audio).name for ex in data.examples()) == ["one.wav", "two.wav"]
    [message] = [str(w.message) for w in caught]
    for part in ("1 files beside the label folders (e.g. ", "loose.wav", "2 label folders without audio files",
                 "1 files of other types (e.g. ", "take.m4a"):
        assert part in message


def test_the_folder_dataset_finds_each_clip_s_group_with_a_pattern(tmp_path: Path) -> None:
    for name in ("seven/7_anna_0.wav", "seven/7_bo_1.wav", "two/2_anna_2.wav", "two/x.wav",
                 "yes/carl/take1.wav", "yes/dana/sub/take2.wav", "yes/loose.wav"):
        _wav(tmp_path / name)
    folder = get_component("dataset", "folder").factory
    by_name = {Path(ex.audio).name: ex.group for ex in folder(str(tmp_path), group_pattern="_([a-z]+)_").examples()}
    assert (by_name["7_anna_0.wav"], by_name["7_bo_1.wav"], by_name["2_anna_2.wav"], by_name["x.wav"]) == (
        "anna", "bo", "anna", None)
    by_name = {Path(ex.audio).name: ex.group for ex in folder(str(tmp_path), group_pattern="^[^/]+(?=/)").examples()}
    assert (by_name["take1.wav"], by_name["take2.wav"], by_name["loose.wav"]) == ("carl", "dana", None)
    assert all(ex.group is None for ex in folder(str(tmp_path)).examples())
    with pytest.raises(ValueError, match="group_pattern '\\(' is not a regular expression"):
        folder(str(tmp_path), group_pattern="(")


def test_the_folder_dataset_names_what_lies_beside_its_split_folders(tmp_path: Path) -> None:
    for name in ("train/a/1.wav", "train/b/2.wav", "test/a/3.wav", "extra/a/4.wav"):
        _wav(tmp_path / name)
    with pytest.warns(UserWarning, match=r"1 entries beside train/, valid/ and test/ \(e.g. .*extra\)"):
        data = get_component("dataset", "folder").factory(str(tmp_path))
    assert sorted((ex.split, ex.label) for ex in data.examples()) == [("test", "a"), ("train", "a"), ("train", "b")]


def test_a_manifest_from_a_spreadsheet_is_read(tmp_path: Path) -> None:
    for name in ("x.wav", "y.wav"):
        _wav(tmp_path / name)
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufeffPath;Label;Split\nx.wav;a;train\ny.wav;b;test\n".encode("utf-8"))
    data = get_component("dataset", "manifest").factory(str(manifest))
    assert [(Path(ex.audio).name, ex.label, ex.split) for ex in data.examples()] == [("x.wav", "a", "train"),
                                                                                    ("y.wav", "b", "test")]


@pytest.mark.parametrize(("content", "words"), [
    ("path,label\n" + "x" * 200_000 + ".wav,a\n", "field larger than field limit"),
    (None, "UnicodeDecodeError"),
])
def test_a_manifest_csv_cannot_read_is_a_value_error_naming_it(content: str | None, words: str, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    if content is None:  # a spreadsheet saved in Windows-1252
        manifest.write_bytes("path,label\nstra\u00dfe.wav,a\n".encode("cp1252"))
    else:
        manifest.write_text(content)
    with pytest.raises(ValueError, match=f"manifest {re.escape(str(manifest))}: not a readable UTF-8 CSV .*{words}"):
        get_component("dataset", "manifest").factory(str(manifest))


def test_a_manifest_whose_files_are_all_missing_says_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    manifest = tmp_path / "lists" / "m.csv"
    manifest.write_text("path,label\nclips/x.wav,a\nclips/y.wav,b\n")
    with pytest.raises(FileNotFoundError, match=r"none of its 2 files exists, e.g. .*lists/clips/x.wav; relative "
                                                r"paths resolve against the manifest's folder, .*lists"):
        get_component("dataset", "manifest").factory(str(manifest))


def test_a_manifest_listing_a_file_twice_over_is_named(tmp_path: Path) -> None:
    for name in ("x.wav", "y.wav", "z.wav"):
        _wav(tmp_path / name)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\nx.wav,a,train\nx.wav,b,train\ny.wav,a,train\ny.wav,a,test\nz.wav,b,\n")
    with pytest.warns(UserWarning, match=r"1 files listed with different labels \(e.g. .*x.wav\); 1 files listed for "
                                         r"training and for testing \(e.g. .*y.wav\)"):
        get_component("dataset", "manifest").factory(str(manifest))


@pytest.mark.parametrize("name", ["logmel", "mfcc", "spectrogram"])
@pytest.mark.parametrize("setting", ["win_ms", "hop_ms"])
def test_a_window_or_hop_of_no_length_is_refused(name: str, setting: str) -> None:
    with pytest.raises(ValueError, match="win_ms and hop_ms must be above 0 ms"):
        get_component("feature", name).factory(8000, **{setting: -5.0})


# -- properties of the engine around the cells --------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_CELLS)
def test_fused_fast_path_equals_unrolling_in_a_bidirectional_stack(name: str) -> None:
    torch.manual_seed(0)
    encoder = RecurrentEncoder(name, 6, 8, num_layers=2, bidirectional=True).eval()
    assert all(hasattr(cell, "forward_sequence") for layer in encoder.layers for cell in layer)
    x, lengths = torch.randn(4, 12, 6), torch.tensor([12, 5, 1, 9])
    results = []
    for fast in (True, False):
        encoder.use_fast_path = fast
        encoder.zero_grad()
        out = encoder(x, lengths)  # (B, T, 2H)
        (out * torch.linspace(-1, 1, 16)).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in encoder.parameters()]))
    (fast_out, fast_grads), (slow_out, slow_grads) = results
    assert fast_out.shape == (4, 12, 16)
    assert float((fast_out - slow_out).abs().max()) <= 1e-5
    assert float(fast_out[1, 5:].abs().max()) == 0 and float(fast_out[2, 1:].abs().max()) == 0
    assert max(float((a - b).abs().max()) for a, b in zip(fast_grads, slow_grads)) <= 1e-4


@pytest.mark.parametrize("name", CELLS)
def test_classifier_save_load_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    dim = build("feature", "logmel", RATE).dim
    network = NetworkConfig(input_size=dim, num_classes=3, cell=name, hidden_size=8, num_layers=2, dropout=0.0)
    classifier = Classifier(ModelSpec(labels=["a", "b", "c"], sample_rate=RATE, network=network, feature="logmel"))
    with torch.no_grad():  # trained statistics must travel with the weights
        classifier.model.norm.mean.normal_()
        classifier.model.norm.std.uniform_(0.5, 2.0)
    path = tmp_path / f"{name}.safetensors"
    classifier.save(path)
    loaded = audioseq.load(path)
    assert loaded.spec.network == network and loaded.labels == ["a", "b", "c"]
    frames, lengths = torch.randn(3, 20, dim), torch.tensor([20, 7, 1])
    assert torch.equal(classifier.probabilities(frames, lengths), loaded.probabilities(frames, lengths))
    wave = np.sin(2 * math.pi * 440 * np.arange(RATE // 2) / RATE).astype(np.float32)
    before, after = classifier.predict([(wave, RATE)])[0], loaded.predict([(wave, RATE)])[0]
    assert before.ok and before.probabilities == after.probabilities


@pytest.mark.parametrize("name", CELLS)
@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 20), min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_padding_is_invisible(name: str, lengths: list[int], seed: int) -> None:
    """Outputs past each length are exactly zero; each final state equals that sequence unrolled alone.

    In float64: float32 rounding differs between batch shapes and grows through the recurrence.
    """
    torch.manual_seed(seed)
    cell = make_cell(name, 3, 4).double().eval()
    B, T = len(lengths), max(lengths)
    x = torch.randn(B, T, 3, dtype=torch.float64)
    lengths_t = torch.tensor(lengths)
    padded = torch.arange(T).unsqueeze(0) >= lengths_t.unsqueeze(1)  # (B, T)
    paths = [unroll(cell, x, lengths_t)]
    if hasattr(cell, "forward_sequence"):
        paths.append(cell.forward_sequence(x, lengths_t, cell.initial_state(B, "cpu", torch.float64)))
        outputs_only, _ = cell.forward_sequence(
            x, lengths_t, cell.initial_state(B, "cpu", torch.float64), need_state=False
        )
        paths.append((outputs_only, None))
    with torch.no_grad():
        for out, final in paths:
            assert bool((out[padded] == 0).all())
            for b, n in enumerate(lengths):
                alone_out, alone_state = unroll(cell, x[b : b + 1, :n], lengths_t[b : b + 1])
                assert float((out[b, :n] - alone_out[0]).abs().max()) <= 1e-5
                for mine, ref in zip(_leaves(final) if final is not None else [], _leaves(alone_state)):
                    assert float((mine[b] - ref[0]).abs().max()) <= 1e-5


def _leaves(state: Any) -> list[Tensor]:
    return [state] if isinstance(state, Tensor) else [t for part in state for t in _leaves(part)]


# -- the checks catch what they promise to catch --------------------------------------------------


class TanhCell(nn.Module):
    """A minimal Elman cell that keeps the contract; the broken cells below each change one thing."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear = nn.Linear(input_size + hidden_size, hidden_size)

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> Tensor:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh(self.linear(torch.cat([x_t, state], dim=-1)))
        return h, h


class BatchMeanCell(TanhCell):
    """Adds the batch mean of the input: a clip's result depends on the rest of its batch."""

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return super().forward(x_t + x_t.mean(0, keepdim=True), state)


class UnmaskedFastPathCell(GRUCell):
    """A whole-sequence path that ignores the lengths."""

    def forward_sequence(self, x: Tensor, lengths: Tensor, state: Tensor, need_state: bool = True) -> tuple[Tensor, Tensor]:
        return unroll(self, x, torch.full_like(lengths, x.shape[1]), state)


class StatefulOnlyFastPathCell(GRUCell):
    """A whole-sequence path written before the encoder could ask for outputs only."""

    def forward_sequence(self, x: Tensor, lengths: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return super().forward_sequence(x, lengths, state)


class InPlaceCell(TanhCell):
    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, _ = super().forward(x_t, state)
        return h, state.mul_(0.5).add_(h)


class UnusedWeightCell(TanhCell):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.spare = nn.Parameter(torch.ones(hidden_size))


class PlainAttributeCell(TanhCell):
    """Keeps a random offset outside the state_dict, so a loaded copy computes something else."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.offset = torch.randn(hidden_size)

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, _ = super().forward(x_t, state)
        return h + self.offset, h + self.offset


class NarrowGateCell(TanhCell):
    gate_names = ("drive",)

    def forward_gates(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        h, new_state = self(x_t, state)
        return h, new_state, {"drive": h[:, :1]}


class NaNStateCell(TanhCell):
    """Its output stays finite while its state turns NaN: every later step would read it."""

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, _ = super().forward(x_t, state)
        return h, h * float("nan")


class OnnxDecliningGRUCell(GRUCell):
    """Has an ONNX form only with its default setting: ``onnx_recurrence`` says so with None."""

    def __init__(self, input_size: int, hidden_size: int, clip: float = 0.0) -> None:
        super().__init__(input_size, hidden_size)
        self.clip = clip

    def onnx_recurrence(self) -> OnnxRecurrence | None:
        return None if self.clip else super().onnx_recurrence()


class StrayMeaningCell(GRUCell):
    """Explains a gate it does not have."""

    gate_meanings = {**GRUCell.gate_meanings, "forget": "what an LSTM would keep"}


class TorchOrderGRUCell(GRUCell):
    """Hands ONNX torch's gate order (reset, update, new) instead of ONNX's (update, reset, hidden)."""

    def onnx_recurrence(self) -> OnnxRecurrence:
        f = self.fused
        return OnnxRecurrence("GRU", f.weight_ih_l0, f.weight_hh_l0, f.bias_ih_l0, f.bias_hh_l0, linear_before_reset=True)


def untyped_cell(input_size: int, hidden_size: int, scale=1.0) -> nn.Module:  # noqa: ANN001
    return RNNCell(input_size, hidden_size)


def test_check_cell_passes_a_cell_that_keeps_the_contract() -> None:
    check_cell(TanhCell, input_size=2, hidden_size=3)


@pytest.mark.parametrize(
    "factory, check",
    [
        (BatchMeanCell, "padding leaked into the state"),
        (UnmaskedFastPathCell, "forward_sequence output past the length"),
        (StatefulOnlyFastPathCell, "forward_sequence signature"),
        (InPlaceCell, "state modified in place"),
        (NaNStateCell, "new state"),
        (UnusedWeightCell, "gradients"),
        (PlainAttributeCell, "model file round trip"),
        (NarrowGateCell, "gate activations"),
        (StrayMeaningCell, "gate_meanings"),
        (untyped_cell, "parameters"),
        pytest.param(TorchOrderGRUCell, "ONNX export", marks=pytest.mark.skipif(
            not onnxruntime_available(), reason="needs onnx and onnxruntime")),
    ],
)
def test_check_cell_names_the_broken_property(factory: Callable[..., nn.Module], check: str) -> None:
    with pytest.raises(ContractError) as caught:
        check_cell(factory)
    assert caught.value.check == check
    assert " — " in str(caught.value) and caught.value.fix


def test_check_cell_skips_the_onnx_comparison_where_the_cell_declines_it() -> None:
    check_cell(OnnxDecliningGRUCell, input_size=2, hidden_size=3, clip=0.5)


class OffByOneFeature(LogMel):
    def num_frames(self, num_samples: Tensor) -> Tensor:
        return super().num_frames(num_samples) + (torch.as_tensor(num_samples) >= self.n_fft).long()


class OneShortFeature(LogMel):
    """Counts one frame fewer than forward makes, its declared min_samples being right."""

    def num_frames(self, num_samples: Tensor) -> Tensor:
        return (super().num_frames(num_samples) - 1).clamp(min=0)


class WrongDimFeature(LogMel):
    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self.dim += 1


class BatchNormalisedFeature(LogMel):
    """Subtracts the mean over the whole batch: padding and neighbours change every frame."""

    def forward(self, waveform: Tensor) -> Tensor:
        frames = super().forward(waveform)
        return frames - frames.mean(dim=(0, 1), keepdim=True)


class UnflooredFeature(LogMel):
    def forward(self, waveform: Tensor) -> Tensor:
        return torch.log(self.mel(waveform)).transpose(-1, -2)


class RunningLevelFeature(LogMel):
    """Keeps a running mean of the frames it has seen in a buffer: forward changes its state."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, waveform: Tensor) -> Tensor:
        frames = super().forward(waveform)
        self.seen += frames.detach().mean() if frames.numel() else 0.0
        return frames


@pytest.mark.parametrize(
    "factory, check",
    [(OffByOneFeature, "frame count"), (OneShortFeature, "num_frames"), (WrongDimFeature, "dim"),
     (BatchNormalisedFeature, "batch consistency"), (UnflooredFeature, "silence"), (RunningLevelFeature, "threads")],
)
def test_check_feature_names_the_broken_property(factory: Callable[..., nn.Module], check: str) -> None:
    with pytest.raises(ContractError) as caught:
        check_feature(factory, sample_rate=RATE)
    assert caught.value.check == check


class SelfPaddingFeature(LogMel):
    """Pads every clip with one window of silence itself, so a single sample gives a frame."""

    def num_frames(self, num_samples: Tensor) -> Tensor:
        n = torch.as_tensor(num_samples, dtype=torch.long)
        return torch.where(n > 0, super().num_frames(n + self.n_fft), torch.zeros_like(n))

    def forward(self, waveform: Tensor) -> Tensor:
        count = int(self.num_frames(torch.tensor(waveform.shape[-1])))
        return super().forward(torch.nn.functional.pad(waveform, (0, self.n_fft)))[:, :count]


def test_check_feature_passes_a_feature_whose_first_frame_needs_one_sample() -> None:
    assert int(SelfPaddingFeature(RATE).num_frames(torch.tensor(1))) == 1
    check_feature(SelfPaddingFeature, sample_rate=RATE)


class UnlistedLabelDataset(SyntheticDataset):
    def __init__(self, root: str | None = None) -> None:
        super().__init__(root, per_class=2)
        self.labels = self.labels[1:]


class IgnoresSplitDataset(SyntheticDataset):
    def __init__(self, root: str | None = None) -> None:
        super().__init__(root, per_class=2)

    def examples(self, split: str | None = None) -> list[Example]:
        return list(super().examples())


class ReshuffledDataset(SyntheticDataset):
    def __init__(self, root: str | None = None) -> None:
        super().__init__(root, per_class=2, seed=int(np.random.default_rng().integers(1 << 30)))


@pytest.mark.parametrize(
    "factory, check",
    [(UnlistedLabelDataset, "example label"), (IgnoresSplitDataset, "split subset"), (ReshuffledDataset, "determinism")],
)
def test_check_dataset_names_the_broken_property(factory: Callable[..., Any], check: str) -> None:
    with pytest.raises(ContractError) as caught:
        check_dataset(factory, None)
    assert caught.value.check == check


def test_checks_leave_the_callers_random_stream_and_threads_alone() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        check_cell(get_component("cell", "gru").factory, hidden_size=3)
        assert torch.equal(torch.rand(3), expected)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
