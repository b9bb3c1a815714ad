"""Classify: record or upload clips and see what the recurrent network answers, and why."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import audioseq

import clips
import views
from model_choice import pick_model, plain


_KEPT = "classify.kept"  # the last clips given, as (name, bytes): shown again on coming back to the page


def _results_table(results: list[clips.Result], labels: list[str]) -> None:
    """Every file of the upload with its label, confidence or error, and the same as CSV."""
    table = pd.DataFrame(clips.results_table(results, labels))
    percent = st.column_config.NumberColumn(format="percent")
    table[["label", "error"]] = table[["label", "error"]].fillna("")  # an empty cell, not "None"
    st.dataframe(table, hide_index=True, column_config={
        "confidence": percent, "error": st.column_config.TextColumn(width="large"),
        **{f"p({label})": percent for label in labels}})
    st.download_button(
        "Download the results (CSV)", table.to_csv(index=False).encode(), file_name="predictions.csv",
        mime="text/csv", on_click="ignore",
    )


def _details(classifier: audioseq.Classifier, result: clips.Result) -> None:
    """The answer for one clip, the evidence over time, and the gates behind it."""
    prediction = result.prediction
    assert prediction is not None  # only clips with a result get here
    views.answer(prediction, result.clip)
    inspection = views.inspect_clip(classifier, result.clip)
    if inspection is None:
        return
    views.class_probabilities(inspection, prediction.label)
    views.what_it_hears(inspection, classifier.spec.feature)
    with st.expander("Gate activations over time", expanded=bool(inspection.gates)):
        views.gates(inspection, views.cell_name(classifier), key="classify.layer")


def classify_page() -> None:
    st.title("Classify")
    st.write(
        "Record a clip or upload audio files. The recurrent network reads each clip one frame "
        "at a time, carrying its hidden state along, and answers once at the end."
    )
    classifier = pick_model()
    if classifier is None:
        return
    returning = not any(f"classify.{part}" in st.session_state for part in ("upload", "record"))
    uploads = views.clip_intake("classify", multiple=True)
    if uploads:
        st.session_state[_KEPT] = uploads
    elif returning and st.session_state.get(_KEPT):  # the widgets forget their files when the page is left
        uploads = st.session_state[_KEPT]
        st.caption(f"Your last {'clip' if len(uploads) == 1 else f'{len(uploads)} clips'}, kept while you were "
                   "on another page: record or upload to replace them.")
    else:  # nothing given, or the files taken off the uploader
        st.session_state.pop(_KEPT, None)
        st.info(f"This model knows: {', '.join(map(plain, classifier.labels))}. Record or upload a clip to classify it.")
        return
    with clips.workspace() as folder:
        results = clips.classify(classifier, clips.check_clips(uploads, folder, classifier))
        views.show_errors(results)
        if len(results) > 1:
            _results_table(results, classifier.labels)
        good = [r for r in results if r.ok]
        if not good:
            return
        chosen = 0
        if len(good) > 1:
            chosen = st.selectbox("Look closer at", range(len(good)), format_func=lambda i: good[i].clip.name)
        _details(classifier, good[chosen])


classify_page()
