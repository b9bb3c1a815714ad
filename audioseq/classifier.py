"""The user-facing classifier: load a model file, predict labels for clips."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import numbers
import os
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
import torch

from .errors import ModelFileError, NonFiniteAudioError, ParameterError, UnknownComponentError
from .model import SequenceClassifier
from .modelfile import read_tensors, write_tensors
from .pipeline import Frontend, Item, iter_batches, iter_items, workers_for
from .plugins import build, list_components, provider, registry
from .spec import ModelSpec

if TYPE_CHECKING:
    from .export import OnnxNetwork
    from .inspection import Inspection


Backend = Literal["auto", "torch", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ParameterError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")


@dataclasses.dataclass
class Prediction:
    """The result for one input. ``error`` is None on success; otherwise label is None."""

    source: str
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Torch's operators on one thread in this thread for the block (the count is per thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclasses.dataclass
class _Job:
    """A batch's probabilities being computed in the network thread, and how to compute them
    here instead if it has not started."""

    future: Future[torch.Tensor]
    function: Callable[..., torch.Tensor]
    args: tuple[Any, ...]

    def run_here(self) -> torch.Tensor | None:
        """The probabilities, computed in this thread; None if the network thread has begun."""
        if not self.future.cancel():
            return None
        with _one_torch_thread():
            return self.function(*self.args)


class _NetworkRunner:
    """Turns batches of decoded clips into probabilities: features, then the network,
    overlapped with decoding where that pays.

    ONNX Runtime releases the interpreter lock while it computes, so with that backend (and
    ``background``) batches go to a background thread, features and network, while the caller
    decodes the next clips. Only when more than one batch is expected (``many``) does the first
    go there too: for one clip, starting a thread would cost more than it saves. The two
    threads share the work as it comes: while the network thread has ``share_after`` batches
    or more unfinished, the caller computes the next batch's features itself, and rather than
    wait for the network it runs a batch that has not started yet. Both run torch's operators
    on one thread each (torch's thread count is per thread): a second one would fight the
    other thread for a core, and the features ran 3x slower that way. At most
    ``max_inflight`` batches wait, so memory stays bounded. With torch, every batch runs in
    the caller's thread.
    """

    max_inflight = 8
    share_after = 2

    def __init__(self, classifier: "Classifier", background: bool = True, many: bool = False) -> None:
        self.classifier = classifier
        self.onnx = classifier.runtime == "onnxruntime"  # looked up once: it checks the weights
        self.background = background and self.onnx
        self.many = many
        self.pool: ThreadPoolExecutor | None = None
        self.submitted = 0
        self.inflight: deque[tuple[list[Item], torch.Tensor | _Job]] = deque()  # probabilities (B, C) or their job

    @property
    def window(self) -> int:
        """Batches' worth of clips to sort by length before batching: torch runs a batch
        padded to its longest clip, ONNX Runtime sorts within the batch (see
        :data:`~audioseq.export.RUN_GROUP`) and gains nothing from waiting for more clips."""
        return 1 if self.onnx else 8

    def __enter__(self) -> "_NetworkRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, batch: list[Item]) -> None:
        self.submitted += 1
        if not self.background or (self.submitted == 1 and not self.many):
            self.inflight.append((batch, self._run(batch)))
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(
                1, thread_name_prefix="audioseq-network", initializer=torch.set_num_threads, initargs=(1,)
            )
        unfinished = sum(1 for _, job in self.inflight if isinstance(job, _Job) and not job.future.done())
        function: Callable[..., torch.Tensor] = self._run
        args: tuple[Any, ...] = (batch,)
        if unfinished >= self.share_after:
            with _one_torch_thread():
                args = self.classifier.frontend.frames_of(batch)
            function = self.classifier.probabilities
        self.inflight.append((batch, _Job(self.pool.submit(function, *args), function, args)))

    def _run(self, batch: list[Item]) -> torch.Tensor:
        return self.classifier.probabilities(*self.classifier.frontend.frames_of(batch))

    def ready(self, wait: bool = False) -> Iterator[tuple[list[Item], torch.Tensor]]:
        """Finished batches, in order, with their probabilities (B, C): all of them when
        ``wait``; else those done, waiting only while more than ``max_inflight`` are queued."""
        while self.inflight:
            batch, job = self.inflight[0]
            if isinstance(job, _Job):
                if not (wait or job.future.done() or len(self.inflight) > self.max_inflight):
                    break
                if not job.future.done() and self._run_a_waiting_job():
                    continue  # the first batch may have been the one run here
                probabilities = job.future.result()
            else:
                probabilities = job
            self.inflight.popleft()
            yield batch, probabilities.cpu()

    def _run_a_waiting_job(self) -> bool:
        """Run here the newest batch the network thread has not started; False if none."""
        for index in range(len(self.inflight) - 1, -1, -1):
            batch, job = self.inflight[index]
            if isinstance(job, _Job) and (probabilities := job.run_here()) is not None:
                self.inflight[index] = (batch, probabilities)
                return True
        return False


def bundled_models() -> list[str]:
    """Names of the ready-trained models, sorted: the package's own (``digits``) and those
    plugins register (``register_models``); ``audioseq.load(name)`` opens one."""
    return list_components("model")


def resolve_model(path_or_name: str | os.PathLike) -> Path:
    """The file of a model: ``path_or_name`` itself when it exists, else the registered model."""
    path = Path(path_or_name)
    if not path.exists() and isinstance(path_or_name, str):
        model = registry()["model"].get(path_or_name)
        if model is not None and model.path is not None:
            return model.path
    return path


def _is_rate(value: Any) -> bool:
    """A sample rate as a caller may hold one: a Python or numpy number, or a 0-d tensor or array."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.ndim == 0
    return isinstance(value, numbers.Real)


def _as_inputs(inputs: Any) -> Iterable[Any]:
    """The inputs to classify: one clip (a path as str, bytes or PathLike, or a (waveform, rate)
    pair) becomes a list of one; a bare array or tensor is one input too (its row says it lacks a
    rate) rather than one input per sample; anything else must be iterable, checked now."""
    numeric = isinstance(inputs, torch.Tensor) or (isinstance(inputs, np.ndarray) and inputs.dtype.kind in "biufc")
    if numeric or isinstance(inputs, (str, bytes, os.PathLike)) or (
        isinstance(inputs, tuple) and len(inputs) == 2 and _is_rate(inputs[1])
    ):
        return [inputs]
    try:
        iter(inputs)
    except TypeError:
        raise TypeError(f"inputs must be a clip or an iterable of clips, got {type(inputs).__name__}") from None
    return inputs


class Classifier:
    """A trained many-to-one recurrent classifier with its frontend.

    Attributes:
        labels: class names. sample_rate: rate clips are resampled to (Hz).
        spec: the full model description. path: the file it came from, if any.
        backend: what runs the network for predictions: ``torch``, ``onnxruntime`` (on CPU,
            for cells with an ONNX form, the built-ins among them; overlapped with decoding,
            see BENCHMARKS.md) or ``auto`` (onnxruntime when it is installed, the model is on
            CPU and its cells can be exported, else torch). :attr:`runtime` says which runs.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: SequenceClassifier | None = None,
        path: str | None = None,
        backend: Backend = "auto",
    ) -> None:
        _check_backend(backend)
        if not spec.providers:  # a model made here: its components are the ones registered now
            spec = dataclasses.replace(spec, providers={
                "feature": provider("feature", spec.feature), "cell": provider("cell", spec.network.cell)})
        self.spec = spec
        self.path = path
        self.backend = backend
        self._onnx: OnnxNetwork | None = None
        self._onnx_key: tuple | None = None
        feature = build("feature", spec.feature, spec.sample_rate, params=spec.feature_params)
        if model is None:
            model = SequenceClassifier(spec.network)
        if model.config.input_size != feature.dim:
            raise ValueError(
                f"feature {spec.feature!r} gives {feature.dim} values per frame, network expects {model.config.input_size}"
            )
        self.model = model.eval()
        self.frontend = Frontend(feature, spec.sample_rate, spec.preprocess, spec.limits)

    labels = property(lambda self: list(self.spec.labels))
    sample_rate = property(lambda self: self.spec.sample_rate)
    metrics = property(lambda self: dict(self.spec.metrics))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> "Classifier":
        self.model.to(device)
        self.frontend.to(device)
        return self

    def __repr__(self) -> str:
        net = self.spec.network
        return (
            f"Classifier({net.cell}, {net.num_layers}x{net.hidden_size}"
            f"{' bidirectional' if net.bidirectional else ''}, {net.pooling} pooling, "
            f"feature={self.spec.feature}, {len(self.labels)} labels, {self.sample_rate} Hz)"
        )

    def __getstate__(self) -> dict[str, Any]:
        """For copying and pickling: the ONNX Runtime session is left out and rebuilt on use."""
        return {**self.__dict__, "_onnx": None, "_onnx_key": None}

    @property
    def runtime(self) -> str:
        """What runs the network now: ``onnxruntime`` or ``torch`` (see :attr:`backend`)."""
        return "onnxruntime" if self._onnx_network() is not None else "torch"

    def _onnx_network(self) -> OnnxNetwork | None:
        """The ONNX Runtime session for the current weights, or None to run torch.

        The session is rebuilt when a weight changes in place (e.g. after fine-tuning) or is
        replaced, which the tensors' version counters and identities tell.
        """
        if self.backend == "torch":
            return None
        from .export import ExportError, OnnxNetwork, exportable, onnxruntime_available

        if self.device.type != "cpu":
            if self.backend == "onnxruntime":
                raise ExportError(f"the onnxruntime backend runs on CPU; this model is on {self.device}")
            return None
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        key = tuple((id(t), t._version) for t in tensors)
        if key != self._onnx_key:
            self._onnx = None
            if self.backend == "onnxruntime":
                self._onnx = OnnxNetwork(self.model)  # ExportError names what is missing
            elif onnxruntime_available() and exportable(self.model) is None:
                try:
                    self._onnx = OnnxNetwork(self.model)
                except Exception as exc:  # auto: whatever ONNX Runtime refuses, torch still runs
                    warnings.warn(f"audioseq: running the network on torch; onnxruntime failed: "
                                  f"{type(exc).__name__}: {exc}", stacklevel=3)
            self._onnx_key = key
        return self._onnx

    @torch.no_grad()
    def probabilities(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Frames (B, T, F) and lengths (B,) → class probabilities (B, C)."""
        network = self._onnx_network()
        if network is not None:
            logits = network(frames, lengths)
        else:
            logits = self.model(frames.to(self.device), lengths.to(self.device))
        return torch.softmax(logits.float(), dim=-1)

    def predict_iter(
        self,
        inputs: Iterable[Any],
        batch_size: int = 128,
        num_workers: int | None = None,
        names: Sequence[str] | None = None,
    ) -> Iterator[Prediction]:
        """Like :meth:`predict`, yielding predictions in input order as they are ready.

        ``names``: what each input is called in its prediction's ``source`` and error messages
        (default: the path, or ``<waveform>``), one per input, for a list or a stream alike.
        Its arguments are checked when it is called, before the first prediction is asked for."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError(f"batch_size must be an integer ≥ 1, got {batch_size!r}")
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
            raise ParameterError(f"num_workers must be an integer ≥ 0 or None, got {num_workers!r}")
        inputs = _as_inputs(inputs)  # one clip is one input, never its characters, bytes or samples
        if names is not None and isinstance(inputs, Sequence) and len(names) != len(inputs):
            raise ParameterError(f"names must give one name per input: {len(names)} names for {len(inputs)} inputs")
        return self._predictions(inputs, batch_size, num_workers, names)

    def _predictions(
        self, inputs: Iterable[Any], batch_size: int, num_workers: int | None, names: Sequence[str] | None
    ) -> Iterator[Prediction]:
        workers = workers_for(inputs) if num_workers is None else num_workers
        many = isinstance(inputs, Sequence) and len(inputs) > batch_size  # a stream's length is unknown
        items = iter_items(inputs, self.frontend, num_workers=workers, names=names)
        pending: dict[int, Prediction] = {}
        next_index = 0
        # Overlap the network with decoding only when decoding runs here: worker processes
        # already decode in parallel, and must not be forked while a network thread runs.
        with _NetworkRunner(self, background=workers == 0, many=many) as network:
            batches = iter_batches(items, batch_size, network.window)
            for step in itertools.chain(batches, [None]):  # None: drain the network
                if step is not None:
                    batch, errors = step
                    for item in errors:
                        pending[item.index] = Prediction(
                            item.source, error=str(item.error.reason), error_type=type(item.error).__name__
                        )
                    if batch:
                        self.model.eval()
                        network.submit(batch)
                for done, probs in network.ready(wait=step is None):
                    for item, p in zip(done, probs.tolist()):
                        pending[item.index] = self._prediction(item, p)
                while next_index in pending:
                    yield pending.pop(next_index)
                    next_index += 1

    def predict(
        self, inputs: Iterable[Any], batch_size: int = 128, num_workers: int | None = None
    ) -> list[Prediction]:
        """Classify clips: paths, or ``(waveform, sample_rate)`` pairs.

        Returns one :class:`Prediction` per input, in order. A clip that cannot be read or
        classified gives a Prediction with ``error`` set; it never stops the others.
        """
        return list(self.predict_iter(inputs, batch_size=batch_size, num_workers=num_workers))

    def _prediction(self, item: Item, probs: list[float]) -> Prediction:
        if not all(map(math.isfinite, probs)):
            err = self.non_finite_output(item.source)
            return Prediction(item.source, error=err.reason, error_type=type(err).__name__)
        labels = self.spec.labels
        best = max(range(len(probs)), key=probs.__getitem__)  # the first of equals, as argmax
        return Prediction(item.source, label=labels[best], confidence=probs[best], probabilities=dict(zip(labels, probs)))

    def non_finite_output(self, source: str) -> NonFiniteAudioError:
        """The error for a clip whose samples are finite but whose answer is not: the model's own
        feature or cell computed the NaN or infinity, so the message names them, not the audio."""
        spec = self.spec
        return NonFiniteAudioError(source, f"the network's output is not finite for this clip, although its samples "
                                           f"are: feature {spec.feature!r} or cell {spec.network.cell!r} computed a "
                                           "NaN or infinity from it")

    def inspect(self, audio: Any) -> "Inspection":
        """Look inside the network for one clip: frames, per-frame probabilities, gates.

        See :class:`audioseq.inspection.Inspection`.
        """
        from .inspection import inspect_clip

        return inspect_clip(self, audio)

    def save(self, path: str | os.PathLike) -> None:
        """Write one ``.safetensors`` file: weights plus the JSON description in its metadata."""
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        write_tensors(path, state, self.spec.to_document())

    def num_parameters(self) -> int:
        return self.model.num_parameters()


def _components(spec: ModelSpec) -> tuple[tuple[str, str], ...]:
    """The plugin-given components a model is built from, as (kind, name)."""
    return ("cell", spec.network.cell), ("feature", spec.feature)


def _version_note(spec: ModelSpec) -> str:
    """Where the components the model was made with now come from another version: said beside a
    model that no longer builds, since a changed plugin is the likely cause."""
    notes = []
    for kind, name in _components(spec):
        made = spec.providers.get(kind)
        if not made:  # the file's providers are informative only: other kinds in them say nothing here
            continue
        try:
            now = provider(kind, name)  # type: ignore[arg-type]
        except UnknownComponentError:
            continue
        if made.get("version") and now.get("version") and made["version"] != now["version"]:
            notes.append(f"{kind} {name!r} was made with {made.get('distribution', made.get('plugin'))} "
                         f"{made['version']}, and {now.get('distribution', now['plugin'])} {now['version']} is installed")
    return f" ({'; '.join(notes)})" if notes else ""


def _also_missing(spec: ModelSpec, named: str) -> list[str]:
    """The model's components other than the ``named`` kind that no loaded plugin registers, each
    with where the model says it came from: one error then lists every plugin to install."""
    table = registry()
    out = []
    for kind, name in _components(spec):
        if kind == named or name in table[kind]:
            continue
        made = spec.providers.get(kind) or {}
        source = made.get("distribution") or made.get("plugin")
        out.append(f"{kind} {name!r}" + (f" from {source}" if source else ""))
    return out


def load(
    path_or_name: str | os.PathLike = "digits", device: str | torch.device = "cpu", backend: Backend = "auto"
) -> Classifier:
    """Load a model file, or a bundled model by name (``audioseq.load("digits")``).

    ``backend`` chooses what runs the network for predictions (see :class:`Classifier`).

    Raises:
        ModelFileError: malformed file, config that does not match the weights, non-finite weights.
        UnknownComponentError: the model needs a cell or feature from a plugin that is not installed.
    """
    _check_backend(backend)  # before load's own errors turn a ParameterError into ModelFileError
    path = resolve_model(path_or_name)
    if not os.path.lexists(path):
        ready = ", ".join(sorted(registry()["model"])) or "none installed"
        raise ModelFileError(str(path), f"no such file, nor a ready-trained model of that name (ready-trained: {ready})")
    tensors, document = read_tensors(path)
    name = str(path)
    if document.get("kind") == "checkpoint":
        raise ModelFileError(name, "is a training checkpoint, not a model: run the training command again with "
                                   "--resume to continue it; the model is written when the training ends")
    try:
        spec = ModelSpec.from_document(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(name, f"invalid model description: {exc}") from exc
    try:
        # The shapes the description implies are compared with the file's before any memory is
        # allocated for them: a small file may describe a network of tens of gigabytes.
        _check_weight_shapes(name, spec, tensors)
        model = SequenceClassifier(spec.network)
        classifier = Classifier(spec, model, path=name, backend=backend)
    except UnknownComponentError as exc:  # say what the model was made with, so the message can name it
        raise UnknownComponentError(exc.kind, exc.name, exc.known, spec.providers.get(exc.kind), exc.broken,
                                    _also_missing(spec, exc.kind)) from None
    except (ParameterError, TypeError, ValueError, RuntimeError, MemoryError) as exc:
        raise ModelFileError(name, f"cannot build the network it describes: {exc}{_version_note(spec)}") from exc
    expected = model.state_dict()
    for key, tensor in tensors.items():
        if key in expected and not tensor.is_floating_point():
            raise ModelFileError(name, f"tensor {key!r} has dtype {tensor.dtype}, expected floating point")
    weights = {k: v.float() for k, v in tensors.items()}
    for key in sorted(k for k, v in tensors.items() if v.dtype == torch.float64):  # read_tensors checked the rest
        if not bool(torch.isfinite(weights[key]).all()):  # values beyond float32's range became inf
            raise ModelFileError(name, f"tensor {key!r} holds values that are not finite as float32")
    std = weights.get("norm.std")
    if std is not None and not bool((std > 0).all()):
        raise ModelFileError(name, "tensor 'norm.std' must be positive (the normalisation divides by it)")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(name, f"weights do not match the model description: {exc}") from exc
    return classifier.to(device)


def _check_weight_shapes(name: str, spec: ModelSpec, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse a file whose tensors are not those of the network its description implies, building
    that network on the meta device (no memory for its weights). A plugin cell that cannot be
    built there is checked after the real build, as before."""
    net = spec.network
    if net.num_layers * (2 if net.bidirectional else 1) > len(tensors):
        raise ModelFileError(name, f"the description has {net.num_layers} layers but the file only "
                                   f"{len(tensors)} tensors")
    try:
        with torch.device("meta"):
            skeleton = SequenceClassifier(net)
    except (UnknownComponentError, ParameterError, TypeError, ValueError):
        raise
    except Exception:  # noqa: BLE001 - only this pre-check is skipped
        return
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected == found:
        return
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    parts = [f"missing {', '.join(missing[:5])}" if missing else "",
             f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
             "; ".join(f"{k} is {list(found[k])}, expected {list(expected[k])}" for k in wrong[:5])]
    raise ModelFileError(name, "weights do not match the model description: " + "; ".join(p for p in parts if p))
