"""Plugins: the hooks, entry-point discovery, fault tolerance, typed parameters, the
``new-plugin`` scaffold and the plugin tutorial (docs/plugins.md).

In-process tests register a throwaway plugin object and unregister it afterwards. Entry-point
loading happens once per interpreter, so everything about discovery and its environment
variables runs in a fresh interpreter against fake distributions written to a temporary folder.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

import audioseq
from audioseq import hookimpl, hookspecs, plugins
from audioseq.cli import cli as audioseq_cli
from audioseq.errors import ParameterError, PluginError, UnknownComponentError
from audioseq.hookspecs import Register, RegisterModel
from audioseq.params import validate
from audioseq.scaffold import KINDS, ScaffoldError, package_name, render, scaffold_plugin
from audioseq.training import TrainConfig
from conftest import registered

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"
SCRIPT = Path(sys.executable).with_name("audioseq")
# The example plugin of each kind in docs/plugins.md.
EXAMPLES = {"cell": "forget-gate", "feature": "energy-zcr", "dataset": "named-clips"}


# --- a throwaway plugin, registered in-process ---------------------------------------------


class TinyCell(nn.Module):
    """An Elman step with a scaled recurrence.

    Args:
        scale: factor on the recurrent term.
        squash: output nonlinearity.
    """

    def __init__(
        self, input_size: int, hidden_size: int, scale: float = 0.5, squash: Literal["tanh", "sigmoid"] = "tanh"
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.scale = scale
        self.squash = squash
        self.ih = nn.Linear(input_size, hidden_size)
        self.hh = nn.Linear(hidden_size, hidden_size, bias=False)

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> Tensor:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.ih(x_t) + self.scale * self.hh(state)
        h = torch.tanh(pre) if self.squash == "tanh" else torch.sigmoid(pre)
        return h, h


class FrameStats(nn.Module):
    """Log energy and mean magnitude of back-to-back frames, (B, N) → (B, T, 2).

    Args:
        frame_ms: frame length in milliseconds.
    """

    dim = 2

    def __init__(self, sample_rate: int, frame_ms: float = 20.0) -> None:
        super().__init__()
        self.size = max(1, round(sample_rate * frame_ms / 1000))

    def num_frames(self, num_samples: Tensor) -> Tensor:
        return torch.as_tensor(num_samples, dtype=torch.long) // self.size

    def forward(self, waveform: Tensor) -> Tensor:
        count = waveform.shape[-1] // self.size
        frames = waveform[..., : count * self.size].reshape(*waveform.shape[:-1], count, self.size)
        return torch.stack([frames.pow(2).mean(-1).clamp(min=1e-8).log(), frames.abs().mean(-1)], dim=-1)


class ToneOrNoise:
    """Tones and noise bursts at 8 kHz, ``per_class`` of each.

    Args:
        per_class: clips per label.
    """

    def __init__(self, root: str | None, per_class: int = 4) -> None:
        rng = np.random.default_rng(0)
        tone = np.sin(2 * math.pi * 440 * np.arange(2000) / 8000).astype(np.float32)
        self.labels = ["noise", "tone"]
        self._examples = [audioseq.Example((tone, 8000), "tone") for _ in range(per_class)] + [
            audioseq.Example((rng.standard_normal(2000).astype(np.float32), 8000), "noise") for _ in range(per_class)
        ]

    def examples(self, split: str | None = None) -> Sequence[audioseq.Example]:
        return [ex for ex in self._examples if split is None or ex.split == split]


class Throwaway:
    @hookimpl
    def register_cells(self, register: Register) -> None:
        register("throwaway-cell", TinyCell)

    @hookimpl
    def register_features(self, register: Register) -> None:
        register("throwaway-feature", FrameStats)

    @hookimpl
    def register_datasets(self, register: Register) -> None:
        register("throwaway-dataset", ToneOrNoise)


class Impostor:
    @hookimpl
    def register_cells(self, register: Register) -> None:
        register("throwaway-cell", TinyCell)


@pytest.fixture()
def throwaway() -> Iterator[str]:
    with registered(Throwaway(), "throwaway"):
        yield "throwaway"


def test_throwaway_components_are_registered_with_typed_parameters(throwaway: str) -> None:
    assert "throwaway-cell" in audioseq.list_cells()
    assert "throwaway-feature" in audioseq.list_features()
    assert "throwaway-dataset" in audioseq.list_datasets()
    assert plugins.get_component("cell", "throwaway-cell").plugin == throwaway
    assert audioseq.component_params("cell", "throwaway-cell") == [
        {"name": "scale", "type": "float", "default": 0.5, "choices": None, "help": "factor on the recurrent term."},
        {"name": "squash", "type": "choice", "default": "tanh", "choices": ["tanh", "sigmoid"],
         "help": "output nonlinearity."},
    ]
    assert [p["name"] for p in audioseq.component_params("feature", "throwaway-feature")] == ["frame_ms"]
    assert len(audioseq.load_dataset("throwaway-dataset", None, {"per_class": "3"}).examples()) == 6


def test_unregistering_removes_the_components() -> None:
    with registered(Throwaway(), "throwaway"):
        assert "throwaway-cell" in audioseq.list_cells()
    assert "throwaway-cell" not in audioseq.list_cells()
    assert "gru" in audioseq.list_cells()


def test_plugins_command_lists_the_throwaway_plugin(throwaway: str) -> None:
    result = CliRunner().invoke(audioseq_cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    entry = next(p for p in json.loads(result.stdout) if p["name"] == throwaway)
    assert entry["hooks"] == ["register_cells", "register_datasets", "register_features"]
    assert entry["error"] is None and entry["version"] is None
    assert {(c["kind"], c["name"]) for c in entry["components"]} == {
        ("cell", "throwaway-cell"), ("feature", "throwaway-feature"), ("dataset", "throwaway-dataset")}
    cell = next(c for c in entry["components"] if c["kind"] == "cell")
    assert cell["doc"] == "An Elman step with a scaled recurrence."
    assert [p["name"] for p in cell["params"]] == ["scale", "squash"]
    listing = CliRunner().invoke(audioseq_cli, ["plugins"])
    assert "throwaway-cell" in listing.output and "scale: float = 0.5" in listing.output


def test_a_model_trains_with_the_throwaway_cell_and_feature(throwaway: str) -> None:
    data = audioseq.load_dataset("synthetic", None, {"per_class": 3, "max_seconds": 0.5})
    config = TrainConfig(
        feature="throwaway-feature", feature_params={"frame_ms": 10.0}, cell="throwaway-cell",
        cell_params={"squash": "sigmoid"}, hidden_size=8, num_layers=1, bidirectional=False,
        pooling="mean", augment=None, epochs=2, batch_size=8, device="cpu",
    )
    result = audioseq.train(data, config)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    cell = result.classifier.model.encoder.layers[0][0]
    assert isinstance(cell, TinyCell) and cell.squash == "sigmoid"
    # The model stores every parameter, defaults included: a later release changing one keeps this model as trained.
    assert result.classifier.spec.network.cell_params == {"scale": 0.5, "squash": "sigmoid"}
    assert result.classifier.spec.feature_params == {"frame_ms": 10.0}
    prediction = result.classifier.predict([(np.sin(np.arange(4000) * 0.3).astype(np.float32), 8000)])[0]
    assert prediction.label in data.labels


def test_a_duplicate_name_names_both_plugins(throwaway: str) -> None:
    with registered(Impostor(), "impostor"):
        with pytest.raises(PluginError, match="'throwaway-cell'") as caught:
            audioseq.list_cells()
        assert "'throwaway'" in str(caught.value) and "'impostor'" in str(caught.value)


# --- ready-trained models shipped by a plugin -----------------------------------------------


class ModelShipper:
    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path

    @hookimpl
    def register_models(self, register: RegisterModel) -> None:
        register(self.name, self.path)


@pytest.fixture()
def shipped(tmp_path: Path) -> Iterator[Path]:
    """The bundled digits model copied into a plugin's folder and registered as ``shipped-digits``."""
    folder = tmp_path / "package" / "models"
    folder.mkdir(parents=True)
    path = folder / "shipped-digits.safetensors"
    shutil.copyfile(plugins.get_component("model", "digits").path, path)
    (folder / "shipped-digits.md").write_text(
        "# Model card: `shipped-digits`\n\nDigits from a plugin: for the tests. More\nwords.\n\n## Data\n"
    )
    with registered(ModelShipper("shipped-digits", path), "shipper"):
        yield path


def test_the_built_in_model_registers_through_the_model_hook() -> None:
    component = plugins.get_component("model", "digits")
    assert component.plugin == "audioseq.default_plugins.models"
    assert component.path is not None and component.path.name == "digits.safetensors"
    assert audioseq.bundled_models() == sorted(plugins.registry()["model"])


def test_a_plugin_model_loads_by_name_and_predicts_like_its_file(shipped: Path, tmp_path: Path) -> None:
    assert "shipped-digits" in audioseq.bundled_models() and "digits" in audioseq.bundled_models()
    clf = audioseq.load("shipped-digits", backend="torch")
    assert Path(clf.path) == shipped.resolve()
    wave = np.sin(2 * math.pi * 300 * np.arange(6000) / 8000).astype(np.float32) * np.hanning(6000).astype(np.float32)
    ours = clf.predict([(wave, 8000)])[0]
    theirs = audioseq.load("digits", backend="torch").predict([(wave, 8000)])[0]
    assert ours.error is None and ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-6)
    clip = tmp_path / "clip.wav"
    import soundfile as sf

    sf.write(clip, wave, 8000)
    result = CliRunner().invoke(audioseq_cli, ["predict", "shipped-digits", str(clip), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["label"] == theirs.label


def test_the_plugins_command_lists_a_plugin_model_with_its_card(shipped: Path) -> None:
    result = CliRunner().invoke(audioseq_cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    entry = next(p for p in json.loads(result.stdout) if p["name"] == "shipper")
    assert entry["hooks"] == ["register_models"] and entry["error"] is None
    assert entry["components"] == [{
        "kind": "model", "name": "shipped-digits", "plugin": "shipper", "doc": "Digits from a plugin",
        "params": [], "path": str(shipped.resolve()),
    }]
    listing = CliRunner().invoke(audioseq_cli, ["plugins"])
    assert re.search(r"model +shipped-digits +Digits from a plugin$", listing.output, re.M), listing.output


def test_a_model_without_a_card_has_no_summary(shipped: Path) -> None:
    shipped.with_suffix(".md").unlink()
    plugins.refresh()
    assert plugins.get_component("model", "shipped-digits").doc == ""


def test_a_model_path_that_is_not_a_file_reports_the_plugin_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugins, "broken", [])
    with registered(ModelShipper("ghost", tmp_path / "missing.safetensors"), "ghostly"):
        with pytest.warns(UserWarning, match="skipping plugin 'ghostly'.*'ghost'.*not a file"):
            names = audioseq.bundled_models()
        assert "ghost" not in names and "digits" in names
        entry = next(p for p in plugins.plugins_info() if p["name"] == "ghostly")
        assert "missing.safetensors" in entry["error"]
        monkeypatch.setenv("AUDIOSEQ_STRICT_PLUGINS", "1")
        plugins.refresh()
        with pytest.raises(PluginError, match="plugin 'ghostly'.*not a file"):
            audioseq.bundled_models()


def test_a_model_name_registered_twice_names_both_plugins(tmp_path: Path) -> None:
    with registered(ModelShipper("digits", plugins.get_component("model", "digits").path), "twin"):
        with pytest.raises(PluginError, match="model 'digits' is registered twice") as caught:
            audioseq.bundled_models()
        assert "'twin'" in str(caught.value) and "'audioseq.default_plugins.models'" in str(caught.value)


# --- what a plugin can get wrong ------------------------------------------------------------


class WideCell(TinyCell):
    """Returns twice the hidden size: the next layer would fail far from the cause."""

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, new_state = super().forward(x_t, state)
        return torch.cat([h, h], dim=-1), new_state


class SwappedCell(TinyCell):
    """Returns (state, h) as its state: a structure unlike ``initial_state``'s."""

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Any]:
        h, new_state = super().forward(x_t, state)
        return h, (new_state, h)


class OneFrameTooMany(FrameStats):
    def num_frames(self, num_samples: Tensor) -> Tensor:
        return super().num_frames(num_samples) + 1


class OneValueTooMany(FrameStats):
    dim = 3


class Careless:
    """A plugin registering what it is given, to try each mistake in turn."""

    def __init__(self, kind: str, name: Any, factory: Any) -> None:
        self.kind, self.name, self.factory = kind, name, factory

    @hookimpl
    def register_cells(self, register: Register) -> None:
        if self.kind == "cell":
            register(self.name, self.factory)

    @hookimpl
    def register_features(self, register: Register) -> None:
        if self.kind == "feature":
            register(self.name, self.factory)


def _cell_with(annotation: Any, default: Any) -> Any:
    def cell(input_size: int, hidden_size: int, odd=default) -> nn.Module:
        return TinyCell(input_size, hidden_size)

    cell.__annotations__ = {"odd": annotation}
    return cell


@pytest.mark.parametrize(
    ("name", "factory", "message"),
    [
        ("dict-param", _cell_with(dict[str, int], {}), r"parameter 'odd' has type dict, which cannot be given"),
        ("path-param", _cell_with(Path, Path(".")), r"parameter 'odd' has type Path"),
        ("union-param", _cell_with(int | str, 3), r"parameter 'odd' has type"),
        ("bad-choice", _cell_with(Literal["a", "b"], "c"), r"the default 'c', which is not a choice"),
        ("bad-int", _cell_with(int, 2.5), r"the default 2.5, which is not a int"),
        ("Bad Name,x=1", TinyCell, r"registered a cell named 'Bad Name,x=1'; a name is letters"),
        ("not-callable", 42, r"registered cell 'not-callable' as 42, which is not callable"),
    ],
)
def test_a_component_the_engine_cannot_offer_skips_its_plugin(
    monkeypatch: pytest.MonkeyPatch, name: str, factory: Any, message: str
) -> None:
    monkeypatch.setattr(plugins, "broken", [])
    with registered(Careless("cell", name, factory), "careless"):
        with pytest.warns(UserWarning, match="skipping plugin 'careless', hook register_cells failed") as caught:
            assert name not in audioseq.list_cells()
        assert re.search(message, str(caught[0].message))
        assert caught[0].filename == "<audioseq plugin 'careless'>"  # not a line of audioseq
        result = CliRunner().invoke(audioseq_cli, ["plugins", "--json"])
        assert result.exit_code == 0, result.output
        entry = next(p for p in json.loads(result.stdout) if p["name"] == "careless")
        assert re.search(message, entry["error"]) and entry["components"] == []


class Twice:
    @hookimpl
    def register_cells(self, register: Register) -> None:
        register("twice-cell", TinyCell)
        register("twice-cell", WideCell)


def test_a_plugin_registering_one_name_twice_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "broken", [])
    with registered(Twice(), "twice"):
        with pytest.warns(UserWarning, match="'twice', hook register_cells failed: PluginError: it registers cell "
                                             "'twice-cell' twice"):
            cells = audioseq.list_cells()
        assert "twice-cell" not in cells and "gru" in cells


class Raising:
    @hookimpl
    def register_cells(self, register: Register) -> None:
        raise RuntimeError("boom")


def test_a_failing_hook_is_reported_once_and_only_while_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "broken", [])
    with pytest.warns(UserWarning, match="'raising', hook register_cells raised"):
        with registered(Raising(), "raising"):
            for _ in range(3):
                plugins.refresh()
                plugins.registry()
            assert [b.name for b in plugins.broken] == ["raising"]
    plugins.registry()
    assert plugins.broken == []
    with pytest.raises(UnknownComponentError) as caught:
        plugins.get_component("cell", "no-such-cell")
    assert "failed to load" not in str(caught.value)


class NaNCell(TinyCell):
    """Finite for a few frames, then NaN: a numerically unstable recurrence."""

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, new_state = super().forward(x_t, state)
        return h / (h - h), new_state / (new_state - new_state)


class NaNFrames(FrameStats):
    def forward(self, waveform: Tensor) -> Tensor:
        return super().forward(waveform) * float("nan")


@pytest.mark.parametrize(("kind", "factory", "blamed"), [
    ("cell", NaNCell, "cell 'careless-part' (plugin 'careless') gave non-finite outputs from finite frames"),
    ("feature", NaNFrames, "feature 'careless-part' (plugin 'careless') gave non-finite frames"),
])
def test_a_non_finite_training_loss_names_the_component(kind: str, factory: Any, blamed: str, tmp_path: Path) -> None:
    data = audioseq.load_dataset("synthetic", None, {"per_class": 2, "max_seconds": 0.5})
    names = {"cell": "careless-part", "feature": "logmel"} if kind == "cell" else {"cell": "rnn", "feature": "careless-part"}
    config = TrainConfig(feature=names["feature"], cell=names["cell"], hidden_size=4, num_layers=1, bidirectional=False,
                         pooling="mean", augment=None, epochs=1, batch_size=4, device="cpu")
    with registered(Careless(kind, "careless-part", factory), "careless"):
        with pytest.raises(PluginError, match=re.escape(blamed)) as caught:
            audioseq.train(data, config, out=tmp_path / "m.safetensors")
    assert "the training loss is not finite at epoch 1, batch 1" in str(caught.value)
    assert not (tmp_path / "m.safetensors").exists()


class EnergeticCell(TinyCell):
    """Exposes one named gate, and an extra value that is not among its gate_names."""

    gate_names = ("drive",)

    def forward_gates(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        h, new_state = super().forward(x_t, state)
        return h, new_state, {"drive": torch.sigmoid(self.ih(x_t)), "energy": h.pow(2).sum(-1, keepdim=True)}

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return super().forward(x_t, state)


def _classifier_with(cell: str) -> Any:
    from audioseq.classifier import Classifier
    from audioseq.model import NetworkConfig
    from audioseq.spec import ModelSpec

    torch.manual_seed(0)
    network = NetworkConfig(input_size=16, num_classes=2, cell=cell, hidden_size=4, num_layers=1)
    return Classifier(ModelSpec(["a", "b"], 8000, network, feature="logmel", feature_params={"n_mels": 16}),
                      backend="torch")


def test_only_the_named_gates_are_shown() -> None:
    with registered(Careless("cell", "energetic", EnergeticCell), "careless"):
        inspection = _classifier_with("energetic").inspect((np.sin(np.arange(4000) * 0.3).astype(np.float32), 8000))
    assert set(inspection.gates) == {"drive"}
    assert inspection.gates["drive"].shape[-1] == 4


def test_a_non_finite_answer_from_finite_audio_names_the_model_s_components() -> None:
    clip = (np.sin(np.arange(4000) * 0.3).astype(np.float32), 8000)
    with registered(Careless("cell", "nan-cell", NaNCell), "careless"):
        clf = _classifier_with("nan-cell")
        [prediction] = clf.predict([clip])
        with pytest.raises(audioseq.NonFiniteAudioError) as caught:
            clf.inspect(clip)
    assert prediction.label is None and prediction.error_type == "NonFiniteAudioError"
    assert "although its samples are: feature 'logmel' or cell 'nan-cell' computed a NaN" in prediction.error
    assert caught.value.reason == prediction.error


def test_a_fixed_length_tuple_parameter_takes_exactly_its_count() -> None:
    def feature(sample_rate: int, band: tuple[float, float] = (50.0, 4000.0)) -> None:
        """A feature with a frequency band."""

    [param] = plugins.declared_params(feature, 1)
    assert validate([param], {"band": "60, 3800"}, "feature 'banded'") == {"band": (60.0, 3800.0)}
    with pytest.raises(ParameterError, match=r"feature 'banded'.band: expected 2 comma-separated values, got 3"):
        validate([param], {"band": "60, 3800, 7000"}, "feature 'banded'")


class HalfWay:
    """Registers a cell, then its feature hook raises: the plugin is skipped, cell included."""

    @hookimpl
    def register_cells(self, register: Register) -> None:
        register("half-cell", TinyCell)

    @hookimpl
    def register_features(self, register: Register) -> None:
        register("half-feature", FrameStats)
        raise RuntimeError("the feature's weights are missing")


def test_a_plugin_whose_hook_fails_registers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "broken", [])
    with registered(HalfWay(), "halfway"):
        with pytest.warns(UserWarning, match="'halfway', hook register_features raised: RuntimeError"):
            cells, features = audioseq.list_cells(), audioseq.list_features()
        assert "half-cell" not in cells and "half-feature" not in features and "gru" in cells
        with pytest.raises(UnknownComponentError, match="half-cell"):
            plugins.get_component("cell", "half-cell")


@pytest.mark.parametrize(
    ("kind", "factory", "message"),
    [
        ("cell", WideCell, r"cell 'careless-part' \(plugin 'careless'\): gave outputs of shape \(\d+, \d+, 8\) "
                           r"for .* expected \(B, T, H\) = \(\d+, \d+, 4\)"),
        ("cell", SwappedCell, r"cell 'careless-part' \(plugin 'careless'\): forward returned a new state shaped "
                              r"\(\(\d+, 4\), \(\d+, 4\)\) from a state shaped \(\d+, 4\)"),
        ("feature", OneFrameTooMany, r"feature 'careless-part' \(plugin 'careless'\): gave frames of shape "
                                     r"\(\d+, (\d+), 2\) for clips of at most \d+ samples, where num_frames and "
                                     r"dim say \(B, (?!\1)\d+, 2\)"),
        ("feature", OneValueTooMany, r"feature 'careless-part' \(plugin 'careless'\): gave frames of shape "
                                     r"\(\d+, (\d+), 2\) .* say \(B, \1, 3\)"),
    ],
)
def test_a_component_breaking_its_contract_is_named_when_it_runs(kind: str, factory: Any, message: str) -> None:
    data = audioseq.load_dataset("synthetic", None, {"per_class": 2, "max_seconds": 0.5})
    names = {"cell": "careless-part", "feature": "logmel"} if kind == "cell" else {"cell": "rnn", "feature": "careless-part"}
    config = TrainConfig(feature=names["feature"], cell=names["cell"], hidden_size=4, num_layers=1,
                         bidirectional=False, pooling="mean", augment=None, epochs=1, batch_size=4, device="cpu")
    with registered(Careless(kind, "careless-part", factory), "careless"):
        with pytest.raises(PluginError, match=message):
            audioseq.train(data, config)


def test_an_existing_file_wins_over_a_model_name(shipped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("shipped-digits").write_bytes(b"not a model")
    with pytest.raises(audioseq.ModelFileError, match="shipped-digits"):
        audioseq.load("shipped-digits")


def test_a_parameter_s_help_keeps_its_continuation_lines() -> None:
    from audioseq.params import declared_params

    def factory(sample_rate: int, width: float = 1.0, depth: int = 2) -> None:
        """A feature.

        Args:
            width: how wide the window is, in seconds;
                longer windows: finer frequencies, coarser time.
            depth: how many layers.
        """

    helps = {p.name: p.help for p in declared_params(factory, 1)}
    assert helps == {"width": "how wide the window is, in seconds; longer windows: finer frequencies, coarser time.",
                     "depth": "how many layers."}


def test_parameters_are_converted_and_checked(throwaway: str) -> None:
    cell = plugins.build("cell", "throwaway-cell", 3, 4, params={"scale": "0.25", "squash": "sigmoid"})
    assert cell.scale == 0.25 and cell.squash == "sigmoid"
    with pytest.raises(ParameterError, match=r"throwaway-cell'\.scale: expected a number, got 'abc'"):
        plugins.build("cell", "throwaway-cell", 3, 4, params={"scale": "abc"})
    with pytest.raises(ParameterError, match="'relu' is not one of tanh, sigmoid"):
        plugins.build("cell", "throwaway-cell", 3, 4, params={"squash": "relu"})
    with pytest.raises(ParameterError, match="unknown parameter 'width'; known: scale, squash"):
        plugins.build("cell", "throwaway-cell", 3, 4, params={"width": 2})


# --- parameters and names on the command line ------------------------------------------------


def _train(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(
        audioseq_cli, ["train", "--dataset", "synthetic", "--out", str(tmp_path / "m.safetensors"), *args]
    )


def test_a_badly_typed_cell_option_names_the_parameter(tmp_path: Path) -> None:
    result = _train(tmp_path, "--cell", "lstm", "--cell-opt", "forget_bias=abc")
    assert result.exit_code == 1
    assert "ParameterError: cell 'lstm'.forget_bias: expected a number, got 'abc'" in result.output
    assert not (tmp_path / "m.safetensors").exists()


def test_an_unknown_feature_option_lists_the_known_ones(tmp_path: Path) -> None:
    result = _train(tmp_path, "--features", "logmel", "--feature-opt", "foo=1")
    assert result.exit_code == 1
    assert "unknown parameter 'foo'; known: deltas, f_max, f_min, hop_ms, n_mels, win_ms" in result.output


def test_an_option_without_a_value_is_refused(tmp_path: Path) -> None:
    result = _train(tmp_path, "--cell-opt", "forget_bias")
    assert result.exit_code == 1
    assert "expected key=value, got 'forget_bias'" in result.output


def test_an_unknown_component_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownComponentError) as caught:
        plugins.get_component("feature", "nope")
    assert caught.value.known == audioseq.list_features()
    assert f"known features: {', '.join(audioseq.list_features())}." in str(caught.value)
    result = _train(tmp_path, "--cell", "nope")
    assert result.exit_code == 1
    assert f"unknown cell 'nope'; known cells: {', '.join(audioseq.list_cells())}." in result.output


def test_the_real_command_reports_a_bad_option_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(SCRIPT), "train", "--dataset", "synthetic", "--out", str(tmp_path / "m.safetensors"),
         "--cell", "lstm", "--cell-opt", "forget_bias=abc"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "Error: ParameterError: cell 'lstm'.forget_bias: expected a number, got 'abc'"


# --- entry points, in a fresh interpreter --------------------------------------------------

FAKE = '''
from typing import Literal

from audioseq import hookimpl


def fake_cell(input_size: int, hidden_size: int, nonlinearity: Literal["tanh", "relu"] = "relu"):
    """An Elman cell from an installed distribution.

    Args:
        nonlinearity: activation of the recurrence.
    """
    from audioseq.default_plugins.cells import RNNCell

    return RNNCell(input_size, hidden_size, nonlinearity)


@hookimpl
def register_cells(register):
    register("fake-cell", fake_cell)
'''

BROKEN = 'raise ImportError("this plugin needs libfoo, which is not installed")\n'

RAISING = '''
from audioseq import hookimpl


@hookimpl
def register_cells(register):
    raise RuntimeError("the model zoo is unreachable")
'''

DUPLICATE = '''
from audioseq import hookimpl
from audioseq.default_plugins.cells import GRUCell


@hookimpl
def register_cells(register):
    register("fake-cell", GRUCell)
'''

TYPO = '''
from audioseq import hookimpl
from audioseq.default_plugins.cells import GRUCell


@hookimpl
def register_cell(register):
    register("typo-cell", GRUCell)
'''

UNDECORATED = '''
from audioseq.default_plugins.cells import GRUCell


def register_cells(register):
    register("undecorated-cell", GRUCell)
'''

# Loads the plugins the environment allows and reports what `audioseq plugins` shows.
PROBE = '''
import json, warnings
from click.testing import CliRunner
from audioseq.cli import cli

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    as_json = CliRunner().invoke(cli, ["plugins", "--json"])
listing = CliRunner().invoke(cli, ["plugins"])
print(json.dumps({"warnings": [str(w.message) for w in caught], "codes": [as_json.exit_code, listing.exit_code],
                  "plugins": json.loads(as_json.stdout), "listing": listing.stdout}))
'''


def fake_distribution(where: Path, entry: str, module: str, source: str, version: str) -> Path:
    """A folder holding ``module`` and an installed-looking ``*.dist-info`` with an audioseq entry point."""
    folder = where / entry
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    info = folder / f"audioseq_{entry}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: audioseq-{entry}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[audioseq]\n{entry} = {module}\n")
    return folder


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("dists")
    return {
        "fake": fake_distribution(where, "fake", "fake_plugin_mod", FAKE, "1.2.3"),
        "broken": fake_distribution(where, "broken", "broken_plugin_mod", BROKEN, "0.1"),
        "raising": fake_distribution(where, "raising", "raising_plugin_mod", RAISING, "0.2"),
        "dup": fake_distribution(where, "dup", "dup_plugin_mod", DUPLICATE, "0.3"),
        "typo": fake_distribution(where, "typo", "typo_plugin_mod", TYPO, "0.4"),
        "undecorated": fake_distribution(where, "undecorated", "undecorated_plugin_mod", UNDECORATED, "0.5"),
    }


def fresh(command: list[str], path: Sequence[Path], **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with only ``path`` added to sys.path and only the given AUDIOSEQ_* variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOSEQ_")}
    environ.update(env, PYTHONPATH=os.pathsep.join(map(str, path)))
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=120)


def probe(path: Sequence[Path], **env: str) -> dict[str, Any]:
    proc = fresh([sys.executable, "-c", PROBE], path, **env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["codes"] == [0, 0]
    report["by_name"] = {p["name"]: p for p in report["plugins"]}
    return report


def test_entry_points_load_and_failures_are_reported(dists: dict[str, Path]) -> None:
    report = probe([dists["fake"], dists["broken"], dists["raising"]])
    fake = report["by_name"]["fake"]
    assert fake["version"] == "1.2.3" and fake["error"] is None
    [component] = fake["components"]
    assert (component["kind"], component["name"]) == ("cell", "fake-cell")
    assert component["params"] == [{"name": "nonlinearity", "type": "choice", "default": "relu",
                                     "choices": ["tanh", "relu"], "help": "activation of the recurrence."}]
    broken, raising = report["by_name"]["broken"], report["by_name"]["raising"]
    assert broken["error"] == "ImportError: this plugin needs libfoo, which is not installed"
    assert broken["components"] == []
    assert raising["error"] == "RuntimeError: the model zoo is unreachable"
    assert any("'broken'" in w and "libfoo" in w for w in report["warnings"])
    assert any("'raising'" in w and "register_cells" in w for w in report["warnings"])
    assert "BROKEN: ImportError: this plugin needs libfoo" in report["listing"]
    assert "fake 1.2.3" in report["listing"]
    builtin = report["by_name"]["audioseq.default_plugins.cells"]
    assert {c["name"] for c in builtin["components"]} == {"rnn", "lstm", "gru"}


@pytest.mark.parametrize(
    ("dist", "message"),
    [("broken", "PluginError: plugin 'broken' failed to load: ImportError: this plugin needs libfoo"),
     ("raising", "PluginError: plugin 'raising' hook register_cells raised: RuntimeError: the model zoo"),
     ("typo", "PluginError: plugin 'typo' failed to load: PluginError: unknown hook 'register_cell'; the hooks are "
              "register_cells, register_features, register_datasets, register_models")],
)
def test_strict_mode_makes_a_failing_plugin_fatal(dists: dict[str, Path], dist: str, message: str) -> None:
    proc = fresh([str(SCRIPT), "plugins"], [dists["fake"], dists[dist]], AUDIOSEQ_STRICT_PLUGINS="1")
    assert proc.returncode == 1
    assert message in proc.stderr


def test_a_misnamed_or_undecorated_hook_skips_its_plugin(dists: dict[str, Path]) -> None:
    report = probe([dists["fake"], dists["typo"], dists["undecorated"]])
    typo, undecorated = report["by_name"]["typo"], report["by_name"]["undecorated"]
    assert typo["error"] == ("PluginError: unknown hook 'register_cell'; the hooks are register_cells, "
                             "register_features, register_datasets, register_models")
    assert undecorated["error"].startswith("PluginError: it implements none of the hooks (register_cells, ")
    assert "@audioseq.hookimpl" in undecorated["error"]
    assert typo["components"] == undecorated["components"] == [] and typo["version"] == "0.4"
    assert any("'typo'" in w and "register_cell'" in w for w in report["warnings"])
    assert "typo-cell" not in report["listing"] and "undecorated-cell" not in report["listing"]
    assert report["by_name"]["fake"]["error"] is None


def test_a_duplicate_across_distributions_names_both(dists: dict[str, Path]) -> None:
    proc = fresh([str(SCRIPT), "plugins"], [dists["fake"], dists["dup"]])
    assert proc.returncode == 1
    assert re.search(r"PluginError: cell 'fake-cell' is registered twice: by plugin '(fake|dup)' and by plugin "
                     r"'(fake|dup)'; uninstall one of them, or leave one out with AUDIOSEQ_LOAD_PLUGINS=", proc.stderr)
    assert "'fake'" in proc.stderr and "'dup'" in proc.stderr


def test_an_empty_allow_list_loads_no_entry_points(dists: dict[str, Path]) -> None:
    report = probe([dists["fake"], dists["broken"], dists["raising"]], AUDIOSEQ_LOAD_PLUGINS="")
    assert report["warnings"] == []
    assert all(name.startswith("audioseq.") for name in report["by_name"])
    assert len(report["by_name"]) == 4  # cells, features, datasets, models
    assert "gru" in report["listing"] and "synthetic" in report["listing"]


def test_an_allow_list_loads_only_the_named_entry_points(dists: dict[str, Path]) -> None:
    report = probe([dists["fake"], dists["broken"], dists["raising"]], AUDIOSEQ_LOAD_PLUGINS="fake")
    assert report["warnings"] == []
    assert {name for name in report["by_name"] if not name.startswith("audioseq.")} == {"fake"}
    assert report["by_name"]["fake"]["version"] == "1.2.3"
    proc = fresh([sys.executable, "-c", "from audioseq import plugins; plugins.get_component('cell', 'dup-cell')"],
                 [dists["fake"], dists["dup"]], AUDIOSEQ_LOAD_PLUGINS="fake")
    assert "add it to AUDIOSEQ_LOAD_PLUGINS (now 'fake'), which limits the plugins loaded" in proc.stderr


def test_an_allow_list_naming_no_entry_point_warns(dists: dict[str, Path]) -> None:
    report = probe([dists["fake"]], AUDIOSEQ_LOAD_PLUGINS="fake,fkae")
    assert report["by_name"]["fake"]["error"] is None
    assert any("AUDIOSEQ_LOAD_PLUGINS names fkae, which no installed plugin declares" in w for w in report["warnings"])


@pytest.mark.parametrize(("value", "fatal"), [("1", True), ("yes", True), ("0", False), ("off", False), ("No", False)])
def test_strict_mode_reads_the_usual_words_for_off(dists: dict[str, Path], value: str, fatal: bool) -> None:
    proc = fresh([str(SCRIPT), "plugins"], [dists["fake"], dists["broken"]], AUDIOSEQ_STRICT_PLUGINS=value)
    assert proc.returncode == (1 if fatal else 0), proc.stderr


def test_two_distributions_declaring_one_entry_point_load_neither(dists: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "other_plugin_mod.py").write_text(DUPLICATE.replace("fake-cell", "other-cell"))
    info = other / "audioseq_other-0.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: audioseq-other\nVersion: 0.9\n")
    (info / "entry_points.txt").write_text("[audioseq]\nfake = other_plugin_mod\n")
    report = probe([dists["fake"], other])
    assert report["by_name"]["fake"]["error"] == (
        "PluginError: entry point 'fake' is declared by fake_plugin_mod (audioseq-fake) and by other_plugin_mod "
        "(audioseq-other); rename one of them")
    assert "fake-cell" not in report["listing"] and "other-cell" not in report["listing"]
    strict = fresh([str(SCRIPT), "plugins"], [dists["fake"], other], AUDIOSEQ_STRICT_PLUGINS="1")
    assert strict.returncode == 1 and "entry point 'fake' is declared by" in strict.stderr


def test_new_plugin_refuses_a_name_an_installed_package_has(dists: dict[str, Path], tmp_path: Path) -> None:
    proc = fresh([str(SCRIPT), "new-plugin", "fake", "--kind", "feature", "--dir", str(tmp_path)], [dists["fake"]])
    assert proc.returncode == 1
    assert "the distribution 'audioseq-fake' is already installed; installing audioseq-fake would replace" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# Saves a model whose cell comes from the fake distribution (run with it on the path).
SAVE_WITH_FAKE_CELL = '''
import sys
from audioseq.classifier import Classifier
from audioseq.model import NetworkConfig
from audioseq.spec import ModelSpec

network = NetworkConfig(input_size=16, num_classes=2, cell="fake-cell", hidden_size=4, num_layers=1)
Classifier(ModelSpec(["a", "b"], 8000, network, feature="logmel", feature_params={"n_mels": 16})).save(sys.argv[1])
'''


def test_a_model_names_the_distribution_its_missing_plugin_came_from(dists: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "fake.safetensors"
    made = fresh([sys.executable, "-c", SAVE_WITH_FAKE_CELL, str(model)], [dists["fake"]])
    assert made.returncode == 0, made.stderr
    stored = json.loads(fresh([str(SCRIPT), "info", str(model), "--json"], [dists["fake"]]).stdout)["providers"]
    assert stored["cell"] == {"plugin": "fake", "distribution": "audioseq-fake", "version": "1.2.3"}
    assert stored["feature"] == {"plugin": "audioseq.default_plugins.features", "distribution": "audioseq",
                                 "version": audioseq.__version__}
    # In this interpreter the fake distribution is not installed.
    with pytest.raises(UnknownComponentError) as caught:
        audioseq.load(model)
    assert caught.value.provider == stored["cell"]
    assert str(caught.value).endswith(
        "The model was made with it from plugin 'fake' of audioseq-fake 1.2.3: install audioseq-fake.")
    proc = fresh([str(SCRIPT), "info", str(model)], [], AUDIOSEQ_LOAD_PLUGINS="")
    assert proc.returncode == 1
    assert ("of audioseq-fake 1.2.3: install audioseq-fake, or add 'fake' to AUDIOSEQ_LOAD_PLUGINS (now ''), which "
            "limits the plugins loaded.") in proc.stderr


LOAD = "import sys, audioseq; audioseq.load(sys.argv[1])"


def test_a_model_whose_plugin_is_installed_but_broken_says_so(dists: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "fake.safetensors"
    assert fresh([sys.executable, "-c", SAVE_WITH_FAKE_CELL, str(model)], [dists["fake"]]).returncode == 0
    (tmp_path / "later").mkdir()
    broken = fake_distribution(tmp_path / "later", "fake", "fake_broken_mod", BROKEN, "1.2.4")
    proc = fresh([sys.executable, "-c", LOAD, str(model)], [broken])
    assert proc.returncode == 1
    assert ("UnknownComponentError: unknown cell 'fake-cell'" in proc.stderr
            and "from plugin 'fake', which is installed but failed to load: ImportError: this plugin needs libfoo"
            in proc.stderr)


def test_a_model_a_plugin_release_no_longer_builds_names_both_versions(dists: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "fake.safetensors"
    save = SAVE_WITH_FAKE_CELL.replace('cell="fake-cell",', 'cell="fake-cell", cell_params={"nonlinearity": "tanh"},')
    assert fresh([sys.executable, "-c", save, str(model)], [dists["fake"]]).returncode == 0
    (tmp_path / "later").mkdir()
    renamed = FAKE.replace("nonlinearity: Literal", "activation: Literal").replace(
        "nonlinearity: activation", "activation: activation").replace(
        "RNNCell(input_size, hidden_size, nonlinearity)", "RNNCell(input_size, hidden_size, activation)")
    released = fake_distribution(tmp_path / "later", "fake", "fake_plugin_mod", renamed, "2.0")
    proc = fresh([sys.executable, "-c", LOAD, str(model)], [released])
    assert proc.returncode == 1
    assert "ModelFileError" in proc.stderr and "cell 'fake-cell': unknown parameter 'nonlinearity'" in proc.stderr
    assert "(cell 'fake-cell' was made with audioseq-fake 1.2.3, and audioseq-fake 2.0 is installed)" in proc.stderr


def test_a_model_made_with_a_plugin_outside_any_distribution_names_the_plugin(throwaway: str, tmp_path: Path) -> None:
    from audioseq.classifier import Classifier
    from audioseq.model import NetworkConfig
    from audioseq.spec import ModelSpec

    network = NetworkConfig(input_size=2, num_classes=2, cell="throwaway-cell", hidden_size=4, num_layers=1)
    clf = Classifier(ModelSpec(["a", "b"], 8000, network, feature="throwaway-feature"))
    assert clf.spec.providers == {"feature": {"plugin": "throwaway"}, "cell": {"plugin": "throwaway"}}
    clf.save(tmp_path / "m.safetensors")
    assert audioseq.load(tmp_path / "m.safetensors").spec.providers == clf.spec.providers
    plugins.pm.unregister(name=throwaway)
    plugins.refresh()
    try:
        with pytest.raises(UnknownComponentError, match=r"unknown cell 'throwaway-cell'; .* The model was "
                                                        r"made with it from plugin 'throwaway': install that plugin\."):
            audioseq.load(tmp_path / "m.safetensors")
    finally:
        plugins.pm.register(Throwaway(), name=throwaway)
        plugins.refresh()


def test_help_does_not_import_torch() -> None:
    code = (
        "import json, sys\nfrom click.testing import CliRunner\nfrom audioseq.cli import cli\n"
        "outputs = [CliRunner().invoke(cli, args).output for args in (['--help'], ['new-plugin', '--help'])]\n"
        "print(json.dumps({'outputs': outputs, 'torch': sorted(m for m in sys.modules if m.split('.')[0] == 'torch')}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["torch"] == []
    assert "new-plugin" in report["outputs"][0]
    assert "--kind [cell|feature|dataset]" in report["outputs"][1]


# --- the scaffold ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_scaffold_writes_a_package_with_the_entry_point(tmp_path: Path, kind: str) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    name = EXAMPLES[kind]
    package = package_name(name)
    target = scaffold_plugin(name, kind, tmp_path)
    assert target == tmp_path / f"audioseq-{name}"
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == sorted(["README.md", "pyproject.toml", f"{package}/__init__.py", f"tests/test_{package[9:]}.py"])
    project = tomllib.loads((target / "pyproject.toml").read_text())
    assert project["project"]["name"] == f"audioseq-{name}"
    assert project["project"]["dependencies"] == [f"audioseq>={audioseq.__version__}"]
    assert project["project"]["entry-points"]["audioseq"] == {name: package}
    assert project["tool"]["setuptools"]["packages"] == [package]
    assert f"--{'features' if kind == 'feature' else kind} {name}" in (target / "README.md").read_text()
    for path in target.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


@pytest.mark.parametrize("name", ["Bad", "my_cell", "-cell", "cell-", "my--cell", "9lives", "", "zürich"])
def test_scaffold_refuses_a_bad_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ScaffoldError, match="lowercase letters, digits and single hyphens"):
        scaffold_plugin(name, "cell", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_scaffold_refuses_an_existing_folder(tmp_path: Path) -> None:
    target = tmp_path / "audioseq-mine"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="already exists"):
        scaffold_plugin("mine", "cell", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["audioseq-mine"]
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_scaffold_refuses_a_name_already_registered(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="cell 'gru' is already registered by plugin 'audioseq.default_plugins"):
        scaffold_plugin("gru", "cell", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_scaffold_reports_a_folder_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ScaffoldError, match="cannot create .*audioseq-mine"):
        scaffold_plugin("mine", "cell", tmp_path / "file")


def test_new_plugin_command(tmp_path: Path) -> None:
    args = ["new-plugin", "mine", "--kind", "feature", "--dir", str(tmp_path)]
    first = CliRunner().invoke(audioseq_cli, args)
    assert first.exit_code == 0, first.output
    assert (tmp_path / "audioseq-mine" / "audioseq_mine" / "__init__.py").is_file()
    assert "pip install -e '.[test]'" in first.output
    again = CliRunner().invoke(audioseq_cli, args)
    assert again.exit_code == 1 and "already exists" in again.output
    bad = CliRunner().invoke(audioseq_cli, ["new-plugin", "My_Plugin", "--dir", str(tmp_path)])
    assert bad.exit_code == 2 and "Invalid value for NAME" in bad.output


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """The three example plugins scaffolded and pip-installed into a throwaway venv.

    The venv reaches this interpreter's packages (audioseq, torch) through a .pth line, because
    ``venv --system-site-packages`` would expose the base interpreter's packages instead; the
    project's own environment is left unchanged.
    """
    where = tmp_path_factory.mktemp("scaffolded")
    folders = {kind: scaffold_plugin(name, kind, where) for kind, name in EXAMPLES.items()}
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    parent = sysconfig.get_path("purelib")
    (site / "_audioseq_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    python = Path(sysconfig.get_path("scripts", vars={"base": str(venv), "platbase": str(venv)})) / "python"
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         *map(str, folders.values())],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return python, folders


def _in_venv(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOSEQ_") and k != "PYTHONPATH"}
    # Tiny models gain nothing from threads, and on shared cores the threads spin against each other.
    environ["OMP_NUM_THREADS"] = "1"
    command = [str(python), "-c", "from audioseq.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=300)


def test_installed_scaffolds_are_discovered(installed: tuple[Path, dict[str, Path]]) -> None:
    python, _ = installed
    proc = _in_venv(python, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    by_name = {p["name"]: p for p in json.loads(proc.stdout)}
    params = {"cell": ["forget_bias", "activation"], "feature": ["win_ms", "hop_ms", "log_floor"],
              "dataset": ["separator", "group_field", "recursive"]}
    for kind, name in EXAMPLES.items():
        entry = by_name[name]
        assert entry["version"] == "0.1.0" and entry["error"] is None
        [component] = entry["components"]
        assert (component["kind"], component["name"]) == (kind, name)
        assert [p["name"] for p in component["params"]] == params[kind]
        assert all(p["help"] for p in component["params"])


def _named_clips(folder: Path) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    folder.mkdir()
    t = np.arange(2400) / 8000
    for speaker in ("ann", "bob", "cy"):
        for take in range(3):
            sf.write(folder / f"tone_{speaker}_{take}.wav", 0.5 * np.sin(2 * math.pi * 440 * t), 8000)
            sf.write(folder / f"noise_{speaker}_{take}.wav", 0.3 * rng.standard_normal(t.size), 8000)
    return folder


@pytest.mark.parametrize("kind", KINDS)
def test_installed_scaffold_trains_one_epoch(installed: tuple[Path, dict[str, Path]], kind: str, tmp_path: Path) -> None:
    python, _ = installed
    name = EXAMPLES[kind]
    tiny = ["--hidden", "8", "--layers", "1", "--no-bidirectional", "--pooling", "mean", "--epochs", "1",
            "--no-augment", "--batch-size", "8", "--out", str(tmp_path / "model.safetensors")]
    data = ["--dataset", "synthetic", "--dataset-opt", "per_class=3", "--dataset-opt", "max_seconds=0.5"]
    args = {
        "cell": [*data, "--cell", name, "--cell-opt", "forget_bias=2", "--cell-opt", "activation=softsign"],
        "feature": [*data, "--features", name, "--feature-opt", "hop_ms=5"],
        "dataset": ["--dataset", name, "--data", str(_named_clips(tmp_path / "clips"))],
    }[kind]
    proc = _in_venv(python, "train", *args, *tiny)
    assert proc.returncode == 0, proc.stderr
    recipe = json.loads((tmp_path / "model.metrics.json").read_text())["recipe"]
    if kind == "cell":
        assert (recipe["cell"], recipe["cell_params"]) == (name, {"forget_bias": 2.0, "activation": "softsign"})
    if kind == "feature":
        assert (recipe["feature"], recipe["feature_params"]) == (name, {"hop_ms": 5.0})
    assert (tmp_path / "model.safetensors").is_file()


def test_generated_tests_pass(installed: tuple[Path, dict[str, Path]]) -> None:
    python, folders = installed
    proc = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(f / "tests") for f in folders.values())],
        capture_output=True, text=True, timeout=300, cwd=next(iter(folders.values())).parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b\d+ passed\b", proc.stdout) and "skipped" not in proc.stdout


# --- the tutorial ----------------------------------------------------------------------------

TITLED_BLOCK = re.compile(r'^```(\w+) title="([^"]+)"\n(.*?)^```$', re.S | re.M)


def _hookspecs() -> list[Any]:
    return [fn for _, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "audioseq_spec")]


def test_every_hook_is_documented_with_its_signature_and_docstring() -> None:
    text = DOCS.read_text()
    sections = {m.group(1): m.group(2) for m in re.finditer(r"^### (\S+?\(.*?\).*?)$\n(.*?)(?=^#|\Z)", text, re.S | re.M)}
    assert _hookspecs(), "no hookspecs found"
    for fn in _hookspecs():
        heading = f"{fn.__name__}{str(inspect.signature(fn)).replace(chr(39), '')}"
        assert heading in sections, f"docs/plugins.md has no heading '### {heading}'"
        assert inspect.getdoc(fn) in sections[heading], f"the docstring of {fn.__name__} is not under its heading"


def test_tutorial_code_is_what_new_plugin_writes() -> None:
    blocks = TITLED_BLOCK.findall(DOCS.read_text())
    untitled = re.findall(r"^```python\s*$", DOCS.read_text(), re.M)
    assert untitled == [], "every python block in docs/plugins.md must be a generated file, with its title"
    shown = set()
    for _, title, body in blocks:
        folder, relative = title.split("/", 1)
        kind = next(k for k, name in EXAMPLES.items() if folder == f"audioseq-{name}")
        assert body == render(EXAMPLES[kind], kind)[relative], f"{title} in docs/plugins.md differs from new-plugin's"
        shown.add((kind, relative))
    for kind, name in EXAMPLES.items():
        assert (kind, f"{package_name(name)}/__init__.py") in shown
