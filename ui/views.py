"""Views the pages share: the clip intake, the answer for one clip, and its gates."""

from __future__ import annotations

import mimetypes

import streamlit as st

import audioseq
from audioseq.inspection import Inspection

import charts
import clips

GATE_MEANING = {
    "forget": "how much of the cell state $c_{t-1}$ is kept (1: all of it)",
    "input": "how much of the candidate is written into the cell state",
    "candidate": "the new content proposed from $x_t$ and $h_{t-1}$ (tanh, −1…1)",
    "output": "how much of the cell state is shown as $h_t$",
    "reset": "how much of $h_{t-1}$ the candidate gets to see",
    "update": "how much of $h_{t-1}$ is kept instead of taking the candidate (1: keep)",
}


def clip_intake(key: str, multiple: bool) -> list[clips.Upload]:
    """A recorder and a file uploader side by side; returns (name, bytes) of what came in."""
    limits = f"WAV, FLAC, OGG or MP3, up to {clips.MAX_SECONDS:g} s and {clips.MAX_BYTES // 2**20} MB"
    left, right = st.columns(2)
    with left:
        recording = st.audio_input("Record a clip", key=f"{key}.record")
    with right:
        files = st.file_uploader(
            "…or upload audio files" if multiple else "…or upload an audio file",
            accept_multiple_files=multiple, key=f"{key}.upload", help=limits + (" each." if multiple else "."),
        )
    uploaded = files if multiple else [files]
    return clips.recording_of(recording) + clips.uploads_of(uploaded or [])


def show_errors(results: list[clips.Result]) -> None:
    for r in results:
        if not r.ok:
            st.error(clips.named(r.clip.name, r.error or ""))


def answer(prediction: audioseq.Prediction, clip: clips.Clip) -> None:
    """The Prediction metric, its confidence, and the clip to listen to."""
    first, second, third = st.columns([1, 1, 2])
    first.metric("Prediction", prediction.label or "—")
    second.metric("Confidence", f"{(prediction.confidence or 0.0):.0%}")
    with third:
        st.audio(clip.data, format=mimetypes.guess_type(clip.name)[0] or "audio/wav")


def inspect_clip(classifier: audioseq.Classifier, clip: clips.Clip) -> Inspection | None:
    """``Classifier.inspect`` on a checked clip; an error names the clip instead of raising."""
    try:
        return classifier.inspect(str(clip.path))
    except audioseq.AudioError as exc:
        st.error(clips.named(clip.name, exc.reason))
        return None


def class_probabilities(inspection: Inspection, predicted: str | None) -> None:
    """All class probabilities, then which class the network believes as the clip unfolds."""
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**All classes**")
        probs = {label: float(p) for label, p in zip(inspection.labels, inspection.probabilities)}
        st.altair_chart(charts.probabilities(probs, predicted), width="stretch")
    with right:
        st.markdown("**As the clip unfolds** — the answer had the clip ended at each frame")
        series = {label: inspection.frame_probabilities[:, i] for i, label in enumerate(inspection.labels)}
        st.altair_chart(
            charts.over_time(series, inspection.frame_times, "probability", emphasis=predicted),
            width="stretch",
        )


def what_it_hears(inspection: Inspection, feature: str) -> None:
    """The preprocessed waveform and the feature frames the network reads, one per step."""
    st.markdown("**What the network hears** — the trimmed, level-normalised clip and its feature frames")
    st.altair_chart(charts.waveform(inspection.waveform, inspection.sample_rate), width="stretch")
    st.altair_chart(
        charts.heatmap(inspection.frames, inspection.frame_times, f"{feature} bin", "value", scheme="magma"),
        width="stretch",
    )


def _layer_choice(shape: tuple[int, ...], key: str) -> tuple[int, int]:
    """Pick one (layer, direction) of an (L, D, ...) tensor; no widget when there is only one."""
    layers, directions = shape[0], shape[1]
    options = [(l, d) for l in range(layers) for d in range(directions)]
    if len(options) == 1:
        return options[0]
    names = {(l, d): f"layer {l + 1}" + ("" if directions == 1 else " · forward" if d == 0 else " · backward")
             for l, d in options}
    return st.selectbox("Layer", options, format_func=names.__getitem__, key=key)


def gates(inspection: Inspection, key: str) -> None:
    """Gate activations over time for one layer and direction (LSTM and GRU models)."""
    if not inspection.gates:
        st.info("This model's cell has no gates: a plain RNN computes $h_t = \\tanh(W x_t + U h_{t-1} + b)$.")
        return
    first = next(iter(inspection.gates.values()))
    layer, direction = _layer_choice(tuple(first.shape), key)
    st.markdown("\n".join(f"- **{name}**: {GATE_MEANING.get(name, 'a gate of this cell')}"
                           for name in inspection.gates))
    for name, activations in inspection.gates.items():
        st.altair_chart(charts.gate(name, activations[layer, direction], inspection.frame_times), width="stretch")
    st.caption(f"Rows: hidden units of this layer, at most the {charts.MAX_UNITS} "
               "whose activation varies most over the clip.")
