"""Teach: name a few classes, record examples of each, and train a recurrent network on them."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pandas as pd
import streamlit as st

import audioseq
from audioseq.dataset import stratified_split
from audioseq.training import FINE_TUNE_LR

import charts
import clips
import views
from model_choice import TAUGHT, TAUGHT_LABEL, describe, pick_model, plain
from param_widgets import component_widgets
from session import KEEP, default

MIN_EXAMPLES = 3  # per class: at least one is held out to measure the model on
MAX_CLASSES = 8
# The first of these that is installed is the default: a representation learned from many speakers
# recognises words taught in one voice in others far better (benchmarks/fsdd_teach.py).
PREFERRED_FEATURES = ("speech-embedding", "logmel")
_CLASSES = "teach.classes"  # list of {"id", "generation", "examples": [(name, bytes)], "seen": {sha256}}
_RESULT = "teach.result"
_NEW, _TUNE = "a new network", "the chosen model, fine-tuned on these examples"


def _classes() -> list[dict[str, Any]]:
    if _CLASSES not in st.session_state:
        st.session_state[_CLASSES] = [_new_class(0), _new_class(1)]
    return st.session_state[_CLASSES]


def _new_class(ident: int) -> dict[str, Any]:
    return {"id": ident, "generation": 0, "examples": [], "seen": set()}


def _add_class() -> None:
    classes = _classes()
    classes.append(_new_class(max(c["id"] for c in classes) + 1))


def _clear(entry: dict[str, Any]) -> None:
    # A new generation gives the recorder and uploader new keys, so they come back empty.
    entry.update(generation=entry["generation"] + 1, examples=[], seen=set())


def _drop(entry: dict[str, Any], index: int) -> None:
    # Its digest stays in "seen": while the uploader still lists the file, it is not added back.
    del entry["examples"][index]


def _remove(entry: dict[str, Any]) -> None:
    st.session_state[_CLASSES] = [c for c in _classes() if c is not entry]


def _class_card(entry: dict[str, Any], number: int, removable: bool) -> str:
    """Name and examples of one class; new recordings and uploads are checked, then added."""
    name_key = f"{KEEP}teach.name.{entry['id']}"
    default(name_key, f"Class {number}")
    with st.container(border=True):
        name = st.text_input(f"Name of class {number}", key=name_key).strip()
        uploads = views.clip_intake(f"teach.{entry['id']}.{entry['generation']}", multiple=True,
                                    what=f"for class {number}")
        with clips.workspace() as folder:
            for i, (clip_name, data) in enumerate(uploads):
                digest = hashlib.sha256(data).hexdigest()
                if digest in entry["seen"]:  # the widgets keep showing what was already added
                    continue
                if any(digest in other["seen"] for other in _classes() if other is not entry):
                    st.warning(clips.named(clip_name, "is already an example of another class; a clip "
                                                      "cannot teach two classes, so it is left out here"))
                    entry["seen"].add(digest)  # say it once
                    continue
                clip = clips.check_clip(clip_name, data, folder / f"{i}{clips.suffix_of(clip_name)}")
                if not clip.ok:
                    st.error(clips.named(clip_name, clip.error or ""))
                    continue
                entry["seen"].add(digest)
                entry["examples"].append((clip_name, data))
        count = len(entry["examples"])
        if count:
            with st.expander(f"The examples of class {number}"):
                for i, (clip_name, _) in enumerate(entry["examples"]):
                    row_name, row_button = st.columns([4, 1])
                    row_name.write(clip_name)
                    row_button.button("Remove", key=f"teach.drop.{entry['id']}.{i}", on_click=_drop, args=(entry, i),
                                      help=f"Remove {clip_name} from class {number}")
        left, middle, right = st.columns([2, 1, 1])
        left.markdown(f"**{count}** example{'' if count == 1 else 's'}"
                      + ("" if count >= MIN_EXAMPLES else f" — at least {MIN_EXAMPLES} are needed"))
        middle.button("Clear examples", key=f"teach.clear.{entry['id']}", on_click=_clear, args=(entry,),
                      disabled=not count, help=f"Forget the examples of class {number}")
        if removable:
            right.button("Remove class", key=f"teach.remove.{entry['id']}", on_click=_remove, args=(entry,),
                         help=f"Remove class {number} and its examples")
    return name


def _problems(classes: list[dict[str, Any]], names: list[str], base: audioseq.Classifier | None) -> list[str]:
    problems = []
    unknown = [n for n in names if n and base is not None and n not in base.labels]
    if unknown and base is not None:
        words = " and ".join(f"“{n}”" for n in unknown)
        problems.append(f"{words} {'is not a word' if len(unknown) == 1 else 'are not words'} the chosen model "
                        f"knows: to fine-tune it, name each class after one of its labels ({', '.join(map(plain, base.labels))})")
    if any(not n for n in names):
        problems.append("every class needs a name")
    if len(set(names)) < len(names):
        problems.append("class names must differ")
    short = [n or "unnamed" for c, n in zip(classes, names) if len(c["examples"]) < MIN_EXAMPLES]
    if short:
        problems.append(f"{', '.join(short)}: at least {MIN_EXAMPLES} examples each")
    return problems


def _settings() -> audioseq.TrainConfig:
    """The network and training settings; cell and feature parameters come from audioseq."""
    cells, features = audioseq.list_cells(), audioseq.list_features()
    left, right = st.columns(2)
    with left:
        preferred = audioseq.TrainConfig.cell  # the engine's default cell
        default(f"{KEEP}teach.cell", preferred if preferred in cells else cells[0], cells)
        cell = st.selectbox("Recurrent cell", cells, key=f"{KEEP}teach.cell",
                            help="rnn is the plain recurrent neuron; lstm and gru add gates that decide what the "
                                 "state keeps; the others come from plugins. Each is described below when chosen.")
        cell_params = component_widgets("cell", cell, "teach")
    with right:
        default(f"{KEEP}teach.feature", next((f for f in PREFERRED_FEATURES if f in features), features[0]), features)
        feature = st.selectbox("Features", features, key=f"{KEEP}teach.feature",
                               help="What the network reads at each time step. speech-embedding (a plugin) was "
                                    "learned from many speakers: words taught in one voice are then recognised "
                                    "in other voices far more often than from spectrogram features.")
        feature_params = component_widgets("feature", feature, "teach")
    with st.expander("Size and training"):
        first, second, third = st.columns(3)
        for key, value in (("hidden", 32), ("layers", 1), ("epochs", 30), ("bidirectional", False),
                           ("augment", True), ("pooling", "attention")):
            default(f"{KEEP}teach.{key}", value)
        hidden = first.number_input("Hidden units", 2, 256, step=1, key=f"{KEEP}teach.hidden")
        layers = first.number_input("Layers", 1, 4, step=1, key=f"{KEEP}teach.layers")
        epochs = second.number_input("Most epochs", 1, 300, step=1, key=f"{KEEP}teach.epochs",
                                     help="Training stops sooner when validation stops improving.")
        pooling = second.selectbox("Pooling", ["attention", "mean", "last"], key=f"{KEEP}teach.pooling",
                                   help="How the per-frame states become one answer; last is the classic many-to-one.")
        bidirectional = third.checkbox("Bidirectional", key=f"{KEEP}teach.bidirectional")
        augment = third.checkbox("Augment (noise, gain, speed)", key=f"{KEEP}teach.augment")
    config = audioseq.TrainConfig(
        feature=feature, feature_params=feature_params, cell=cell, cell_params=cell_params,
        hidden_size=int(hidden), num_layers=int(layers), bidirectional=bidirectional, pooling=pooling,
        epochs=int(epochs), max_seconds=clips.MAX_SECONDS,
    )
    if not augment:
        config.augment = None
    return config


def _history_frame(history: list[dict[str, Any]]) -> pd.DataFrame:
    columns = {"train_loss": "training loss", "valid_loss": "validation loss", "valid_accuracy": "validation accuracy"}
    return pd.DataFrame(history).set_index("epoch")[list(columns)].rename(columns=columns)


def _fine_tune_settings(base: audioseq.Classifier) -> audioseq.TrainConfig:
    """Only how long to train: the chosen model decides the network, features and labels."""
    st.caption(f"Starting from {describe(base)}. Its network and features are kept; training "
               f"adjusts its weights to your examples (learning rate {FINE_TUNE_LR:g}).")
    default(f"{KEEP}teach.tune_epochs", 30)
    epochs = st.number_input("Most epochs", 1, 300, step=1, key=f"{KEEP}teach.tune_epochs")
    return audioseq.TrainConfig(epochs=int(epochs), lr=FINE_TUNE_LR, max_seconds=clips.MAX_SECONDS)


def _train(
    classes: list[dict[str, Any]], names: list[str], config: audioseq.TrainConfig,
    base: audioseq.Classifier | None = None,
) -> None:
    """Train in this session with a live chart (from ``base``'s weights when given); keep the
    model, its file and its metrics."""
    st.session_state.pop(_RESULT, None)  # the last run's results must not stand for this one's
    note = st.empty()
    note.caption("Stay on this page until training ends: leaving it stops the training.")
    progress = st.progress(0.0, text="Reading the examples…")
    live = st.empty()
    history: list[dict[str, Any]] = []

    def on_epoch(row: dict[str, Any]) -> None:
        history.append(row)
        progress.progress(min(1.0, row["epoch"] / config.epochs),
                          text=f"Epoch {row['epoch']} of at most {config.epochs} · "
                               f"validation accuracy {row['valid_accuracy']:.0%}")
        live.line_chart(_history_frame(history))

    with clips.workspace() as folder:
        examples = []
        for entry, name in zip(classes, names):
            for i, (clip_name, data) in enumerate(entry["examples"]):
                path = folder / f"{entry['id']}-{i}{clips.suffix_of(clip_name)}"
                path.write_bytes(data)
                examples.append(audioseq.Example(str(path), name))
        # A handful of examples per class: small batches still give a few optimiser steps per epoch.
        config.batch_size = min(16, max(4, len(examples) // 4))
        before = None
        try:
            if base is None:
                result = audioseq.train(examples, config, callback=on_epoch, labels=names)
            else:
                # The held-out examples are drawn here, as training would, so that the chosen model can be
                # scored on them as it was: what fine-tuning gained is then plain.
                kept, held = stratified_split(examples, config.valid_fraction, config.seed)
                examples = [*(dataclasses.replace(ex, split="train") for ex in kept),
                            *(dataclasses.replace(ex, split="valid") for ex in held)]
                before = audioseq.evaluate(base, held)["accuracy"]
                result = audioseq.train(examples, config, callback=on_epoch, init=base)
        except (audioseq.AudioseqError, ValueError) as exc:
            progress.empty()
            note.empty()
            st.error(f"Training failed: {exc}")
            return
        model_path = folder / "taught.safetensors"
        result.classifier.save(model_path)
        model_file = model_path.read_bytes()
    progress.empty()
    note.empty()
    live.empty()
    st.session_state[TAUGHT] = result.classifier
    st.session_state[_RESULT] = {"history": result.history, "metrics": result.metrics, "file": model_file,
                                 "before": before}


def _try_it(classifier: audioseq.Classifier) -> None:
    uploads = views.clip_intake("teach.try", multiple=False, what="for the new model")
    with clips.workspace() as folder:
        results = clips.classify(classifier, clips.check_clips(uploads[-1:], folder, classifier))
    views.show_errors(results)
    for r in results:
        if r.ok and r.prediction is not None:
            views.answer(r.prediction, r.clip)
            st.altair_chart(charts.probabilities(r.prediction.probabilities, r.prediction.label), width="stretch")


def _taught_part(matrix: list[list[int]], labels: list[str]) -> tuple[list[list[int]], list[str]]:
    """The rows and columns of labels that held-out clips have or were given: a model fine-tuned
    on two of its ten labels would show a 10×10 matrix of zeros around a 2×2 one."""
    keep = [i for i in range(len(labels)) if sum(matrix[i]) or sum(row[i] for row in matrix)]
    return [[matrix[i][j] for j in keep] for i in keep], [labels[i] for i in keep]


def _results(result: dict[str, Any]) -> None:
    valid = result["metrics"].get("valid") or {}
    st.subheader("3 · How well it learned")
    left, right = st.columns(2)
    with left:
        st.markdown("**Loss and accuracy per epoch**")
        st.line_chart(_history_frame(result["history"]))
    if valid:
        with right:
            st.markdown("**Confusion matrix** of the held-out examples")
            st.altair_chart(charts.confusion(*_taught_part(valid["confusion_matrix"], valid["labels"])),
                            width="stretch")
            st.caption(f"Accuracy {valid['accuracy']:.0%} on {valid['count']} examples the network did not train on"
                       + ("." if result.get("before") is None else
                          f"; the chosen model scored {result['before']:.0%} on them before fine-tuning."))
    st.download_button(
        "Download the model (.safetensors)", result["file"], file_name="taught.safetensors",
        mime="application/octet-stream", on_click="ignore", type="primary",
    )
    st.caption(f"Use it with `audioseq predict taught.safetensors clip.wav`. Until you close or reload this "
               f"tab, the other pages offer it as the model “{TAUGHT_LABEL}”; training again replaces it.")
    st.subheader("4 · Try it")
    _try_it(st.session_state[TAUGHT])


def teach_page() -> None:
    st.title("Teach")
    st.write("Name two or more classes, record or upload a few examples of each, and train a "
             "recurrent network on them right here — or fine-tune the chosen model to your voice.")
    st.subheader("1 · Collect examples")
    classes = _classes()
    names = [_class_card(entry, n + 1, removable=len(classes) > 2) for n, entry in enumerate(classes)]
    st.button("Add a class", on_click=_add_class, disabled=len(classes) >= MAX_CLASSES, key="teach.add")
    st.subheader("2 · Choose the network")
    chosen = pick_model()
    starts = [_NEW, _TUNE] if chosen is not None else [_NEW]
    default(f"{KEEP}teach.start", _NEW, starts)
    start = st.radio("Start from", starts, key=f"{KEEP}teach.start",
                     horizontal=True, help="Fine-tuning teaches a trained model (e.g. digits) your voice "
                     "from a few recordings of some of its words.")
    base = chosen if start == _TUNE and chosen is not None else None
    config = _settings() if base is None else _fine_tune_settings(base)
    problems = _problems(classes, names, base)
    if problems:
        st.info("Before training: " + "; ".join(problems) + ".")
    if st.button("Train", type="primary", disabled=bool(problems), key="teach.train"):
        _train(classes, names, config, base)
    if _RESULT in st.session_state and st.session_state.get(TAUGHT) is not None:
        _results(st.session_state[_RESULT])


teach_page()
