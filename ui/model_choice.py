"""Which model the pages use: ready-trained (bundled or from a plugin), from the ``--models`` folder,
uploaded, or taught here.

Model files are read with ``audioseq.load``, which parses safetensors tensors and a JSON
description only and never runs code from the file, so an uploaded model is as safe to open
as an uploaded clip. A file that is malformed, or needs a plugin that is not installed, gets
an error naming it and is not offered.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

import audioseq
from audioseq import plugins

from clips import named
from session import KEEP, default

TAUGHT = "taught_model"  # session key: the Classifier trained on the Teach page
TAUGHT_LABEL = "taught on the Teach page"
_UPLOADED = "uploaded_models"  # session key: label -> Classifier, for this session only
_CHOICE = KEEP + "model"
LOAD_ERRORS = (audioseq.AudioseqError, OSError)  # ModelFileError, UnknownComponentError, ...
# The model the pages start on when it is installed: the digits on the speech-embedding plugin's
# feature recognise new voices best (BENCHMARKS.md); else the first ready-trained model.
PREFERRED_MODELS = ("digits-speech-embedding",)


def models_dir() -> Path | None:
    """The ``--models DIR`` given after ``--`` on the ``streamlit run`` command line."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--models", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return Path(args.models) if args.models else None


@st.cache_resource(show_spinner="Loading the model…", max_entries=16)
def load_model(path_or_name: str, modified: float) -> audioseq.Classifier:
    """A ready-trained model by name, or a model file; ``modified`` (mtime) reloads a rewritten file."""
    return audioseq.load(path_or_name)


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def load_model_bytes(digest: str, data: bytes) -> audioseq.Classifier:
    """An uploaded model file, cached by the SHA-256 ``digest`` of its bytes."""
    with tempfile.TemporaryDirectory(prefix="audioseq-model-") as folder:
        path = Path(folder) / "uploaded.safetensors"
        path.write_bytes(data)
        return audioseq.load(path)


def ready_model_origin(name: str) -> str:
    """Where a ready-trained model comes from: ``bundled with audioseq`` or ``from the PLUGIN plugin``."""
    plugin = plugins.get_component("model", name).plugin
    return "bundled with audioseq" if plugin.startswith("audioseq.") else f"from the {plugin} plugin"


class Choice(NamedTuple):
    """One entry of the picker: how to load the model, and where it comes from (for its caption)."""

    load: Callable[[], audioseq.Classifier]
    origin: str


def available_models() -> dict[str, Choice]:
    """Choice label -> model, ready-trained models first (the preferred one at the top).

    A ready-trained model is labelled by its name, as ``audioseq.load`` takes it (its origin goes
    in the caption, so that the picker's narrow box shows the name whole); a file by its name and
    where it was found."""
    options: dict[str, Choice] = {}
    rank = {name: i for i, name in enumerate(PREFERRED_MODELS)}
    for name in sorted(audioseq.bundled_models(), key=lambda n: rank.get(n, len(rank))):
        options[name] = Choice(lambda name=name: load_model(name, 0.0), f"Ready-trained, {ready_model_origin(name)}")
    folder = models_dir()
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.safetensors")):
            if path.name.endswith(".ckpt.safetensors"):  # training checkpoints are not models
                continue
            stamp = path.stat().st_mtime
            options[f"{path.name} (models folder)"] = Choice(
                lambda p=str(path), s=stamp: load_model(p, s), f"From {folder / path.name}")
    for label, classifier in st.session_state.get(_UPLOADED, {}).items():
        options[label] = Choice(lambda c=classifier: c, "Uploaded in this session")
    if st.session_state.get(TAUGHT) is not None:
        options[TAUGHT_LABEL] = Choice(lambda: st.session_state[TAUGHT], "Taught on the Teach page in this session")
    return options


def _add_uploaded_model(upload: UploadedFile) -> None:
    """Load an uploaded model file and offer it (selected); an error names the file."""
    name, data = upload.name, upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    try:
        classifier = load_model_bytes(digest, data)
    except LOAD_ERRORS as exc:
        plugin = isinstance(exc, audioseq.UnknownComponentError)
        st.error(named(name, "cannot be used as a model: " + (
            f"it needs a plugin that is not installed here ({plain(str(exc))})" if plugin else
            "it is not an audioseq model file (.safetensors), or it is damaged")))
        if not plugin:
            with st.expander("Details"):
                st.code(str(getattr(exc, "reason", exc)), language=None)
        return
    label = f"{name} (uploaded)"
    uploaded = st.session_state.setdefault(_UPLOADED, {})
    seen = st.session_state.setdefault("seen_model_uploads", set())
    uploaded[label] = classifier
    if upload.file_id not in seen:
        seen.add(upload.file_id)
        st.session_state[_CHOICE] = label  # a newly uploaded model is the one wanted next


def pick_model() -> audioseq.Classifier | None:
    """Draw the model picker in the sidebar and return the chosen model (None: none usable)."""
    with st.sidebar:
        st.subheader("Model")
        choice_box = st.container()
        upload = st.file_uploader(
            "Add a model file (.safetensors)",
            key="model_upload",
            type=["safetensors"],
            help="A model trained with `audioseq train` or downloaded from the Teach page. "
            "It is read as data only; nothing in it is executed.",
        )
        if upload is not None:
            _add_uploaded_model(upload)
        options = available_models()
        if not options:
            choice_box.info("No model yet: add a model file below, or teach one on the Teach page.")
            return None
        labels = list(options)
        default(_CHOICE, labels[0], labels)
        label = choice_box.selectbox("Model", labels, key=_CHOICE)
        try:
            classifier = options[label].load()
        except LOAD_ERRORS as exc:
            # The message quotes the file (its cell or feature name, its values): text, not Markdown.
            choice_box.error(named(label, f"cannot be loaded: {plain(str(getattr(exc, 'reason', exc)))}"))
            return None
        choice_box.caption(f"{options[label].origin}. {describe(classifier)}")
        return classifier


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """Text from a model file shown as itself in Markdown: a label such as ``![x](http://…)`` or
    ``$x$`` stays those characters, not an image, a link or a formula."""
    return _MARKDOWN.sub(r"\\\1", text)


def describe(classifier: audioseq.Classifier) -> str:
    """One line for people: the cell, its size, the labels and the sample rate."""
    net = classifier.spec.network
    layers = f"{net.num_layers} layer{'s' if net.num_layers > 1 else ''} of {net.hidden_size}"
    direction = ", bidirectional" if net.bidirectional else ""
    labels = ", ".join(map(plain, classifier.labels))
    return (f"{net.cell.upper()} ({layers}{direction}) on {classifier.spec.feature} features "
            f"at {classifier.sample_rate} Hz · labels: {labels}")
