"""The ``audioseq`` command. Heavy modules are imported inside commands so ``--help`` is quick."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import itertools
import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

import click

from .app_command import app
from .errors import AudioseqError, ParameterError
from .scaffold import new_plugin
from .suffixes import find_audio

AT_LEAST_ONE = click.IntRange(min=1)
NOT_NEGATIVE = click.IntRange(min=0)


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one clear line and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:  # the reader went away (`| head`): stop without a word, as other tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
            sys.exit(1)
        except (AudioseqError, OSError, ValueError) as exc:  # OSError: e.g. the disk is full
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


BACKEND_OPTION = click.option(
    "--backend", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto", show_default=True,
    help="What runs the network: onnxruntime (CPU) or torch; auto picks onnxruntime where it can.",
)


def _opts(pairs: Iterable[str]) -> dict[str, str]:
    from .params import parse_options

    return parse_options(list(pairs))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="audioseq")
def cli() -> None:
    """Classify audio clips with recurrent networks (RNN, LSTM, GRU).

    \b
    audioseq predict digits clip.wav          the bundled spoken-digit model
    audioseq train --dataset folder --data clips/ --out model.safetensors
    audioseq plugins                          cells, features, datasets, models, their plugins
    """


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings on the command line: one line for people, not a line of audioseq's source."""
    click.echo(f"warning: {message}", err=True)


# Options --init overrides with the model's own, and what each sets.
_KEPT_BY_INIT = {
    "feature": "features", "feature_opt": "feature settings", "cell": "cell", "cell_opt": "cell settings",
    "hidden": "hidden units", "layers": "layers", "bidirectional": "directions", "pooling": "pooling",
    "dropout": "dropout", "utterance_norm": "normalisation", "sample_rate": "sample rate",
    "preprocess_opt": "preprocessing",
}


@cli.command()
@click.option("--dataset", "dataset_name", required=True, help="Registered dataset name (see `audioseq plugins`).")
@click.option("--data", "data_path", default=None, help="Dataset root: a folder, a manifest CSV, ...")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Model file to write (.safetensors).")
@click.option("--features", "feature", default="mfcc", show_default=True, help="Feature extractor.")
@click.option("--cell", default="lstm", show_default=True, help="Recurrent cell.")
@click.option("--hidden", type=AT_LEAST_ONE, default=48, show_default=True, help="Hidden units per direction.")
@click.option("--layers", type=AT_LEAST_ONE, default=2, show_default=True, help="Stacked recurrent layers.")
@click.option("--bidirectional/--no-bidirectional", default=True, show_default=True)
@click.option("--pooling", type=click.Choice(["last", "mean", "attention"]), default="attention", show_default=True)
@click.option("--epochs", type=AT_LEAST_ONE, default=40, show_default=True, help="Most epochs; early stopping may end sooner.")
@click.option("--patience", type=AT_LEAST_ONE, default=10, show_default=True, help="Epochs without validation gain before stopping.")
@click.option("--batch-size", type=AT_LEAST_ONE, default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=5e-3, show_default=True,
              help="Peak learning rate (AdamW, cosine schedule); 1e-3 when fine-tuning with --init unless given.")
@click.option("--dropout", type=click.FloatRange(min=0, max=1, max_open=True), default=0.15, show_default=True)
@click.option("--utterance-norm/--no-utterance-norm", default=True, show_default=True,
              help="Subtract each clip's mean frame before the network (off for features normalised already).")
@click.option("--sample-rate", type=AT_LEAST_ONE, default=None, help="Resample clips to this rate (default: the data's).")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Noise, gain, speed, SpecAugment.")
@click.option("--valid-fraction", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=0.15,
              show_default=True, help="Share of the training clips held out for validation when the data marks none.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint next to --out.")
@click.option("--init", "init", default=None, metavar="MODEL",
              help="Fine-tune this model (a file or bundled name) instead of starting from random weights: "
                   "its labels, features, network and preprocessing are kept and those options ignored.")
@click.option("--cell-opt", multiple=True, metavar="K=V", help="Cell parameter (repeatable).")
@click.option("--feature-opt", multiple=True, metavar="K=V", help="Feature parameter (repeatable).")
@click.option("--dataset-opt", multiple=True, metavar="K=V", help="Dataset parameter (repeatable).")
@click.option("--augment-opt", multiple=True, metavar="K=V", help="Augmentation setting, e.g. reverb_p=0.4 (40% of clips in a synthetic room) or snr_db=10,40; a wrong name lists the settings.")
@click.option("--preprocess-opt", multiple=True, metavar="K=V", help="Preprocessing setting, e.g. trim_db=35.")
@_friendly
def train(**o: Any) -> None:
    """Train a classifier and write it as one .safetensors file (plus FILE.metrics.json)."""
    from . import plugins
    from .augment import Augment
    from .evaluation import load_dataset
    from .params import dataclass_params, validate
    from .preprocess import Preprocess
    from .training import FINE_TUNE_LR, TrainConfig, checkpoint_path, history_as_json, metrics_file, train as run_training

    cell_params = validate(plugins.component_params("cell", o["cell"]), _opts(o["cell_opt"]), f"cell {o['cell']!r}")
    feature_params = validate(
        plugins.component_params("feature", o["feature"]), _opts(o["feature_opt"]), f"feature {o['feature']!r}"
    )
    augment = Augment(**validate(dataclass_params(Augment), _opts(o["augment_opt"]), "augment"))
    preprocess = Preprocess(**validate(dataclass_params(Preprocess), _opts(o["preprocess_opt"]), "preprocess"))
    if o["augment_opt"] and not o["augment"]:
        raise click.UsageError("--augment-opt conflicts with --no-augment")
    _need_folder_of(o["out"], "--out")
    dataset = load_dataset(o["dataset_name"], o["data_path"], _opts(o["dataset_opt"]))
    context = click.get_current_context()
    given = {name for name in o if context.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)}
    if o["init"] and "lr" not in given:
        o["lr"] = FINE_TUNE_LR
    kept = sorted(given & set(_KEPT_BY_INIT)) if o["init"] else []
    flags = {p.name: p.opts[0] for p in context.command.params}
    if kept:  # the model to start from decides these; say so instead of silently ignoring them
        click.echo("warning: --init keeps the model's " + ", ".join(_KEPT_BY_INIT[k] for k in kept)
                   + "; ignoring " + ", ".join(flags[k] for k in kept), err=True)
    config = TrainConfig(
        feature=o["feature"], feature_params=feature_params, cell=o["cell"], cell_params=cell_params,
        hidden_size=o["hidden"], num_layers=o["layers"], bidirectional=o["bidirectional"],
        pooling=o["pooling"], dropout=o["dropout"], utterance_norm=o["utterance_norm"],
        sample_rate=o["sample_rate"], preprocess=preprocess,
        augment=augment if o["augment"] else None, epochs=o["epochs"], patience=o["patience"],
        batch_size=o["batch_size"], lr=o["lr"], seed=o["seed"], device=o["device"],
        valid_fraction=o["valid_fraction"],
    )
    ckpt = checkpoint_path(o["out"])
    if o["resume"]:
        click.echo(f"resuming from {ckpt}" if ckpt.exists() else f"no checkpoint at {ckpt}: training from the start",
                   err=True)
    try:
        result = run_training(dataset, config, out=o["out"], resume=o["resume"], init=o["init"])
    except KeyboardInterrupt:
        if ckpt.exists():
            click.echo(f"\ninterrupted: {ckpt} holds the epochs finished; run the same command with --resume "
                       "to continue", err=True)
        sys.exit(130)
    if result.metrics.get("resumed_after_epoch") is not None:
        click.echo(f"resumed after epoch {result.metrics['resumed_after_epoch']} of the checkpoint", err=True)
    metrics_path = metrics_file(o["out"])
    metrics_path.write_text(json.dumps({"history": history_as_json(result.history), **result.metrics}, indent=2,
                                       allow_nan=False))
    valid = result.metrics.get("valid", {})
    accuracy = f"{valid['accuracy']:.4f}" if "accuracy" in valid else "unknown (no validation clip could be read)"
    click.echo(
        f"wrote {o['out']} ({result.classifier.num_parameters():,} parameters, best epoch "
        f"{result.metrics['best_epoch']}, validation accuracy {accuracy})"
    )
    if "test" in result.metrics:
        click.echo(f"test accuracy {result.metrics['test']['accuracy']:.4f}, macro-F1 {result.metrics['test']['macro_f1']:.4f}")
    click.echo(f"metrics in {metrics_path}")


@cli.command()
@click.argument("model")
@click.option("--dataset", "dataset_name", required=True)
@click.option("--data", "data_path", default=None)
@click.option("--split", default=None, help="train, valid or test (default: test when the dataset has one).")
@click.option("--dataset-opt", multiple=True, metavar="K=V")
@click.option("--batch-size", type=AT_LEAST_ONE, default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the full metrics as JSON.")
@BACKEND_OPTION
@_friendly
def evaluate(model: str, dataset_name: str, data_path: str | None, split: str | None,
             dataset_opt: tuple[str, ...], batch_size: int, as_json: bool, backend: str) -> None:
    """Accuracy, macro-F1, per-class recall and confusion matrix of MODEL on a dataset."""
    from .classifier import load
    from .evaluation import evaluate as run_evaluation, load_dataset

    clf = load(model, backend=backend)
    dataset = load_dataset(dataset_name, data_path, _opts(dataset_opt))
    if split is None and dataset.examples("test"):
        split = "test"
    result = run_evaluation(clf, dataset, split=split, batch_size=batch_size)
    result["split"] = split
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['count']} clips ({split or 'all'}): accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f}")
    width = max(len(label) for label in result["labels"])
    for label, recall in result["per_class_recall"].items():
        if recall is not None:  # None: no clip of this label was scored
            click.echo(f"  {label:<{width}}  recall {recall:.4f}")
    if result["errors"]:
        click.echo(f"{len(result['errors'])} clip(s) could not be scored, e.g. {result['errors'][0]['source']}: {result['errors'][0]['error']}")


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files as given; folders searched recursively for audio files (sorted)."""
    return list(_expanded(inputs))


def _expanded(inputs: Iterable[str]) -> Iterator[str]:
    """``expand_inputs``, one input at a time."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [str(p) for p in find_audio(path)]
            yield from found or [item]  # an empty folder becomes an error row, not silence
        else:
            yield item


def _listed(lines: Iterable[str]) -> Iterator[str]:
    """The inputs a --files-from list names: one a line, blank lines skipped."""
    for line in lines:
        item = line.rstrip("\r\n")
        if item.strip():
            yield item


def _not_the_output(sources: Iterable[str], output: str | None) -> Iterator[str]:
    """``sources``, stopping at one that is the file ``output`` names (rows go to a temporary
    file until the end, so the output is then left as it was)."""
    target = _file_id(output) if output else None
    for source in sources:
        if target is not None and _file_id(source) == target:
            raise _clobbering(output, source)
        yield source


def _clobbering(output: str | None, source: str) -> click.BadParameter:
    return click.BadParameter(f"{output} is also an input ({source}): writing there would destroy it",
                              param_hint="'--output'")


@cli.command()
@click.argument("model")
@click.argument("inputs", nargs=-1)
@click.option("--files-from", type=click.File("r", encoding="utf-8", errors="surrogateescape"), default=None,
              help="Also classify the files and folders listed in this file, one a line ('-': stdin), read as "
                   "they are classified, so that a list of millions is never held at once.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write here instead of stdout ('-': stdout).")
@click.option("--batch-size", type=AT_LEAST_ONE, default=128, show_default=True)
@click.option("--workers", type=NOT_NEGATIVE, default=None, help="Decoding processes (default: by input count).")
@click.option("--max-errors", type=NOT_NEGATIVE, default=0, show_default=True, help="Exit 1 when more inputs than this failed.")
@BACKEND_OPTION
@_friendly
def predict(model: str, inputs: tuple[str, ...], files_from: TextIO | None, fmt: str, output: str | None,
            batch_size: int, workers: int | None, max_errors: int, backend: str) -> None:
    """Classify files and folders (searched recursively) with MODEL (a file or a bundled name).

    One row per input, in order (INPUTS, then those --files-from lists); an input that cannot be
    classified is a row with its error. With --output, a progress bar counts the inputs on
    stderr when it is a terminal.
    """
    from .classifier import load

    if not inputs and files_from is None:
        raise click.UsageError("give the files or folders to classify, as INPUTS or with --files-from")
    if output == "-":
        output = None
    if output:
        _need_folder_of(output, "--output")  # before loading and searching
    clf = load(model, backend=backend)
    given = expand_inputs(inputs)
    if output and (clobbered := _first_same_file(output, [*given, clf.path or ""])):
        raise _clobbering(output, clobbered)
    sources: Iterable[str] = given
    if files_from is not None:  # a stream: its length is known only at its end
        sources = itertools.chain(given, _not_the_output(_expanded(_listed(files_from)), output))
    rows = clf.predict_iter(sources, batch_size=batch_size, num_workers=workers)  # checks its arguments
    failed = count = 0
    with _output_stream(output) as stream:
        writer = _row_writer(fmt, stream, clf.labels, max(map(len, given)) if files_from is None else 60)
        if output:  # the rows go to a file: a progress bar on stderr, shown only on a terminal
            from tqdm import tqdm

            rows = tqdm(rows, total=len(given) if files_from is None else None, desc="predicting", unit="clip",
                        disable=None)
        for pred in rows:
            failed += pred.error is not None
            count += 1
            writer(pred)
    if failed:
        click.echo(f"{failed} of {count} input(s) failed", err=True)
    if failed > max_errors:
        sys.exit(1)


@contextlib.contextmanager
def _output_stream(output: str | None) -> Iterator[TextIO]:
    """Where predict's rows go: stdout without --output; what is not a regular file (/dev/null, a
    named pipe) as it is; else a file replaced only by a whole result (``atomic_writer``), never
    truncated by a run that fails."""
    from .modelfile import atomic_writer

    if not output:
        yield sys.stdout
    elif os.path.exists(output) and not os.path.isfile(output):
        with open(output, "w", newline="", encoding="utf-8") as stream:
            yield stream
    else:
        with atomic_writer(output, "w", newline="", encoding="utf-8") as stream:
            yield stream


def _need_folder_of(path: str, option: str) -> None:
    """Refuse an output whose folder does not exist, before anything is loaded or run."""
    if not Path(path).resolve().parent.is_dir():
        raise click.BadParameter(f"the folder {Path(path).parent} does not exist", param_hint=f"'{option}'")


def _first_same_file(output: str, paths: Iterable[str]) -> str | None:
    """The first of ``paths`` that is the file ``output`` names (a new output is none of them)."""
    target = _file_id(output)
    return None if target is None else next((path for path in paths if _file_id(path) == target), None)


def _file_id(path: str) -> tuple[int, int] | None:
    """What makes a file itself whatever its path spells (device, inode); None if there is none."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return None if st is None else (st.st_dev, st.st_ino)


def _row_writer(fmt: str, stream: io.TextIOBase, labels: list[str], width: int) -> Callable[[Any], None]:
    if fmt == "jsonl":
        return lambda p: stream.write(json.dumps(p.to_dict()) + "\n")
    if fmt == "csv":
        writer = csv.writer(stream)
        writer.writerow(["source", "label", "confidence", "error_type", "error"] + [f"p_{l}" for l in labels])

        def write_csv(p: Any) -> None:
            probs = [f"{p.probabilities[l]:.6f}" if p.probabilities else "" for l in labels]
            conf = f"{p.confidence:.6f}" if p.confidence is not None else ""
            writer.writerow([p.source, p.label or "", conf, p.error_type or "", p.error or ""] + probs)

        return write_csv
    width = max(len("source"), min(width, 60))
    stream.write(f"{'source':<{width}}  {'label':<12} {'confidence':>10}  error\n")

    def write_table(p: Any) -> None:
        src = p.source if len(p.source) <= width else "…" + p.source[-width + 1 :]
        conf = f"{p.confidence:.3f}" if p.confidence is not None else ""
        stream.write(f"{src:<{width}}  {p.label or '-':<12} {conf:>10}  {p.error or ''}\n")

    return write_table


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@_friendly
def plugins(as_json: bool) -> None:
    """Installed plugins: their cells, features and datasets with typed parameters, and models."""
    from .plugins import plugins_info

    info = plugins_info()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    width = max([16] + [len(c["name"]) for plugin in info for c in plugin["components"]])
    for plugin in info:
        version = f" {plugin['version']}" if plugin["version"] else ""
        click.echo(f"{plugin['name']}{version}" + (f"  hooks: {', '.join(plugin['hooks'])}" if plugin["hooks"] else ""))
        if plugin["error"]:
            click.secho(f"  BROKEN: {plugin['error']}", fg="red")
        for c in plugin["components"]:
            params = ", ".join(f"{p['name']}: {p['type']} = {p['default']!r}" for p in c["params"])
            # What it takes, or, for a model or a component without parameters, what it is.
            shown = params if c["kind"] != "model" and params else c["doc"]
            click.echo(f"  {c['kind']:<8} {c['name']:<{width}} {shown}")


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def info(model: str, as_json: bool) -> None:
    """What a model file holds: labels, rate, features, network, preprocessing, metrics."""
    from .classifier import load
    from .errors import UnknownComponentError

    try:
        clf = load(model)
    except UnknownComponentError as exc:  # the description can still be read, just not run
        _describe_unrunnable(model, exc, as_json)
        sys.exit(1)
    doc = clf.spec.to_document()
    doc["path"] = clf.path
    doc["parameters"] = clf.num_parameters()
    doc["runtime"] = clf.runtime  # what predictions run on here: onnxruntime or torch
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{clf.path}\n  {clf!r}\n  {doc['parameters']:,} parameters, predictions run on {doc['runtime']}")
    _show_description(doc)


def _show_description(doc: dict[str, Any]) -> None:
    """The text of ``info`` from a model's stored description (read as stored: it may not be runnable)."""
    network, feature = doc.get("network"), doc.get("feature")  # as stored: may be anything
    network = network if isinstance(network, dict) else {}
    feature = feature if isinstance(feature, dict) else {}
    click.echo(f"  labels: {', '.join(map(str, doc.get('labels', [])))}")
    click.echo(f"  feature: {feature.get('name')} {json.dumps(feature.get('params', {}))}")
    click.echo(f"  cell: {network.get('cell')} {json.dumps(network.get('cell_params', {}))}, "
               f"dropout {network.get('dropout')}")
    click.echo(f"  preprocess: {json.dumps(doc.get('preprocess', {}))}")
    metrics = doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {}
    for split in ("valid", "test"):
        m = metrics.get(split)
        if isinstance(m, dict) and all(isinstance(m.get(k), (int, float)) for k in ("accuracy", "macro_f1")):
            click.echo(f"  {split} accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")


def _describe_unrunnable(model: str, error: Exception, as_json: bool) -> None:
    """``info`` for a model that needs a component no installed plugin gives: its description, and why."""
    from .classifier import resolve_model
    from .modelfile import read_tensors

    path = resolve_model(model)
    _, doc = read_tensors(path)
    doc.update(path=str(path), runtime=None, error=f"{type(error).__name__}: {error}")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(str(path))
        _show_description(doc)
    click.echo(f"Error: cannot run here: {doc['error']}", err=True)


@cli.command()
@click.argument("model")
@click.argument("out", type=click.Path(dir_okay=False))
@_friendly
def export(model: str, out: str) -> None:
    """Write MODEL's network as an ONNX file OUT: (frames, lengths) → logits.

    The graph takes frames already computed (Classifier.frontend), float32 (batch, time,
    features), and lengths (batch,) int64. Its metadata holds "labels" (a JSON list) and
    "audioseq" (the model's whole description: sample rate, preprocessing, features).
    """
    from .classifier import load
    from .export import to_onnx
    from .modelfile import write_atomic

    _need_folder_of(out, "OUT")
    clf = load(model, backend="torch")
    if _first_same_file(out, [clf.path or ""]):
        raise click.BadParameter(f"{out} is the model itself: writing there would replace it", param_hint="'OUT'")
    document = clf.spec.to_document()
    proto = to_onnx(clf.model, {"labels": json.dumps(clf.labels), "audioseq": json.dumps(document)})
    write_atomic(out, proto.SerializeToString())
    net = clf.spec.network
    click.echo(f"wrote {out}: frames (batch, time, {net.input_size}) + lengths → logits over {len(clf.labels)} labels")


cli.add_command(new_plugin, name="new-plugin")
cli.add_command(app)


def main() -> None:
    """The installed command: warnings as one line each, and errors raised while click parses."""
    warnings.showwarning = _show_warning
    # SIGTERM (kill, timeout, a job scheduler) as Ctrl-C: the decoding workers are then shut
    # down on the way out instead of being orphaned, still holding the caller's pipes open.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cli(standalone_mode=True)
    except ParameterError as exc:  # raised while click parses
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
