"""Inside the RNN: the recurrence unrolled over your clip, its gates, and the vanishing gradient."""

from __future__ import annotations

from typing import Iterator

import streamlit as st
import torch
from torch import Tensor

import audioseq
from audioseq.diagnostics import compare_cells, gradient_through_time
from audioseq.inspection import Inspection

import charts
import clips
import views
from model_choice import LOAD_ERRORS, TAUGHT_LABEL, load_model, pick_model

CELLS = ("rnn", "lstm", "gru")
HIDDEN = 32  # units of the untrained cells compared
FEW_STEPS = 16  # fewer frames than this and the page suggests a model on finer frames


def frames_per_second(classifier: audioseq.Classifier) -> float:
    """How many frames the model's feature makes of each further second of audio (over 10 s)."""
    rate = classifier.sample_rate
    counts = classifier.frontend.feature.num_frames(torch.tensor([10 * rate, 20 * rate]))
    return float(counts[1] - counts[0]) / 10


def finer_model_note(classifier: audioseq.Classifier, steps: int) -> str | None:
    """For a clip unrolled into few steps: the ready-trained model on the finest frames (an LSTM
    among equals: it has the most to show), if it reads at least twice as many a second as
    ``classifier`` (None when there is no such model)."""
    if steps >= FEW_STEPS:
        return None
    rate = frames_per_second(classifier)
    # (−frames a second, not an LSTM, name): the least is the finest, an LSTM first among equals
    choices = [(-frames_per_second(model), model.spec.network.cell != "lstm", name) for name, model in _ready()]
    if not choices or -min(choices)[0] < 2 * rate:
        return None
    negative_rate, _, finest = min(choices)
    return (f"This model reads a frame every {1000 / rate:.0f} ms, so over this clip the network unrolls "
            f"into only {steps} steps. `{finest}` reads one every {-1000 / negative_rate:.0f} ms: pick it in "
            "the sidebar to watch the recurrence over more steps.")


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
    network = classifier.spec.network
    st.header("Unrolled in time")
    st.markdown(
        "The same recurrent neuron is applied at every frame: it reads the frame $x_t$ and its own "
        "previous state $h_{t-1}$ and writes $h_t$. Unrolled, that is one layer per frame sharing "
        "the same weights. The classifier is *many-to-one*: it answers once, from the states of "
        "the whole clip. Reading the answer out after every frame gives the *many-to-many* view."
    )
    if network.bidirectional:
        st.markdown(
            "This model is **bidirectional**: each layer also runs a second recurrence backwards, from "
            "the clip's last frame to its first (**←** in the charts; **→** is the forward one). At frame "
            "$t$ the forward state has read frames $0…t$ and the backward state frames $t…T$."
        )
    if note := finer_model_note(classifier, len(inspection.frame_times)):
        st.info(note)
    st.markdown("**What the network reads** — the clip after trimming and level normalisation (the time "
                "axes on this page count from its start), and the frames $x_t$ made of it")
    span = views.span(inspection)
    st.altair_chart(charts.waveform(inspection.waveform, inspection.sample_rate, span), width="stretch")
    st.altair_chart(charts.heatmap(inspection.inputs, inspection.frame_times, f"{classifier.spec.feature} value",
                                   "x_t", scheme="blueorange", span=span), width="stretch")
    views.padding_note(inspection)
    centred = "the clip's own mean of each value subtracted, then " if network.utterance_norm else ""
    st.caption(f"Each column is one frame's {inspection.inputs.shape[1]} `{classifier.spec.feature}` values, "
               f"normalised as the network reads them: {centred}scaled with the statistics of the training clips.")
    st.markdown(
        "**Size of the hidden state** $\\lVert h_t \\rVert$ — the length of the vector of "
        f"{network.hidden_size} hidden units after each frame: how strongly the clip drives them"
        + (" (→ has read frames $0…t$, ← frames $t…T$)" if network.bidirectional else "")
    )
    st.altair_chart(charts.over_time(_directions(inspection.hidden_norm),
                                     inspection.frame_times, "‖h_t‖", span=span), width="stretch")
    if inspection.cell_state_norm is not None:
        st.markdown("**Size of the LSTM cell state** $\\lVert c_t \\rVert$ — the memory the gates protect")
        st.altair_chart(charts.over_time(_directions(inspection.cell_state_norm),
                                         inspection.frame_times, "‖c_t‖", span=span), width="stretch")
    views.class_probabilities(inspection, inspection.label)
    st.caption("Row $t$ of the many-to-many view is the model run on frames $0…t$ as the network read them, "
               "normalised with the whole clip's statistics: how its belief forms while it reads, not quite "
               "what a recording cut at $t$ would get."
               + (" For a bidirectional model each row is a fresh run on frames $0…t$, so its backward "
                  "direction starts at frame $t$." if network.bidirectional else ""))
    if inspection.attention is not None:
        st.markdown("**Attention pooling** — how much each frame's state counts in the final answer")
        st.altair_chart(charts.over_time({"weight": inspection.attention}, inspection.frame_times, "weight",
                                         span=span),
                        width="stretch")


def _gradient(classifier: audioseq.Classifier | None) -> None:
    st.header("The vanishing gradient")
    st.markdown(
        "When a many-to-one network answers from its last state alone (`last` pooling, one direction), "
        "it learns about frame $t$ only through $\\partial h_T / \\partial x_t$, a product of one "
        "Jacobian per step between $t$ and the end. A plain RNN's steps shrink that product "
        "geometrically, so early frames get almost no learning signal. The LSTM's additive cell update "
        "and the GRU's update gate keep a path along which it decays far slower. "
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
    if classifier is not None:
        rate = frames_per_second(classifier)
        st.caption(f"The chosen model reads a frame every {1000 / rate:.0f} ms: for it, 100 steps are "
                   f"{100 / rate:.1f} s of audio.")


def _your_gradient(inspection: Inspection, classifier: audioseq.Classifier) -> None:
    """How much the answer for this clip depends on each of its frames, through the trained network."""
    network = classifier.spec.network
    if network.pooling != "last":
        path = (f"With `{network.pooling}` pooling every frame's state also feeds the answer directly, so early "
                "frames are not starved.")
    elif network.bidirectional:
        path = ("With `last` pooling and two directions the answer reads the forward state at the last frame "
                "and the backward state at the first: frames near either end are close to it, those in the "
                "middle half the clip away.")
    else:
        path = "With `last` pooling and one direction every frame reaches the answer through all the steps after it."
    st.markdown(
        "**Your clip through this model** — $\\lVert \\partial\\,$answer$/\\partial x_t \\rVert$, the "
        "gradient of the predicted class's score with respect to each frame. " + path
    )
    profile = gradient_through_time(classifier, inputs=inspection.inputs)
    st.altair_chart(charts.over_time({"gradient": profile}, inspection.frame_times, "gradient norm (log scale)",
                                     log=True, span=views.span(inspection)), width="stretch")


def _your_clip(classifier: audioseq.Classifier) -> Inspection | None:
    """Record or upload one clip (an upload wins over a recording) and look inside."""
    uploads = views.clip_intake("inside", multiple=False)
    if not uploads:
        st.info("Record or upload a clip to look inside the network while it reads it.")
        return None
    with clips.workspace() as folder:
        (result,) = clips.classify(classifier, clips.check_clips(uploads[-1:], folder, classifier))
        views.show_errors([result])
        inspection = views.inspect_clip(classifier, result.clip) if result.ok else None
    if inspection is None or result.prediction is None:
        return None
    views.answer(result.prediction, result.clip)
    _unrolled(inspection, classifier)
    st.header("Gates")
    views.gates(inspection, views.cell_name(classifier), key="inside.layer")
    if inspection.cell_state_norm is None:
        ready = ready_lstm()
        st.caption("To watch an LSTM's forget, input and output gates and its cell state: "
                   + (f"pick `{ready}`, a ready-trained LSTM, in the sidebar, or train one on the Teach page"
                      if ready else "train one on the Teach page")
                   + f" (an LSTM unless you choose another cell; it is then offered here as “{TAUGHT_LABEL}”).")
    return inspection


def ready_lstm() -> str | None:
    """The first ready-trained model whose cell is the LSTM."""
    return next((name for name, model in _ready() if model.spec.network.cell == "lstm"), None)


def _ready() -> Iterator[tuple[str, audioseq.Classifier]]:
    """Every ready-trained model that loads, by name (the picker reports one that does not)."""
    for name in audioseq.bundled_models():
        try:
            yield name, load_model(name, 0.0)
        except LOAD_ERRORS:
            continue


def inside_page() -> None:
    st.title("Inside the RNN")
    st.write("Record or upload a clip and watch the network read it, one frame at a time.")
    classifier = pick_model()
    inspection = _your_clip(classifier) if classifier is not None else None
    _gradient(classifier)
    if classifier is not None and inspection is not None:
        _your_gradient(inspection, classifier)


inside_page()
