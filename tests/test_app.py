"""The Streamlit app through ``AppTest``: every page, bad uploads, model switching, teaching.

Uploads and recordings go through AppTest's own ``file_uploader`` and ``audio_input``
support, so the pages run exactly as in a browser session. The ``audioseq app`` launcher is
tested with a stand-in for the Streamlit process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("streamlit", reason="the app needs the 'app' extra: pip install 'audioseq[app]'")
from click.testing import CliRunner  # noqa: E402
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

import audioseq  # noqa: E402
from audioseq.cli import cli as audioseq_cli  # noqa: E402
from audioseq.modelfile import read_tensors, write_tensors  # noqa: E402
from conftest import REPO, registered  # noqa: E402

APP = REPO / "ui" / "app.py"
FOLDER_MODEL = "tiny.safetensors (models folder)"
PLUGIN_DIGITS = "digits-speech-embedding"  # the speech-embedding plugin's model
# Clips of the official FSDD test split (recording index < 5), four digits and speakers, for
# the ready-trained digits models.
BUNDLED_CLIPS = {"3": "3_jackson_0.wav", "6": "6_theo_2.wav", "9": "9_nicolas_1.wav", "4": "4_jackson_2.wav"}
# What the Inside page says of the digit models on speech embeddings (`digits`,
# `digits-speech-embedding`) on a short clip (3_theo_0.wav).
FINER_FRAMES_NOTE = ("This model reads a frame every 80 ms, so over this clip the network unrolls into only 6 "
                     "steps. `digits-lstm` reads one every 10 ms: pick it in the sidebar to watch the "
                     "recurrence over more steps.")
RUN_TIMEOUT = 60  # seconds per script run; a cold start imports torch and draws charts
pytestmark = pytest.mark.usefixtures("one_thread")


# --- models and clips ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DigitModel:
    """A folder for ``--models`` holding a tiny model that tells spoken 0 from 1."""

    folder: Path
    path: Path
    clips: dict[str, Path]  # digit -> a held-out FSDD clip of it, which the model gets right


def train_digit_model(fsdd: Path, out: Path) -> DigitModel:
    """A one-layer LSTM trained on 50 FSDD clips of 0 and 1 (a few seconds on one core)."""
    examples = [
        audioseq.Example(str(p), p.name[0], None, p.stem.split("_")[1])
        for digit in "01" for p in sorted(fsdd.glob(f"{digit}_*.wav"))
        if 5 <= int(p.stem.split("_")[2]) <= 9
    ]
    config = audioseq.TrainConfig(
        cell="lstm", hidden_size=16, num_layers=1, bidirectional=False, pooling="mean", epochs=20,
        patience=20, batch_size=8, lr=1e-2, augment=None, device="cpu", seed=0,
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tiny.safetensors"
    audioseq.train(examples, config, out=path)
    return DigitModel(out, path, {"0": fsdd / "0_jackson_0.wav", "1": fsdd / "1_theo_0.wav"})


@pytest.fixture(scope="module")
def digits(fsdd: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: Any) -> DigitModel:
    return train_digit_model(fsdd, tmp_path_factory.mktemp("models"))


def wav_bytes(wave: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def tone(freq: float, seconds: float = 0.5, rate: int = 8000, seed: int = 0) -> bytes:
    """A tone over faint noise, so no two examples are the same bytes."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return wav_bytes(0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * noise, rate)


def bad_uploads() -> dict[str, bytes]:
    """One upload of each kind the app must refuse by name."""
    clip = tone(440)
    return {
        "garbage.wav": bytes(range(256)) * 8,
        "truncated.wav": clip[: len(clip) // 2],
        "silent.wav": wav_bytes(np.zeros(8000), 8000),
        "too-long.wav": tone(220, seconds=31),
        "notes.txt": b"these are not audio samples\n" * 10,
        "empty.wav": b"",
    }


# --- driving the app -------------------------------------------------------------------------


def start_app(monkeypatch: pytest.MonkeyPatch, models: Path) -> AppTest:
    """The app as ``audioseq app --models <models>`` starts it."""
    monkeypatch.setattr(sys, "argv", [str(APP), "--models", str(models)])
    at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT).run()
    assert not at.exception
    return at


@pytest.fixture()
def teach_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AppTest:
    """The Teach page of an app with an empty models folder: teaching needs no model."""
    (tmp_path / "models").mkdir()
    return on_page(start_app(monkeypatch, tmp_path / "models"), "teach")


def start_on_ready_model(monkeypatch: pytest.MonkeyPatch, models: Path, model: str) -> AppTest:
    """The app with the ready-trained ``model`` picked; skips when it is not installed."""
    at = start_app(monkeypatch, models)
    if model not in at.sidebar.selectbox(key="keep.model").options:
        pytest.skip(f"{model} is not installed")
    at.sidebar.selectbox(key="keep.model").set_value(model).run()
    return at


@pytest.fixture()
def app(monkeypatch: pytest.MonkeyPatch, digits: DigitModel) -> AppTest:
    """The app on the tiny digit model from the models folder (bundled models come first)."""
    at = start_app(monkeypatch, digits.folder)
    at.sidebar.selectbox(key="keep.model").set_value(FOLDER_MODEL).run()
    return at


def on_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, f"expected one {label!r} metric, found {values}"
    return values[0]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def upload(at: AppTest, key: str, files: dict[str, bytes]) -> AppTest:
    at.file_uploader(key=key).set_value([(name, data, "audio/wav") for name, data in files.items()]).run()
    assert not at.exception, at.exception
    return at


def charts_drawn(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


@pytest.fixture()
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """File name -> bytes of every file the app offers with ``st.download_button``."""
    offered: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def keep(self: Any, path_or_data: Any, mimetype: str, kind: Any, filename: str | None = None) -> str:
        if filename is not None and isinstance(path_or_data, bytes):
            offered[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return offered


# --- plugins ---------------------------------------------------------------------------------


class SecondGru:
    @audioseq.hookimpl
    def register_cells(self, register: Any) -> None:
        from audioseq.default_plugins.cells import GRUCell

        register("gru", GRUCell)


def test_the_app_names_a_skipped_plugin_and_says_why_clashing_ones_stop_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from audioseq import plugins

    (tmp_path / "models").mkdir()
    monkeypatch.setattr(plugins, "broken", [plugins.BrokenPlugin("libfoo-cells", "ImportError: needs libfoo")])
    at = start_app(monkeypatch, tmp_path / "models")
    assert [w.value for w in at.sidebar.warning if "libfoo-cells" in w.value] == [
        "Plugin `libfoo-cells` was skipped, so its components are not offered: ImportError: needs libfoo"]
    with registered(SecondGru(), "second-gru"):
        clash = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT).run()
    assert not clash.exception
    [message] = errors(clash)
    assert message.startswith("The installed plugins cannot be loaded together: cell 'gru' is registered twice")
    assert "'second-gru'" in message


# --- Classify --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["digits", "digits-lstm", PLUGIN_DIGITS])
def test_the_ready_digits_models_label_fsdd_clips(
    monkeypatch: pytest.MonkeyPatch, digits: DigitModel, fsdd: Path, model: str
) -> None:
    at = start_on_ready_model(monkeypatch, digits.folder, model)
    origin = "from the speech-embedding plugin" if model == PLUGIN_DIGITS else "bundled with audioseq"
    assert at.sidebar.caption[0].value.startswith(f"Ready-trained, {origin}. ")  # the label is the name alone
    for digit, name in BUNDLED_CLIPS.items():
        upload(at, "classify.upload", {name: (fsdd / name).read_bytes()})
        assert metric(at, "Prediction") == digit, name


def test_classify_labels_an_fsdd_clip_and_shows_what_the_network_did(app: AppTest, digits: DigitModel) -> None:
    for digit, clip in digits.clips.items():
        upload(app, "classify.upload", {clip.name: clip.read_bytes()})
        assert metric(app, "Prediction") == digit
        assert float(metric(app, "Confidence").rstrip("%")) > 50
    assert not errors(app)
    # probabilities, timeline, waveform, frames and the four LSTM gates
    assert charts_drawn(app) == 8
    assert any("forget" in m.value for m in app.markdown)


def test_classify_refuses_bad_uploads_by_name_and_still_answers_the_good_one(
    app: AppTest, digits: DigitModel, downloads: dict[str, bytes]
) -> None:
    good = digits.clips["1"]
    bad = bad_uploads()
    upload(app, "classify.upload", {good.name: good.read_bytes(), **bad})
    messages = errors(app)
    assert len(messages) == len(bad)
    for name, message in zip(bad, messages):
        assert f"`{name}`" in message
    assert "cut off" in messages[1] and "silent" in messages[2] and "31.0 s" in messages[3]
    assert metric(app, "Prediction") == "1"
    table = app.dataframe[0].value
    assert list(table["file"]) == [good.name, *bad]
    assert table["label"].iloc[0] == "1" and table["error"].iloc[1:].notna().all()
    csv = downloads["predictions.csv"].decode()
    assert csv.splitlines()[0].startswith("file,label,confidence,error") and good.name in csv


def test_classify_shows_the_last_clips_again_after_another_page(app: AppTest, digits: DigitModel) -> None:
    upload(app, "classify.upload", {"one.wav": digits.clips["1"].read_bytes()})
    assert metric(app, "Prediction") == "1"
    on_page(app, "teach")
    on_page(app, "classify")
    assert metric(app, "Prediction") == "1"
    assert any(c.value.startswith("Your last clip, kept while you were on another page") for c in app.caption)
    app.file_uploader(key="classify.upload").set_value([]).run()  # taken off the uploader: gone
    assert not [m for m in app.metric if m.label == "Prediction"]


def test_a_recording_is_classified(app: AppTest, digits: DigitModel) -> None:
    app.audio_input(key="classify.record").upload("recording.wav", digits.clips["0"].read_bytes()).run()
    assert metric(app, "Prediction") == "0"
    app.audio_input(key="classify.record").upload("recording.wav", wav_bytes(np.zeros(16000), 16000)).run()
    assert errors(app) == ["`recording.wav`: the clip is silent (its loudest sample is below -60 dBFS)"]


# --- choosing a model ------------------------------------------------------------------------


def test_uploaded_model_is_offered_and_selected_and_the_choice_survives_page_switches(
    app: AppTest, digits: DigitModel
) -> None:
    options = app.sidebar.selectbox(key="keep.model").options
    assert sorted(options) == sorted([*audioseq.bundled_models(), FOLDER_MODEL])
    assert options[-1] == FOLDER_MODEL  # ready-trained models first
    app.sidebar.file_uploader(key="model_upload").set_value(
        ("mine.safetensors", digits.path.read_bytes(), "application/octet-stream")
    ).run()
    assert app.sidebar.selectbox(key="keep.model").value == "mine.safetensors (uploaded)"
    assert app.sidebar.caption[0].value.startswith("Uploaded in this session. ")
    assert "labels: 0, 1" in app.sidebar.caption[0].value
    upload(app, "classify.upload", {"clip.wav": digits.clips["1"].read_bytes()})
    assert metric(app, "Prediction") == "1"
    app.sidebar.selectbox(key="keep.model").set_value(FOLDER_MODEL).run()
    on_page(app, "teach")
    on_page(app, "inside")
    assert app.sidebar.selectbox(key="keep.model").value == FOLDER_MODEL
    assert "mine.safetensors (uploaded)" in app.sidebar.selectbox(key="keep.model").options


def _needs_plugin(model: Path, out: Path) -> bytes:
    tensors, document = read_tensors(model)
    document["network"]["cell"] = "quantum-lstm"
    write_tensors(out, tensors, document)
    return out.read_bytes()


@pytest.mark.parametrize("case", ["garbage", "pickle", "plugin"])
def test_unusable_uploaded_model_gets_an_error_naming_it(
    app: AppTest, digits: DigitModel, tmp_path: Path, case: str
) -> None:
    content = {
        "garbage": b"\x00\x01 not a safetensors file" * 20,
        "pickle": b"\x80\x04\x95" + b"\x00" * 64,
        "plugin": _needs_plugin(digits.path, tmp_path / "needs.safetensors"),
    }[case]
    model_upload = app.sidebar.file_uploader(key="model_upload")
    model_upload.set_value(("broken.safetensors", content, "application/octet-stream")).run()
    assert not app.exception
    (message,) = errors(app)
    assert message.startswith("`broken.safetensors`: cannot be used as a model")
    if case == "plugin":
        assert "it needs a plugin that is not installed here" in message and r"unknown cell 'quantum\-lstm'" in message  # shown as text: Markdown escaped
    else:  # plain words first; what the reader found, in the details
        assert message.endswith("it is not an audioseq model file (.safetensors), or it is damaged")
        assert app.sidebar.expander[0].label == "Details"
    assert app.sidebar.selectbox(key="keep.model").options[-1] == FOLDER_MODEL
    upload(app, "classify.upload", {"clip.wav": digits.clips["0"].read_bytes()})
    assert metric(app, "Prediction") == "0"


def test_labels_from_a_model_file_are_shown_as_text_not_markdown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from conftest import tiny_classifier

    models = tmp_path / "models"
    models.mkdir()
    odd = "![seen](http://example.invalid/tracker.png)"
    tiny_classifier(labels=("seven", odd)).save(models / "odd.safetensors")
    at = start_app(monkeypatch, models)
    at.sidebar.selectbox(key="keep.model").set_value(at.sidebar.selectbox(key="keep.model").options[-1]).run()
    caption = next(c.value for c in at.sidebar.caption if "labels:" in c.value)
    assert caption.endswith(r"labels: seven, \!\[seen\]\(http\://example\.invalid/tracker\.png\)")
    assert any(odd not in i.value and "seven" in i.value for i in at.info)


def test_names_from_an_unusable_model_file_are_shown_as_text_not_markdown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from conftest import tiny_classifier

    from audioseq.modelfile import read_tensors, write_tensors

    models = tmp_path / "models"
    models.mkdir()
    odd = "![seen](http://example.invalid/tracker.png)"
    path = models / "odd.safetensors"
    tiny_classifier().save(path)
    tensors, document = read_tensors(path)
    document["network"]["cell"] = odd  # no plugin gives it: the model cannot be loaded, and the error names it
    write_tensors(path, tensors, document)
    at = start_app(monkeypatch, models)
    at.sidebar.selectbox(key="keep.model").set_value("odd.safetensors (models folder)").run()
    shown = [e.value for e in at.sidebar.error]
    assert shown and all(odd not in text for text in shown)
    assert any(r"\!\[seen\]\(http\://example\.invalid/tracker\.png\)" in text for text in shown)


def test_classify_judges_silence_by_the_chosen_model_s_level(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import dataclasses

    from audioseq.classifier import Classifier
    from audioseq.preprocess import Preprocess
    from conftest import tiny_classifier

    models = tmp_path / "models"
    models.mkdir()
    tiny = tiny_classifier()
    spec = dataclasses.replace(tiny.spec, preprocess=Preprocess(silence_dbfs=None))  # trained to take any level
    Classifier(spec, tiny.model).save(models / "any-level.safetensors")
    t = np.arange(4000) / 8000
    whisper = wav_bytes(10 ** (-70 / 20) * np.sin(2 * np.pi * 440 * t), 8000)  # peak -70 dBFS
    stereo = io.BytesIO()  # opposite offsets in the two channels: silence once mixed down, as the model hears it
    sf.write(stereo, np.stack([np.full(4000, 0.3), np.full(4000, -0.3)], axis=1).astype(np.float32), 8000,
             format="WAV", subtype="FLOAT")
    at = start_app(monkeypatch, models)
    upload(at, "classify.upload", {"whisper.wav": whisper, "offsets.wav": stereo.getvalue()})
    assert errors(at) == [f"`{name}`: the clip is silent (its loudest sample is below -60 dBFS)"
                          for name in ("whisper.wav", "offsets.wav")]  # the ready model refuses both
    at.sidebar.selectbox(key="keep.model").set_value(at.sidebar.selectbox(key="keep.model").options[-1]).run()
    upload(at, "classify.upload", {"whisper.wav": whisper})
    assert not errors(at) and metric(at, "Prediction") in tiny.labels


def test_charts_name_every_class_and_keep_the_legend_beside_the_plot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "ui"))
    import charts

    ten = {str(d): 0.1 for d in range(10)}
    bars = charts.probabilities(ten, "3").to_dict()
    assert bars["encoding"]["y"]["axis"]["labelOverlap"] is False  # no class label thinned out
    assert bars["height"] >= 24 * len(ten)
    # Each chart says what it shows to a screen reader, which otherwise announces "Vega visualization".
    assert charts.probabilities({"a": 0.7, "b": 0.3}, "a").to_dict()["description"] == (
        "Probability of each class; the highest: a 70%, b 30%")
    assert charts.confusion([[1, 0], [0, 1]], ["a", "b"]).to_dict()["description"].startswith("Confusion matrix")
    for count, columns in ((4, 1), (8, 1), (10, 2), (20, 3)):  # at most 8 entries a column
        lines = charts.over_time({str(d): np.zeros(5) for d in range(count)}, np.arange(5), "p").to_dict()
        assert lines["encoding"]["color"]["legend"]["columns"] == columns, count


def test_a_waveform_of_a_few_samples_still_shows_and_one_line_needs_no_legend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "ui"))
    import charts

    rows = charts.waveform(np.full(400, 0.3, dtype=np.float32), 8000).to_dict()
    [data] = rows["datasets"].values()
    assert all(r["low"] <= 0.0 < 0.3 <= r["high"] for r in data)  # each slice has height, however few samples
    assert charts.over_time({"weight": np.ones(4)}, np.arange(4), "w").to_dict()["encoding"]["color"]["legend"] is None


def test_gate_charts_show_the_same_units_on_a_scale_that_fits_their_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "ui"))
    import charts

    rng = np.random.default_rng(0)
    steady, lively = np.full((20, 40), 0.5), rng.uniform(0, 1, (20, 40))
    lively[:, :30] = 0.5  # only units 30..39 move in this gate
    units = charts.gate_units({"a": steady, "b": lively}, limit=8)
    assert units.tolist() == sorted(units.tolist()) and set(units) <= set(range(30, 40)) and len(units) == 8
    times = np.arange(20) * 0.01
    scale = lambda values: charts.gate("g", values, times, units).to_dict()["encoding"]["color"]["scale"]  # noqa: E731
    assert scale(lively)["domain"] == [0.0, 1.0]  # a sigmoid gate
    assert scale(lively - 0.5)["domain"] == [-1.0, 1.0]  # a tanh candidate
    assert scale(lively * 3.5)["domain"] == [0.0, pytest.approx(float((lively * 3.5)[:, units].max()))]  # ReLU
    rows = charts.gate("g", lively, times, units).to_dict()
    assert rows["encoding"]["y"]["axis"]["labels"] is False  # positions are not unit numbers: the tooltip names them
    [data] = [d for d in rows["datasets"].values()]
    assert sorted({r["name"] for r in data}) == units.tolist()


# --- Inside the RNN --------------------------------------------------------------------------


def test_inside_unrolls_the_clip_shows_gates_and_compares_gradients(app: AppTest, digits: DigitModel) -> None:
    on_page(app, "inside")
    assert charts_drawn(app) == 1  # the vanishing-gradient comparison needs no clip
    upload(app, "inside.upload", {"garbage.wav": bad_uploads()["garbage.wav"]})
    assert errors(app)[0].startswith("`garbage.wav`: not an audio file")
    upload(app, "inside.upload", {digits.clips["1"].name: digits.clips["1"].read_bytes()})
    assert metric(app, "Prediction") == "1"
    assert not errors(app)
    headers = [h.value for h in app.header]
    assert headers == ["Unrolled in time", "Gates", "The vanishing gradient"]
    # waveform, x_t, ‖h‖, ‖c‖, probabilities, timeline, four gates, untrained cells' gradients, the clip's
    assert charts_drawn(app) == 12
    texts = " ".join(m.value for m in app.markdown)
    assert "$f_t$: how much of the cell state" in texts  # the cell's own account of its gates
    assert "**Your clip through this model**" in texts
    assert not any("To watch an LSTM's" in c.value for c in app.caption)  # this one is an LSTM
    app.slider(key="inside.steps").set_value(40).run()
    assert not app.exception


def test_inside_names_a_gateless_cell_with_its_nonlinearity(app: AppTest, digits: DigitModel, tmp_path: Path) -> None:
    from audioseq.classifier import Classifier
    from audioseq.model import NetworkConfig
    from audioseq.spec import ModelSpec

    trained = audioseq.load(digits.path)
    network = NetworkConfig(input_size=trained.spec.network.input_size, num_classes=2, cell="rnn",
                            cell_params={"nonlinearity": "relu"}, hidden_size=8, num_layers=1, pooling="last",
                            bidirectional=False)
    spec = ModelSpec(trained.labels, trained.sample_rate, network, trained.spec.feature, trained.spec.feature_params)
    undecided = Classifier(spec)
    with torch.no_grad():  # every answer 50/50
        undecided.model.head.weight.zero_()
        undecided.model.head.bias.zero_()
    undecided.save(tmp_path / "relu.safetensors")
    app.sidebar.file_uploader(key="model_upload").set_value(
        ("relu.safetensors", (tmp_path / "relu.safetensors").read_bytes(), "application/octet-stream")).run()
    upload(on_page(app, "inside"), "inside.upload", {"clip.wav": digits.clips["1"].read_bytes()})
    assert not errors(app) and not app.exception
    assert metric(app, "Confidence") == "50%"
    assert [w.value for w in app.warning][0].startswith("The model is unsure (50%). It always answers with one")
    [note] = [i.value for i in app.info if "has no gates" in i.value]
    assert note.startswith("This model's cell, `rnn` (nonlinearity relu), has no gates")
    # Where to find an LSTM's gates: the Teach page trains one unless told otherwise.
    assert audioseq.TrainConfig.cell == "lstm"
    [where] = [c.value for c in app.caption if c.value.startswith("To watch an LSTM's")]
    if "digits-lstm" in audioseq.bundled_models():
        assert "pick `digits-lstm`, a ready-trained LSTM, in the sidebar, or train one on the Teach page" in where
    assert "(an LSTM unless you choose another cell" in where
    # The clip's gradient, explained for its pooling.
    assert "With `last` pooling and one direction every frame reaches" in " ".join(m.value for m in app.markdown)


@pytest.mark.parametrize("model", ["digits", "digits-lstm", PLUGIN_DIGITS])
def test_inside_points_to_finer_frames_when_a_clip_unrolls_into_few_steps(
    monkeypatch: pytest.MonkeyPatch, digits: DigitModel, fsdd: Path, model: str
) -> None:
    at = start_on_ready_model(monkeypatch, digits.folder, model)
    upload(on_page(at, "inside"), "inside.upload", {"3_theo_0.wav": (fsdd / "3_theo_0.wav").read_bytes()})
    assert metric(at, "Prediction") == "3"
    notes = [i.value for i in at.info if "unrolls into" in i.value]
    padded = any(c.value.startswith("This model's feature pads the clip with silence") for c in at.caption)
    if model != "digits-lstm":  # speech embeddings: 0.77 s windows every 80 ms, 6 steps over this short clip
        assert notes == [FINER_FRAMES_NOTE] and padded
    else:  # MFCCs, 10 ms frames: 21 steps, all within the clip
        assert notes == [] and not padded


def test_the_charts_of_a_clip_share_one_time_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "ui"))
    import charts

    inside = charts.time_span(np.array([0.016, 0.026, 0.036]), 400, 8000)  # frames within a 0.05 s clip
    assert inside == (0.0, 0.05)
    padded = charts.time_span(np.array([-0.15, -0.07, 0.01, 0.09]), 800, 8000)  # centred in padding
    assert padded == (pytest.approx(-0.19), pytest.approx(0.13))
    for chart in (charts.waveform(np.ones(800), 8000, padded), charts.over_time({"p": np.ones(4)}, np.arange(4), "p",
                                                                                span=padded)):
        assert chart.to_dict()["encoding"]["x"]["scale"]["domain"] == list(padded)


def test_inside_passes_over_a_ready_model_that_cannot_be_loaded(
    monkeypatch: pytest.MonkeyPatch, digits: DigitModel, fsdd: Path, tmp_path: Path
) -> None:
    scrambled = tmp_path / "scrambled.safetensors"
    scrambled.write_bytes(b"not a model file " * 20)

    class ScrambledModelPlugin:
        @audioseq.hookimpl
        def register_models(self, register: Callable[..., None]) -> None:
            register("scrambled", str(scrambled))

    with registered(ScrambledModelPlugin(), "scrambled-model"):
        at = start_on_ready_model(monkeypatch, digits.folder, PLUGIN_DIGITS)
        upload(on_page(at, "inside"), "inside.upload", {"3_theo_0.wav": (fsdd / "3_theo_0.wav").read_bytes()})
        assert "scrambled" in at.sidebar.selectbox(key="keep.model").options
        assert metric(at, "Prediction") == "3"
        assert [i.value for i in at.info if "unrolls into" in i.value] == [FINER_FRAMES_NOTE]


# --- Teach -----------------------------------------------------------------------------------


def _collect(at: AppTest, examples: dict[str, list[bytes]]) -> None:
    for i, (name, clips) in enumerate(examples.items()):
        at.text_input(key=f"keep.teach.name.{i}").set_value(name)
        upload(at, f"teach.{i}.0.upload", {f"{name}-{n}.wav": data for n, data in enumerate(clips)})


def _small_network(at: AppTest) -> None:
    at.number_input(key="keep.teach.hidden").set_value(16)
    at.number_input(key="keep.teach.epochs").set_value(12)
    at.checkbox(key="keep.teach.augment").uncheck()
    at.run()


def test_teach_trains_on_tones_and_the_downloaded_model_loads(
    teach_app: AppTest, downloads: dict[str, bytes], tmp_path: Path, cli: Callable[..., Any]
) -> None:
    app = teach_app
    assert app.button(key="teach.train").disabled
    _collect(app, {"low": [tone(300, seed=s) for s in range(5)], "high": [tone(2000, seed=s) for s in range(5)]})
    assert [m.value for m in app.markdown if m.value.startswith("**5** examples")] == ["**5** examples"] * 2
    _small_network(app)
    app.selectbox(key="keep.teach.feature").set_value("logmel").run()  # tones: a spectrogram tells them apart
    app.text_input(key="keep.teach.feature.logmel.f_max").set_value("not a number").run()
    app.button(key="teach.train").click().run(timeout=120)
    assert "f_max" in errors(app)[0] and "Training failed" in errors(app)[0]
    app.text_input(key="keep.teach.feature.logmel.f_max").set_value("").run()
    app.button(key="teach.train").click().run(timeout=120)
    assert not app.exception and not errors(app)
    assert "3 · How well it learned" in [s.value for s in app.subheader]
    assert not [c for c in app.caption if "Stay on this page" in c.value]  # said while it trains, not after
    assert charts_drawn(app) == 2  # loss and accuracy per epoch, the confusion matrix

    model = tmp_path / "taught.safetensors"
    model.write_bytes(downloads["taught.safetensors"])
    taught = audioseq.load(model)
    assert taught.labels == ["low", "high"] and taught.spec.network.cell == audioseq.TrainConfig.cell
    clip = tmp_path / "high.wav"
    clip.write_bytes(tone(2000, seed=99))
    assert taught.predict([str(clip)])[0].label == "high"
    result = cli("predict", model, clip, "--format", "csv")
    assert result.returncode == 0 and ",high," in result.stdout

    app.audio_input(key="teach.try.record").upload("recording.wav", tone(300, seed=42)).run()
    assert metric(app, "Prediction") == "low"
    on_page(app, "classify")
    assert app.sidebar.selectbox(key="keep.model").options[-1] == "taught on the Teach page"


def test_teach_fine_tunes_the_chosen_model_on_some_of_its_labels(
    teach_app: AppTest, downloads: dict[str, bytes], tmp_path: Path
) -> None:
    app = teach_app
    digits = audioseq.load("digits")
    app.sidebar.selectbox(key="keep.model").set_value("digits").run()
    app.radio(key="keep.teach.start").set_value("the chosen model, fine-tuned on these examples").run()
    assert not app.exception
    assert not [w for w in app.selectbox if w.key == "keep.teach.cell"]  # the chosen model decides the network
    _collect(app, {"three": [tone(300, seed=s) for s in range(4)], "8": [tone(2000, seed=s) for s in range(4)]})
    assert app.button(key="teach.train").disabled
    assert any("“three” is not a word the chosen model knows: to fine-tune it, name each class after one of its "
               "labels (0, 1, 2" in i.value for i in app.info)
    app.text_input(key="keep.teach.name.0").set_value("3").run()
    app.number_input(key="keep.teach.tune_epochs").set_value(5).run()
    app.button(key="teach.train").click().run(timeout=120)
    assert not app.exception and not errors(app)
    model = tmp_path / "tuned.safetensors"
    model.write_bytes(downloads["taught.safetensors"])
    tuned = audioseq.load(model)
    assert tuned.labels == digits.labels and tuned.spec.network == digits.spec.network
    assert tuned.metrics["init"] == digits.path and tuned.metrics["recipe"]["lr"] == 1e-3
    changed = [k for k, v in digits.model.state_dict().items() if not torch.equal(v, tuned.model.state_dict()[k])]
    assert changed and "norm.mean" not in changed  # weights moved; the normalisation is the model's
    [scored] = [c.value for c in app.caption if c.value.startswith("Accuracy ")]
    assert re.fullmatch(r"Accuracy \d+% on \d+ examples the network did not train on; the chosen model scored "
                        r"\d+% on them before fine-tuning\.", scored)
    # The confusion matrix shows the labels taught (or answered), not the model's ten.
    from streamlit import dataframe_util

    [shown] = [set(dataframe_util.convert_arrow_bytes_to_pandas_df(data.data.data)["true"])
               for chart in app.get("vega_lite_chart") if '"predicted"' in chart.proto.spec
               for data in chart.proto.datasets]
    assert {"3", "8"} <= shown and len(shown) < len(digits.labels)


def test_teach_refuses_bad_examples_by_name_and_counts_the_good_ones(teach_app: AppTest) -> None:
    app = teach_app
    bad = bad_uploads()
    upload(app, "teach.0.0.upload", {"good.wav": tone(440), **bad})
    assert [e.split(":")[0] for e in errors(app)] == [f"`{name}`" for name in bad]
    assert "**1** example — at least 3 are needed" in [m.value for m in app.markdown]
    app.button(key="teach.clear.0").click().run()
    assert "**0** examples — at least 3 are needed" in [m.value for m in app.markdown]
    app.button(key="teach.add").click().run()
    assert len(app.text_input) >= 3 and app.text_input(key="keep.teach.name.2").value == "Class 3"


def test_teach_lists_a_class_s_examples_and_removes_one(teach_app: AppTest) -> None:
    app = teach_app
    upload(app, "teach.0.0.upload", {f"{n}.wav": tone(440, seed=n) for n in range(3)})
    assert "**3** examples" in [m.value for m in app.markdown]
    app.button(key="teach.drop.0.1").click().run()
    app.run()  # the uploader still lists 1.wav: it must not come back
    assert "**2** examples — at least 3 are needed" in [m.value for m in app.markdown]
    listed = [m.value for m in app.expander[0].markdown]
    assert listed == ["0.wav", "2.wav"]


def test_teach_keeps_a_clip_out_of_a_second_class(teach_app: AppTest) -> None:
    app = teach_app
    same = tone(440, seed=7)
    upload(app, "teach.0.0.upload", {"a.wav": same, "b.wav": tone(440, seed=8)})
    upload(app, "teach.1.0.upload", {"copy.wav": same, "c.wav": tone(900, seed=9)})
    [warning] = [w.value for w in app.warning]
    assert warning.startswith("`copy.wav`: is already an example of another class")
    counts = [m.value for m in app.markdown if m.value.startswith("**")]
    assert counts[:2] == ["**2** examples — at least 3 are needed", "**1** example — at least 3 are needed"]


class ToyCell:
    """A cell from a plugin, declaring one parameter of every kind the app draws.

    Args:
        leak: a float. steps: an int. gated: a flag. mode: a choice.
        note: free text. limit: an optional number. sizes: a list.
    """

    def __init__(self, input_size: int, hidden_size: int, leak: float = 0.5, steps: int = 3,
                 gated: bool = True, mode: Literal["soft", "hard"] = "hard", note: str = "hi",
                 limit: float | None = None, sizes: tuple[int, ...] = (1, 2)) -> None:
        raise NotImplementedError("only its signature is read here")


class ToyPlugin:
    @audioseq.hookimpl
    def register_cells(self, register: Callable[..., None]) -> None:
        register("toy", ToyCell)


@pytest.fixture()
def toy_plugin() -> Iterator[ToyPlugin]:
    plugin = ToyPlugin()
    with registered(plugin, "toy-plugin"):
        yield plugin


def test_teach_draws_widgets_from_typed_parameters_of_every_cell_and_feature_plugins_included(
    teach_app: AppTest, toy_plugin: Any
) -> None:
    app = teach_app
    widget_of = {"int": "number_input", "float": "number_input", "bool": "checkbox", "choice": "selectbox"}
    for kind in ("cell", "feature"):
        names = audioseq.list_cells() if kind == "cell" else audioseq.list_features()
        for name in names:
            app.selectbox(key=f"keep.teach.{kind}").set_value(name).run()
            assert not app.exception
            doc = audioseq.plugins.get_component(kind, name).doc
            assert doc and doc in [c.value for c in app.caption]  # what it is, in its own words
            for param in audioseq.component_params(kind, name):
                widget = widget_of.get(param["type"], "text_input")
                keys = [w.key for w in getattr(app, widget)]
                assert f"keep.teach.{kind}.{name}.{param['name']}" in keys, (kind, name, param)
    app.selectbox(key="keep.teach.cell").set_value("toy").run()
    assert app.selectbox(key="keep.teach.cell.toy.mode").options == ["soft", "hard"]
    assert app.checkbox(key="keep.teach.cell.toy.gated").value is True
    assert app.number_input(key="keep.teach.cell.toy.steps").value == 3
    assert app.text_input(key="keep.teach.cell.toy.limit").value == ""
    assert app.text_input(key="keep.teach.cell.toy.sizes").value == "1, 2"


class StandInEmbeddingPlugin:
    """Stands in for the speech-embedding plugin where it is not installed: its feature and model names."""

    @audioseq.hookimpl
    def register_features(self, register: Callable[..., None]) -> None:
        from audioseq.default_plugins.features import LogMel

        register("speech-embedding", LogMel)

    @audioseq.hookimpl
    def register_models(self, register: Callable[..., None]) -> None:
        from audioseq import plugins

        register("digits-speech-embedding", plugins.get_component("model", "digits").path)


@contextlib.contextmanager
def speech_embedding_toggled() -> Iterator[bool]:
    """The speech-embedding plugin taken out when it is installed, else a stand-in put in.

    Yields whether the plugin was installed; puts everything back afterwards."""
    from audioseq import plugins

    installed = plugins.pm.get_plugin("speech-embedding")
    if installed:
        plugins.pm.unregister(installed)
    else:
        plugins.pm.register(StandInEmbeddingPlugin(), name="speech-embedding")
    plugins.refresh()
    try:
        yield bool(installed)
    finally:
        if installed:
            plugins.pm.register(installed, name="speech-embedding")
        else:
            plugins.pm.unregister(name="speech-embedding")
        plugins.refresh()


def test_teach_starts_on_the_speech_embedding_when_it_is_installed_else_on_logmel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def first_feature(folder: str) -> str:
        (tmp_path / folder).mkdir()
        return on_page(start_app(monkeypatch, tmp_path / folder), "teach").selectbox(key="keep.teach.feature").value

    installed = "speech-embedding" in audioseq.list_features()
    assert first_feature("as-installed") == ("speech-embedding" if installed else "logmel")
    with speech_embedding_toggled():
        assert first_feature("changed") == ("logmel" if installed else "speech-embedding")
    assert ("speech-embedding" in audioseq.list_features()) == installed


def test_the_app_starts_on_the_speech_embedding_digits_when_installed_else_on_digits(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def first_model(folder: str) -> str:
        (tmp_path / folder).mkdir()
        return start_app(monkeypatch, tmp_path / folder).sidebar.selectbox(key="keep.model").value

    shipped = "digits-speech-embedding" in audioseq.bundled_models()
    assert first_model("as-installed") == (PLUGIN_DIGITS if shipped else "digits")
    with speech_embedding_toggled() as installed:
        assert first_model("changed") == ("digits" if installed else PLUGIN_DIGITS)
        assert "digits" in start_app(monkeypatch, tmp_path / "changed").sidebar.selectbox(key="keep.model").options
    assert ("digits-speech-embedding" in audioseq.bundled_models()) == shipped


# --- the launcher and its settings -----------------------------------------------------------


class FakeServer:
    """Stands in for the Streamlit process: records how it was started."""

    started: list[tuple[list[str], Path]] = []

    def __init__(self, command: list[str], cwd: Path) -> None:
        FakeServer.started.append((command, Path(cwd)))

    def wait(self) -> int:
        return 0

    def terminate(self) -> None:
        pass


def test_app_command_runs_streamlit_from_the_repository_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import audioseq.app_command as app_command

    FakeServer.started.clear()
    monkeypatch.setattr(app_command.subprocess, "Popen", FakeServer)
    monkeypatch.setattr(app_command.signal, "signal", lambda *args: None)
    result = CliRunner().invoke(audioseq_cli, ["app", "--port", "8999", "--models", str(tmp_path)])
    assert result.exit_code == 0, result.output
    ((command, cwd),) = FakeServer.started
    assert command[1:4] == ["-m", "streamlit", "run"] and Path(command[4]) == APP
    # This machine only, unless asked: other machines could train models here.
    assert command[5:] == ["--server.port", "8999", "--server.address", "localhost", "--server.headless", "true",
                           "--", "--models", str(tmp_path)]
    assert (cwd / ".streamlit" / "config.toml").is_file()
    FakeServer.started.clear()
    assert CliRunner().invoke(audioseq_cli, ["app", "--address", "0.0.0.0"]).exit_code == 0
    ((command, _),) = FakeServer.started
    assert command[command.index("--server.address") + 1] == "0.0.0.0"


def test_app_command_explains_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import audioseq.app_command as app_command

    real_find_spec = app_command.importlib.util.find_spec
    monkeypatch.setattr(app_command.importlib.util, "find_spec",
                        lambda name, *a: None if name == "streamlit" else real_find_spec(name, *a))
    result = CliRunner().invoke(audioseq_cli, ["app"])
    assert result.exit_code == 1 and "pip install 'audioseq[app]'" in result.output
    monkeypatch.undo()
    monkeypatch.setattr(audioseq, "__file__", str(tmp_path / "site-packages" / "audioseq" / "__init__.py"))
    result = CliRunner().invoke(audioseq_cli, ["app"])
    assert result.exit_code == 1 and "the app is not installed" in result.output


def test_streamlit_settings_limit_uploads_and_hide_error_details() -> None:
    tomllib = pytest.importorskip("tomllib")
    sys.path.insert(0, str(APP.parent))
    try:
        import clips
    finally:
        sys.path.remove(str(APP.parent))
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == clips.MAX_BYTES
    assert config["server"]["enableXsrfProtection"] is True
    assert config["client"]["showErrorDetails"] == "none"
