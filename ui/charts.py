"""Altair charts of what the network sees and does. Inputs are numpy arrays or tensors.

Heatmaps are pooled to at most ``MAX_COLUMNS`` time columns: a 30 s clip has 3,000 frames,
and a chart with one mark per frame and unit would be megabytes of JSON in the browser.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

MAX_COLUMNS = 120
MAX_UNITS = 32  # gate rows shown: the units whose activation varies most over the clip
WAVE_POINTS = 1000
LEGEND_ROWS = 8  # most entries in one column of a line chart's legend


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _pool_time(
    values: np.ndarray, times: np.ndarray, max_columns: int = MAX_COLUMNS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average (T, K) values over groups of frames → (T', K), start and end time of each group."""
    T = values.shape[0]
    group = max(1, -(-T // max_columns))
    starts = np.arange(0, T, group)
    pooled = np.stack([values[s : s + group].mean(axis=0) for s in starts])
    step = float(np.median(np.diff(times))) if T > 1 else 0.01
    t0 = times[starts] - step / 2
    t1 = times[np.minimum(starts + group, T) - 1] + step / 2
    return pooled, t0, t1


Span = tuple[float, float]  # a time axis's range in seconds, shared by the charts of one clip


def time_span(frame_times: Any, num_samples: int, sample_rate: int) -> Span:
    """The range that holds both the clip, [0, its length], and every frame with half a step on
    either side: a feature that pads a clip has frames centred before 0 s or after the end."""
    times = _np(frame_times).astype(np.float64)
    half = float(np.median(np.diff(times))) / 2 if times.size > 1 else 0.0
    end = num_samples / sample_rate
    if not times.size:
        return 0.0, end
    return min(0.0, float(times[0]) - half), max(end, float(times[-1]) + half)


def _time_scale(span: Span | None, **kwargs: Any) -> alt.Scale:
    return alt.Scale(nice=False, **({"domain": list(span)} if span else kwargs))


def waveform(wave: Any, sample_rate: int, span: Span | None = None) -> alt.Chart:
    """The clip's envelope (min and max per slice of samples) against time in seconds."""
    samples = _np(wave).astype(np.float32)
    per = max(1, -(-samples.size // WAVE_POINTS))
    padded = np.pad(samples, (0, (-samples.size) % per)).reshape(-1, per)
    data = pd.DataFrame({  # each slice spans 0, so that a clip of a few samples a slice still shows
        "time (s)": np.arange(padded.shape[0]) * per / sample_rate,
        "low": np.minimum(padded.min(axis=1), 0.0),
        "high": np.maximum(padded.max(axis=1), 0.0),
    })
    return alt.Chart(data, height=140, description="The clip's waveform: amplitude against time").mark_area(
        opacity=0.8).encode(
        x=alt.X("time (s):Q", scale=_time_scale(span)), y=alt.Y("low:Q", title="amplitude"), y2="high:Q"
    )


def heatmap(values: Any, times: Any, row_title: str, color_title: str, scheme: str = "viridis",
            domain: tuple[float, float] | None = None, height: int = 230,
            row_names: Sequence[int] | None = None, span: Span | None = None) -> alt.Chart:
    """(T, K) values as a time × row heatmap, row 0 at the bottom.

    ``height`` is the whole chart's in pixels, axes included: the plot gets about 85 fewer.
    ``row_names`` (K,): what the tooltip calls each row (e.g. the hidden unit it shows), else its index.
    """
    pooled, t0, t1 = _pool_time(_np(values).astype(np.float64), _np(times).astype(np.float64))
    cols, rows = np.meshgrid(np.arange(pooled.shape[0]), np.arange(pooled.shape[1]), indexing="ij")
    names = np.asarray(row_names if row_names is not None else np.arange(pooled.shape[1]))
    data = pd.DataFrame({
        "start": t0[cols.ravel()], "end": t1[cols.ravel()],
        "row": rows.ravel(), "row_end": rows.ravel() + 1, "name": names[rows.ravel()],
        "value": pooled.ravel(),
    })
    scale = alt.Scale(scheme=scheme, domain=list(domain)) if domain else alt.Scale(scheme=scheme)
    described = f"Heatmap of {color_title} for each {row_title} over time"  # read out by screen readers
    return alt.Chart(data, height=height, description=described).mark_rect().encode(
        x=alt.X("start:Q", title="time (s)", scale=_time_scale(span, zero=True)), x2="end:Q",
        # Rows standing for other numbers (units picked out of many) are named in the tooltip only.
        y=alt.Y("row:Q", title=row_title, scale=alt.Scale(nice=False),
                axis=alt.Axis(labels=row_names is None, ticks=row_names is None)), y2="row_end:Q",
        # A legend taller than the chart would squeeze the plot area away.
        color=alt.Color("value:Q", title=color_title, scale=scale,
                        legend=alt.Legend(gradientLength=max(30, height - 70))),
        tooltip=[alt.Tooltip("start:Q", title="time (s)", format=".2f"), alt.Tooltip("name:Q", title=row_title),
                 alt.Tooltip("value:Q", format=".3f")],
    )


def probabilities(probs: Mapping[str, float], predicted: str | None) -> alt.Chart:
    """One bar per class, the predicted one highlighted."""
    data = pd.DataFrame({"class": list(probs), "probability": list(probs.values())})
    data["predicted"] = data["class"] == predicted
    ranked = ", ".join(f"{k} {v:.0%}" for k, v in sorted(probs.items(), key=lambda kv: -kv[1])[:3])
    return alt.Chart(data, height=max(120, 24 * len(data)),
                     description=f"Probability of each class; the highest: {ranked}").mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
        # Every class named, however many: a thinned-out axis would hide which bar is which.
        y=alt.Y("class:N", sort=list(probs), title=None, axis=alt.Axis(labelOverlap=False)),
        color=alt.Color("predicted:N", legend=None,
                        scale=alt.Scale(domain=[False, True], range=["#94a3b8", "#2563eb"])),
        tooltip=["class", alt.Tooltip("probability:Q", format=".3f")],
    )


def over_time(series: Mapping[str, Any], times: Any, y_title: str, emphasis: str | None = None,
              log: bool = False, x_title: str = "time (s)", height: int = 220, span: Span | None = None) -> alt.Chart:
    """Several (T,) series against shared x values, one coloured line each."""
    x = _np(times).astype(np.float64)
    frames = [pd.DataFrame({"x": x, "y": _np(v).astype(np.float64), "series": name}) for name, v in series.items()]
    data = pd.concat(frames, ignore_index=True)
    if log:  # a log scale cannot show 0; those steps simply drop out of the line
        data = data[data["y"] > 0]
    width = alt.value(1.5)
    if emphasis is not None:
        width = alt.condition(alt.datum.series == emphasis, alt.value(3.5), alt.value(1.2))
    # The legend must fit beside the plot: a legend taller than the chart is cut off at its foot.
    legend = alt.Legend(columns=-(-len(series) // LEGEND_ROWS), symbolLimit=0) if len(series) > 1 else None
    described = f"{y_title} against {x_title}: {', '.join(map(str, series))}"
    return alt.Chart(data, height=height, description=described).mark_line().encode(
        x=alt.X("x:Q", title=x_title, scale=_time_scale(span, zero=False) if span else alt.Undefined),
        y=alt.Y("y:Q", title=y_title, scale=alt.Scale(type="log") if log else alt.Scale()),
        color=alt.Color("series:N", title=None, sort=list(series), scale=alt.Scale(scheme="tableau10"),
                        legend=legend),
        strokeWidth=width,
        tooltip=["series:N", alt.Tooltip("x:Q", title=x_title, format=".3g"), alt.Tooltip("y:Q", format=".3g")],
    )


def gate_units(gates: Mapping[str, Any], limit: int = MAX_UNITS) -> np.ndarray:
    """The hidden units shown for one layer, the same for all its gates: the ``limit`` whose
    activations vary most over the clip, summed over the gates ((T, H) each), in unit order."""
    spread = sum(_np(values).std(axis=0) for values in gates.values())
    return np.sort(np.argsort(-np.asarray(spread), kind="stable")[:limit])


def gate(name: str, values: Any, times: Any, units: Sequence[int], span: Span | None = None) -> alt.Chart:
    """(T, H) activations of one gate over time, for one layer and direction; rows: ``units``.

    The colour scale follows the values: 0…1 for a sigmoid gate, −1…1 for a tanh candidate,
    and wider for what can leave those ranges (a ReLU candidate, an LSTM's cell state).
    """
    shown = _np(values)[:, np.asarray(units)]
    low, high = float(shown.min()), float(shown.max())
    if low >= 0:
        scheme, domain = "viridis", (0.0, max(1.0, high))
    else:
        bound = max(1.0, -low, high)
        scheme, domain = "blueorange", (-bound, bound)
    # The gate names the legend; a chart title would take height from the plot.
    return heatmap(shown, times, "unit", name, scheme=scheme, domain=domain, height=90 + 4 * len(units),
                   row_names=list(units), span=span)


def confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> alt.Chart:
    """Counts, rows = true class, columns = predicted class."""
    data = pd.DataFrame([
        {"true": labels[i], "predicted": labels[j], "count": int(n)}
        for i, row in enumerate(matrix) for j, n in enumerate(row)
    ])
    base = alt.Chart(data, height=max(160, 40 * len(labels))).encode(
        x=alt.X("predicted:N", sort=list(labels), axis=alt.Axis(labelAngle=0)), y=alt.Y("true:N", sort=list(labels))
    )
    cells = base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), legend=None))
    counts = base.mark_text(fontSize=14).encode(
        text="count:Q",
        color=alt.condition(alt.datum.count > max(1, int(data["count"].max())) / 2,
                            alt.value("white"), alt.value("black")),
    )
    return (cells + counts).properties(description="Confusion matrix: clips of each true class (rows) by the "
                                               "class predicted (columns)")
