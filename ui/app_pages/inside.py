"""Inside the RNN: the recurrence unrolled over your clip, its gates, and the vanishing gradient."""

from __future__ import annotations

import streamlit as st
import torch
from torch import Tensor

import audioseq
from audioseq.diagnostics import compare_cells
from audioseq.inspection import Inspection

import charts
import clips
import views
from model_choice import LOAD_ERRORS, load_model, pick_model

CELLS = ("rnn", "lstm", "gru")
HIDDEN = 32  # units of the untrained cells compared
FEW_STEPS = 16  # fewer frames than this and the page suggests a model on finer frames


def frames_per_second(classifier: audioseq.Classifier) -> float:
    """How many frames the model's feature makes of each further second of audio (over 10 s)."""
    rate = classifier.sample_rate
    counts = classifier.frontend.feature.num_frames(torch.tensor([10 * rate, 20 * rate]))
    return float(counts[1] - counts[0]) / 10


def finer_model_note(classifier: audioseq.Classifier, steps: int) -> str | None:
    """For a clip unrolled into few steps: the ready-trained model on the finest frames, if it
    reads at least twice as many a second as ``classifier`` (None when there is no such model)."""
    if steps >= FEW_STEPS:
        return None
    rate = frames_per_second(classifier)
    rates = []
    for name in audioseq.bundled_models():
        try:
            rates.append((frames_per_second(load_model(name, 0.0)), name))
        except LOAD_ERRORS:  # the picker reports a model that cannot be loaded; here it is skipped
            continue
    finest = max(rates, default=(0.0, ""))
    if finest[0] < 2 * rate:
        return None
    return (f"This model reads a frame every {1000 / rate:.0f} ms, so over this clip the network unrolls "
            f"into only {steps} steps. `{finest[1]}` reads one every "
            f"{1000 / finest[0]:.0f} ms: pick it in the sidebar to watch the recurrence over more steps.")


@st.cache_data(show_spinner="Measuring gradients…", max_entries=16)
def gradient_profiles(seq_len: int) -> dict[str, list[float]]:
    """‖∂ output / ∂ x_t‖ for each step t of a random sequence, per cell (fixed seed: cacheable)."""
    profiles = compare_cells(CELLS, seq_len=seq_len, hidden_size=HIDDEN)
    return {name: profile.tolist() for name, profile in profiles.items()}


def _directions(tensor: Tensor) -> dict[str, Tensor]:
    """(L, D, T) → one named (T,) series per layer and direction (→ forward, ← backward)."""
    layers, directions = tensor.shape[:2]
    return {f"layer {l + 1}" + (f" {'→←'[d]}" if directions > 1 else ""): tensor[l, d]
            for l in range(layers) for d in range(directions)}


def _unrolled(inspection: Inspection, classifier: audioseq.Classifier) -> None:
    feature = classifier.spec.feature
    st.header("Unrolled in time")
    st.markdown(
        "The same recurrent neuron is applied at every frame: it reads the frame $x_t$ and its own "
        "previous state $h_{t-1}$ and writes $h_t$. Unrolled, that is one layer per frame sharing "
        "the same weights. The classifier is *many-to-one*: it answers once, from the states of "
        "the whole clip. Reading the answer out after every frame gives the *many-to-many* view."
    )
    if note := finer_model_note(classifier, len(inspection.frame_times)):
        st.info(note)
    st.altair_chart(
        charts.heatmap(inspection.frames, inspection.frame_times, f"{feature} bin", "x_t", scheme="magma"),
        width="stretch",
    )
    st.markdown("**Size of the hidden state** $\\lVert h_t \\rVert$ — how much the network holds after each frame")
    st.altair_chart(charts.over_time(_directions(inspection.hidden_norm),
                                     inspection.frame_times, "‖h_t‖"), width="stretch")
    if inspection.cell_state_norm is not None:
        st.markdown("**Size of the LSTM cell state** $\\lVert c_t \\rVert$ — the memory the gates protect")
        st.altair_chart(charts.over_time(_directions(inspection.cell_state_norm),
                                         inspection.frame_times, "‖c_t‖"), width="stretch")
    views.class_probabilities(inspection, inspection.label)
    if inspection.attention is not None:
        st.markdown("**Attention pooling** — how much each frame's state counts in the final answer")
        st.altair_chart(charts.over_time({"weight": inspection.attention}, inspection.frame_times, "weight"),
                        width="stretch")


def _gradient() -> None:
    st.header("The vanishing gradient")
    st.markdown(
        "A many-to-one network learns about frame $t$ only through $\\partial h_T / \\partial x_t$, "
        "a product of one Jacobian per step between $t$ and the end. A plain RNN's steps shrink "
        "that product geometrically, so early frames get almost no learning signal. The LSTM's "
        "additive cell update and the GRU's update gate keep a path along which it decays far slower. "
        f"Below: untrained cells ({HIDDEN} units, random inputs), gradient norm against distance from the end."
    )
    steps = st.slider("Sequence length (steps)", 20, 400, 100, step=10, key="inside.steps")
    profiles = gradient_profiles(int(steps))
    back = {name: list(reversed(values)) for name, values in profiles.items()}
    st.altair_chart(
        charts.over_time(back, list(range(int(steps))), "gradient norm (log scale)", log=True,
                         x_title="steps before the end"),
        width="stretch",
    )


def _your_clip(classifier: audioseq.Classifier) -> None:
    """Record or upload one clip (an upload wins over a recording) and look inside."""
    uploads = views.clip_intake("inside", multiple=False)
    if not uploads:
        st.info("Record or upload a clip to look inside the network while it reads it.")
        return
    with clips.workspace() as folder:
        (result,) = clips.classify(classifier, clips.check_clips(uploads[-1:], folder))
        views.show_errors([result])
        inspection = views.inspect_clip(classifier, result.clip) if result.ok else None
    if inspection is None or result.prediction is None:
        return
    views.answer(result.prediction, result.clip)
    _unrolled(inspection, classifier)
    st.header("Gates")
    st.markdown("Gates are sigmoid units between 0 (closed) and 1 (open) that decide, per hidden "
                "unit and frame, what is forgotten, written and shown.")
    views.gates(inspection, key="inside.layer")


def inside_page() -> None:
    st.title("Inside the RNN")
    st.write("Record or upload a clip and watch the network read it, one frame at a time.")
    classifier = pick_model()
    if classifier is not None:
        _your_clip(classifier)
    _gradient()


inside_page()
