"""Views the pages share: the clip intake, the answer for one clip, and its gates."""

from __future__ import annotations

import mimetypes

import streamlit as st

import audioseq
from audioseq.inspection import Inspection

import charts
import clips

UNSURE = 0.6  # below this confidence the answer comes with a warning

def clip_intake(key: str, multiple: bool, what: str = "") -> list[clips.Upload]:
    """A recorder and a file uploader side by side; returns (name, bytes) of what came in.

    ``what`` ends both labels (e.g. "for class 2"), so that a screen reader tells the widgets
    of several intakes on one page apart."""
    limits = f"WAV, FLAC, OGG or MP3, up to {clips.MAX_SECONDS:g} s and {clips.MAX_BYTES // 2**20} MB"
    end = f" {what}" if what else ""
    left, right = st.columns(2)
    with left:
        recording = st.audio_input(f"Record a clip{end}", key=f"{key}.record")
    with right:
        files = st.file_uploader(
            ("…or upload audio files" if multiple else "…or upload an audio file") + end,
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
    if prediction.confidence is not None and prediction.confidence < UNSURE:
        st.warning(f"The model is unsure ({prediction.confidence:.0%}). It always answers with one of its "
                   "labels, so this clip may be none of them, or unlike what it was trained on.")


def inspect_clip(classifier: audioseq.Classifier, clip: clips.Clip) -> Inspection | None:
    """``Classifier.inspect`` on a checked clip; an error names the clip instead of raising."""
    try:
        return classifier.inspect(str(clip.path))
    except audioseq.AudioError as exc:
        st.error(clips.named(clip.name, exc.reason))
        return None


def span(inspection: Inspection) -> charts.Span:
    """The time range all charts of this clip share, so that their axes line up."""
    return charts.time_span(inspection.frame_times, inspection.waveform.numel(), inspection.sample_rate)


def padding_note(inspection: Inspection) -> None:
    """Under charts whose frames reach past the clip: why their times run before 0 s or after the end."""
    low, high = span(inspection)
    if low < 0 or high > inspection.waveform.numel() / inspection.sample_rate + 1e-9:
        st.caption("This model's feature pads the clip with silence, so frames near its ends are centred "
                   "before 0 s or after its end: the time axes run from the first frame to the last.")


def class_probabilities(inspection: Inspection, predicted: str | None) -> None:
    """All class probabilities, then which class the network believes as the clip unfolds."""
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**All classes**")
        probs = {label: float(p) for label, p in zip(inspection.labels, inspection.probabilities)}
        st.altair_chart(charts.probabilities(probs, predicted), width="stretch")
    with right:
        st.markdown("**As the clip unfolds** — the answer read out after each frame, from the frames so far")
        series = {label: inspection.frame_probabilities[:, i] for i, label in enumerate(inspection.labels)}
        st.altair_chart(
            charts.over_time(series, inspection.frame_times, "probability", emphasis=predicted, span=span(inspection)),
            width="stretch",
        )


def what_it_hears(inspection: Inspection, feature: str) -> None:
    """The preprocessed waveform and the feature frames the network reads, one per step."""
    st.markdown("**What the network hears** — the trimmed, level-normalised clip and its feature frames")
    st.altair_chart(charts.waveform(inspection.waveform, inspection.sample_rate, span(inspection)), width="stretch")
    st.altair_chart(
        charts.heatmap(inspection.frames, inspection.frame_times, f"{feature} bin", "value", scheme="magma",
                       span=span(inspection)),
        width="stretch",
    )
    padding_note(inspection)


def _layer_choice(shape: tuple[int, ...], key: str) -> tuple[int, int]:
    """Pick one (layer, direction) of an (L, D, ...) tensor; no widget when there is only one."""
    layers, directions = shape[0], shape[1]
    options = [(l, d) for l in range(layers) for d in range(directions)]
    if len(options) == 1:
        return options[0]
    names = {(l, d): f"layer {l + 1}" + ("" if directions == 1 else " · forward" if d == 0 else " · backward")
             for l, d in options}
    return st.selectbox("Layer", options, format_func=names.__getitem__, key=key)


def cell_name(classifier: audioseq.Classifier) -> str:
    """The model's cell as the pages name it: "`rnn` (nonlinearity relu)"."""
    network = classifier.spec.network
    params = ", ".join(f"{k} {v}" for k, v in network.cell_params.items())
    return f"`{network.cell}`" + (f" ({params})" if params else "")


def gates(inspection: Inspection, cell: str, key: str) -> None:
    """Gate activations over time for one layer and direction, each with what the cell says it does.

    ``cell``: the model's cell as :func:`cell_name` gives it.
    """
    if not inspection.gates:
        st.info(f"This model's cell, {cell}, has no gates: each step computes "
                "$h_t = \\phi(W x_t + U h_{t-1} + b)$ in one go, $\\phi$ its nonlinearity. Nothing decides "
                "what to keep: every step rewrites the whole state.")
        return
    st.markdown("A gate is a sigmoid unit between 0 (closed) and 1 (open), one per hidden unit and "
                "frame, that decides what is kept, written or shown. The **candidate** is not a gate: it is "
                "the new content the gates let in.")
    first = next(iter(inspection.gates.values()))
    layer, direction = _layer_choice(tuple(first.shape), key)
    st.markdown("\n".join(f"- **{name}**: {inspection.gate_meanings.get(name, 'a gate of this cell')}"
                           for name in inspection.gates))
    chosen = {name: activations[layer, direction] for name, activations in inspection.gates.items()}
    units = charts.gate_units(chosen)
    for name, activations in chosen.items():
        st.altair_chart(charts.gate(name, activations, inspection.frame_times, units, span(inspection)),
                        width="stretch")
    hidden = first.shape[-1]
    st.caption(f"Rows: {len(units)} of this layer's {hidden} hidden units, the same in every chart"
               + ("" if len(units) == hidden else ": those whose activations vary most over the clip")
               + ". Hover over a row for its unit number.")
