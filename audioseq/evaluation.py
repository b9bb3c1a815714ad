"""Evaluating a classifier on a labelled dataset."""

from __future__ import annotations

from typing import Any, Sequence

from tqdm.auto import tqdm

from .classifier import Classifier
from .dataset import Dataset, Example
from .errors import EvaluationError
from .metrics import summarize
from .plugins import build


def load_dataset(name: str, root: str | None = None, params: dict[str, Any] | None = None) -> Dataset:
    """Build a registered dataset; ``params`` are validated against its declaration."""
    return build("dataset", name, root, params=params)


def evaluate(
    classifier: Classifier,
    data: Dataset | Sequence[Example],
    split: str | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class recall and confusion matrix on labelled clips.

    Clips that cannot be read are reported under ``errors`` and left out of the scores;
    labels the model does not know count as errors too. A progress bar shows on stderr when
    it is a terminal.
    """
    examples = list(data.examples(split)) if hasattr(data, "examples") else list(data)
    index = {label: i for i, label in enumerate(classifier.labels)}
    known = [ex for ex in examples if ex.label in index]
    unknown = [ex for ex in examples if ex.label not in index]
    sources = [ex.audio for ex in known]
    rows = classifier.predict_iter(sources, batch_size=batch_size)
    preds = list(tqdm(rows, total=len(sources), desc="evaluating", unit="clip", leave=False, disable=None))
    y_true, y_pred, errors = [], [], []
    for ex, pred in zip(known, preds):
        if pred.error is not None:
            errors.append({"source": ex.source, "error": pred.error, "error_type": pred.error_type})
            continue
        y_true.append(index[ex.label])
        y_pred.append(index[pred.label])  # type: ignore[index]
    for ex in unknown:
        errors.append({"source": ex.source, "error": f"label {ex.label!r} is not one the model knows",
                       "error_type": "UnknownLabel"})
    if not y_true:
        raise EvaluationError(_nothing_scored(examples, unknown, errors, split))
    result = summarize(y_true, y_pred, classifier.labels)
    result["errors"] = errors
    return result


def _nothing_scored(examples: list[Example], unknown: list[Example], errors: list[dict[str, Any]],
                    split: str | None) -> str:
    """Why an evaluation scored no clip, for its error message."""
    where = f"split {split!r}" if split else "the dataset"
    if not examples:
        return f"{where} has no clips"
    reasons = []
    if unknown:
        labels = sorted({ex.label for ex in unknown})
        reasons.append(f"{len(unknown)} have labels the model does not know ({', '.join(map(repr, labels[:5]))}"
                       f"{', ...' if len(labels) > 5 else ''})")
    unreadable = [e for e in errors if e["error_type"] != "UnknownLabel"]
    if unreadable:
        reasons.append(f"{len(unreadable)} could not be classified (e.g. {unreadable[0]['source']}: "
                       f"{unreadable[0]['error']})")
    return f"none of the {len(examples)} clips of {where} could be scored: {'; '.join(reasons)}"
