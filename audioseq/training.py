"""Training a many-to-one recurrent classifier: deterministic, resumable, early-stopped.

Every random draw of epoch e comes from generators seeded with (seed, e), and checkpoints are
written atomically at the end of each epoch, so a run killed at any point and resumed with
``resume=True`` ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .audio import AudioLimits, audio_info
from .augment import Augment
from .classifier import Classifier, load
from .dataset import Dataset, Example, stratified_split
from .errors import AudioError, EvaluationError, ModelFileError, ParameterError, PluginError
from .metrics import summarize
from .model import NetworkConfig, Pooling, SequenceClassifier, length_mask
from .modelfile import read_tensors, write_tensors
from .pipeline import Frontend, iter_items
from .plugins import build, origin, resolved_params
from .preprocess import Preprocess
from .spec import ModelSpec, check_label_text

Callback = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class TrainConfig:
    """Everything that decides a training run. The defaults train a good model."""

    feature: str = "mfcc"  # measured: 99.6% vs 97.6% for logmel on FSDD's official split
    feature_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    cell: str = "lstm"  # measured: 99.6% on seeds 0-3 (BENCHMARKS.md), epochs 2.7x faster than the GRU's on CPU
    cell_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    hidden_size: int = 48  # with 2 bidirectional layers on 13 MFCCs: 86k parameters
    num_layers: int = 2
    bidirectional: bool = True
    pooling: Pooling = "attention"
    dropout: float = 0.15
    utterance_norm: bool = True
    sample_rate: int | None = None  # None: the most common rate of the training clips
    preprocess: Preprocess = dataclasses.field(default_factory=Preprocess)
    augment: Augment | None = dataclasses.field(default_factory=Augment)
    epochs: int = 40  # upper bound; early stopping usually ends sooner
    patience: int = 10  # epochs without validation improvement before stopping
    batch_size: int = 32
    lr: float = 5e-3  # peak learning rate (AdamW), after one warm-up epoch, cosine decay
    weight_decay: float = 1e-2
    label_smoothing: float = 0.05
    grad_clip: float = 1.0  # clip the gradient norm: recurrent nets can explode
    valid_fraction: float = 0.15  # when the dataset gives no validation split
    seed: int = 0
    device: str = "auto"
    max_seconds: float = 600.0

    def __post_init__(self) -> None:
        """Refuse settings that cannot train, before any clip is read (ParameterError naming them)."""
        for name in ("hidden_size", "num_layers", "epochs", "patience", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be an integer ≥ 1, got {value!r}")
        if self.sample_rate is not None and (isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int)
                                             or self.sample_rate < 1):
            raise ParameterError(f"sample_rate must be None (the data's) or an integer ≥ 1 Hz, got {self.sample_rate!r}")
        for name in ("max_seconds", "grad_clip"):
            if not getattr(self, name) > 0:  # also refuses NaN
                raise ParameterError(f"{name} must be above 0, got {getattr(self, name)!r}")
        for name in ("lr", "weight_decay"):  # lr 0 leaves the weights where they start
            if not getattr(self, name) >= 0:
                raise ParameterError(f"{name} must be ≥ 0, got {getattr(self, name)!r}")
        for name in ("dropout", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise ParameterError(f"{name} must be ≥ 0 and below 1, got {getattr(self, name)!r}")
        if not 0 < self.valid_fraction < 1:
            raise ParameterError(f"valid_fraction must be above 0 and below 1, got {self.valid_fraction!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["preprocess"] = self.preprocess.to_dict()
        data["augment"] = self.augment.to_dict() if self.augment else None
        return data


FINE_TUNE_LR = 1e-3
"""Learning rate suggested for fine-tuning (``init``): adapting to two unseen FSDD speakers,
3e-3 cost the other speakers more for little gain (BENCHMARKS.md)."""


def config_from_model(model: Classifier, config: TrainConfig) -> TrainConfig:
    """``config`` with everything the weights depend on taken from ``model``: features,
    network, preprocessing, sample rate and clip length limit. The rest (epochs, learning
    rate, augmentation, seed, ...) stays as given."""
    spec, net = model.spec, model.spec.network
    return dataclasses.replace(
        config, feature=spec.feature, feature_params=dict(spec.feature_params), cell=net.cell,
        cell_params=dict(net.cell_params), hidden_size=net.hidden_size, num_layers=net.num_layers,
        bidirectional=net.bidirectional, pooling=net.pooling, dropout=net.dropout,
        utterance_norm=net.utterance_norm, sample_rate=spec.sample_rate, preprocess=spec.preprocess,
        max_seconds=spec.max_seconds,
    )


@dataclasses.dataclass
class TrainResult:
    classifier: Classifier
    history: list[dict[str, Any]]
    metrics: dict[str, Any]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def detect_sample_rate(examples: Sequence[Example]) -> int:
    """The most common rate among (up to 200 of) the examples."""
    rates: collections.Counter[int] = collections.Counter()
    for ex in examples[:: max(1, len(examples) // 200)]:
        if isinstance(ex.audio, tuple):
            rates[int(ex.audio[1])] += 1
        else:
            try:
                rates[audio_info(ex.audio).sample_rate] += 1
            except AudioError:
                continue
    if not rates:
        raise ValueError("cannot tell the sample rate: no readable training clip")
    rate = rates.most_common(1)[0][0]
    lower = sorted(r for r in rates if r < rate)
    if lower:
        seen = ", ".join(f"{r} Hz: {n}" for r, n in sorted(rates.items()))
        warnings.warn(
            f"training clips come at several sample rates ({seen} of those sampled); the model takes "
            f"the most common, {rate} Hz, so clips at {', '.join(map(str, lower))} Hz are upsampled and hold "
            "nothing above half their rate. Set the rate (--sample-rate) to choose.",
            stacklevel=3,
        )
    return rate


SKIPPED_LISTED = 1000  # clips left out of training listed by name in the metrics; the rest are counted


def _decode(
    examples: Sequence[Example], frontend: Frontend, desc: str
) -> tuple[list[torch.Tensor], list[int], list[dict[str, str]]]:
    """Decode clips once (in worker processes); returns waveforms, the indices kept, and each
    clip left out as ``{"source", "error_type", "error"}``."""
    waves, kept, bad = [], [], []
    items = iter_items([ex.audio for ex in examples], frontend, names=[ex.source for ex in examples])
    for item in tqdm(items, total=len(examples), desc=desc, leave=False, disable=None):
        if item.error is not None:
            bad.append({"source": item.source, "error_type": type(item.error).__name__,
                        "error": getattr(item.error, "reason", str(item.error))})
            continue
        waves.append(item.waveform)
        kept.append(item.index)
    if bad:
        kinds = collections.Counter(b["error_type"] for b in bad)
        warnings.warn(f"{desc}: left out {len(bad)} clip(s) that cannot be used ("
                      + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
                      + f"), e.g. {bad[0]['source']}: {bad[0]['error']}; all are listed under 'skipped' in the "
                      "metrics", stacklevel=4)
    return waves, kept, bad


def history_as_json(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training history rows as JSON holds them: a value that is not finite (NaN when no validation
    clip could be read) becomes null, which every JSON reader accepts."""
    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()} for row in history]


class _WaveFrontend(Frontend):
    """Decodes and preprocesses clips in the workers, as prediction does, but returns waveforms:
    frames are made per batch, after augmentation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_workers = False


def _fingerprint(
    config: TrainConfig,
    labels: list[str],
    train: Sequence[Example],
    valid: Sequence[Example],
    init_state: dict[str, torch.Tensor] | None = None,
) -> str:
    h = hashlib.sha256(json.dumps(_resume_settings(config), sort_keys=True, default=str).encode())
    h.update(json.dumps(labels).encode())
    for key, tensor in sorted((init_state or {}).items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for ex in list(train) + ["|"] + list(valid):  # type: ignore[operator]
        h.update(_where(ex).encode("utf-8", "surrogateescape"))  # a file name need not be UTF-8
        if isinstance(ex, Example) and isinstance(ex.audio, tuple):  # in memory: its name says nothing of it
            samples, rate = ex.audio
            array = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
            h.update(f"{array.dtype}{array.shape}{int(rate)}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def _resume_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the one it continues: all but the device,
    which changes where the same computation runs, not what it computes."""
    return {k: v for k, v in config.to_dict().items() if k != "device"}


def _where(ex: Example | str) -> str:
    """A clip as the fingerprint knows it: a file by its absolute path, however it was spelled."""
    if not isinstance(ex, Example):
        return ex
    if isinstance(ex.audio, (str, os.PathLike)):
        return os.path.realpath(ex.audio)
    return ex.source


class Trainer:
    """Trains one model; knows the network only through its forward and state_dict."""

    def __init__(
        self,
        config: TrainConfig,
        labels: list[str],
        train: Sequence[Example],
        valid: Sequence[Example],
        init_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """``init_state``: weights (and normalisation) to start from instead of random ones."""
        self.config = config
        self.labels = labels
        self.train_examples = list(train)
        self.valid_examples = list(valid)
        self.device = pick_device(config.device)
        self.sample_rate = config.sample_rate or detect_sample_rate(self.train_examples)
        torch.manual_seed(config.seed)
        feature = build("feature", config.feature, self.sample_rate, params=config.feature_params)
        limits = AudioLimits(max_seconds=config.max_seconds)
        self.frontend = Frontend(feature, self.sample_rate, config.preprocess, limits).to(self.device)
        # What of the preprocessing runs again after augmentation: the workers have filtered the clips and cut
        # them to the noise floor once already, and a second pass of either would not be what prediction does.
        self._again = dataclasses.replace(config.preprocess, highpass_hz=0.0, floor_db=None)
        self.network = NetworkConfig(
            input_size=feature.dim,
            num_classes=len(labels),
            cell=config.cell,
            cell_params=resolved_params("cell", config.cell, config.cell_params),
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            pooling=config.pooling,
            dropout=config.dropout,
            utterance_norm=config.utterance_norm,
        )
        self.model = SequenceClassifier(self.network).to(self.device)
        if init_state is not None:
            self.model.load_state_dict(init_state)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.fingerprint = _fingerprint(config, labels, self.train_examples, self.valid_examples, init_state)
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_key: tuple[float, ...] | None = None
        self.best_epoch = -1
        self.epoch = 0  # epochs completed

    # -- data -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        raw = _WaveFrontend(self.frontend.feature, self.sample_rate, self.config.preprocess, self.frontend.limits)
        index = {label: i for i, label in enumerate(self.labels)}
        self.train_waves, kept, bad = _decode(self.train_examples, raw, "decoding training clips")
        self.train_targets = torch.tensor([index[self.train_examples[i].label] for i in kept])
        valid_waves, kept_v, bad_v = _decode(self.valid_examples, raw, "decoding validation clips")
        self.skipped = bad + bad_v
        self.valid_targets = torch.tensor([index[self.valid_examples[i].label] for i in kept_v], dtype=torch.long)
        if not self.train_waves:
            raise ValueError("no readable training clips")
        self.valid_waves = [self._clean(w) for w in valid_waves]

    def _clean(self, wave: torch.Tensor) -> torch.Tensor:
        """A preprocessed clip, after augmentation, as prediction would read it: trimmed and levelled
        again (augmentation pads, adds noise and changes the gain), padded to one frame at least."""
        wave = self._again(wave, self.sample_rate)
        short = self.frontend.min_samples - wave.numel()
        return F.pad(wave, (0, short)) if short > 0 else wave

    def _frames(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            frames, lengths = self.frontend(waves)
        return frames.to(self.device), lengths.to(self.device)

    def fit_normalisation(self) -> None:
        """Per-dimension mean and std of the (utterance-normalised) clean training frames."""
        total, total_sq, count = 0.0, 0.0, 0
        bs = 256
        for i in range(0, len(self.train_waves), bs):
            frames, lengths = self._frames([self._clean(w) for w in self.train_waves[i : i + bs]])
            mask = length_mask(lengths, frames.shape[1]).unsqueeze(-1).to(frames.dtype)
            if self.network.utterance_norm:
                frames = frames - (frames * mask).sum(1, keepdim=True) / lengths.view(-1, 1, 1).clamp(min=1)
            total = total + (frames * mask).sum((0, 1)).double()
            total_sq = total_sq + (frames.pow(2) * mask).sum((0, 1)).double()
            count += int(lengths.sum())
        mean = total / count
        std = (total_sq / count - mean.pow(2)).clamp(min=1e-6).sqrt()
        self.model.norm.mean.copy_(mean.float())
        self.model.norm.std.copy_(std.float().clamp(min=1e-3))

    # -- loop -------------------------------------------------------------------------------
    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        warmup = steps_per_epoch
        total = max(self.config.epochs * steps_per_epoch, warmup + 1)
        if step < warmup:
            return self.config.lr * (step + 1) / warmup
        progress = (step - warmup) / (total - warmup)
        return self.config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def batches(self, g: torch.Generator) -> list[list[int]]:
        """Shuffled batches of clips of similar length (less padding, fewer recurrent steps).

        The order is shuffled, cut into pools of 8 batches, each pool sorted by length and cut
        into batches, and the batches shuffled again.
        """
        bs = self.config.batch_size
        order = torch.randperm(len(self.train_waves), generator=g).tolist()
        pool = bs * 8
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: self.train_waves[i].numel())
            batches += [chunk[i : i + bs] for i in range(0, len(chunk), bs)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def train_epoch(self, epoch: int) -> float:
        cfg = self.config
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        torch.manual_seed(cfg.seed * 7_919 + epoch)  # dropout
        self.model.train()
        batches = self.batches(g)
        steps = len(batches)
        losses = []
        for s, idx in enumerate(batches):
            waves = [self.train_waves[i] for i in idx]
            if cfg.augment:
                waves = cfg.augment.waveforms(waves, self.sample_rate, g)
            clean = [self._clean(w) for w in waves]
            frames, frame_lengths = self._frames(clean)
            x = self.model.normalise(frames, frame_lengths)
            lengths = frame_lengths
            if cfg.augment:
                x, lengths = cfg.augment.frames(x, lengths.cpu(), g)
                x, lengths = x.to(self.device), lengths.to(self.device)
            logits = self.model.classify(x, lengths)
            loss = self.loss(logits, self.train_targets[idx].to(self.device), clean)
            if not bool(torch.isfinite(loss)):
                self._non_finite(frames, frame_lengths, x, lengths, epoch, s)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(epoch * steps + s, steps)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return sum(losses) / max(1, len(losses))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, waves: list[torch.Tensor]) -> torch.Tensor:
        """The training loss of one batch: logits (B, C) for the clips ``waves`` (each (N_i,), as
        augmented and preprocessed again) of classes ``targets`` (B,). Cross-entropy with label
        smoothing; a subclass may add to it (``benchmarks/fsdd_distill.py`` adds a teacher's)."""
        return F.cross_entropy(logits, targets, label_smoothing=self.config.label_smoothing)

    @torch.no_grad()
    def _non_finite(self, frames: torch.Tensor, frame_lengths: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor,
                    epoch: int, step: int) -> None:
        """Stop a training whose loss is NaN or infinite, naming the component that made it so:
        frames (B, T, F) with their lengths as the feature gave them; x, lengths as the network read them."""
        where = f"the training loss is not finite at epoch {epoch + 1}, batch {step + 1}"
        if not bool(torch.isfinite(frames[length_mask(frame_lengths.to(frames.device), frames.shape[1])]).all()):
            raise PluginError(f"{where}: {origin(self.frontend.feature)} gave non-finite frames "
                              "(audioseq.testing.check_feature checks every rule of the contract)")
        outputs = self.model.encoder(x, lengths)
        if not bool(torch.isfinite(outputs).all()):
            raise PluginError(f"{where}: {origin(self.model.encoder.layers[0][0])} gave non-finite outputs from "
                              "finite frames (audioseq.testing.check_cell checks every rule of the contract)")
        raise ValueError(f"{where}: the network diverged; lower --lr")

    @torch.no_grad()
    def evaluate_waves(self, waves: list[torch.Tensor], targets: torch.Tensor) -> dict[str, Any]:
        self.model.eval()
        preds, loss_sum = [], 0.0
        for i in range(0, len(waves), 128):
            frames, lengths = self._frames(waves[i : i + 128])
            logits = self.model(frames, lengths)
            loss_sum += float(F.cross_entropy(logits, targets[i : i + 128].to(self.device), reduction="sum"))
            preds += logits.argmax(-1).cpu().tolist()
        result = summarize(targets.tolist(), preds, self.labels)
        result["loss"] = loss_sum / max(1, len(waves))
        return result

    def fit(self, checkpoint: Path | None = None, callback: Callback | None = None) -> list[dict[str, Any]]:
        cfg = self.config
        with tqdm(total=cfg.epochs, initial=self.epoch, desc="training", unit="epoch", disable=None) as bar:
            while self.epoch < cfg.epochs and not self.should_stop():
                e = self.epoch
                train_loss = self.train_epoch(e)
                if len(self.valid_waves):
                    val = self.evaluate_waves(self.valid_waves, self.valid_targets)
                else:
                    val = {"accuracy": float("nan"), "loss": train_loss, "macro_f1": float("nan")}
                row = {"epoch": e + 1, "train_loss": train_loss, "valid_loss": val["loss"],
                       "valid_accuracy": val["accuracy"], "valid_macro_f1": val["macro_f1"]}
                # Macro-F1 first: on imbalanced data an epoch that always answers the common class can
                # have the best accuracy; on balanced data the two agree.
                key = ((val["macro_f1"], val["accuracy"]) if len(self.valid_waves) else (0.0, 0.0)) + (-val["loss"],)
                if self.best_key is None or key > self.best_key:
                    self.best_key, self.best_epoch = key, e + 1
                    self.best_state = copy.deepcopy(self.model.state_dict())
                self.history.append(row)
                self.epoch = e + 1
                if checkpoint is not None:
                    self.save_checkpoint(checkpoint)
                bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val['accuracy']:.3f}")
                bar.update(1)
                if callback is not None:
                    callback(dict(row))
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.history

    def should_stop(self) -> bool:
        return self.best_epoch > 0 and self.epoch - self.best_epoch >= self.config.patience

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, path: Path) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        opt = self.optimizer.state_dict()
        for pid, state in opt["state"].items():
            for name, value in state.items():
                tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value, dtype=torch.float32).reshape(-1) if name == "step" else value
        document = {
            "kind": "checkpoint",
            "fingerprint": self.fingerprint,
            "epoch": self.epoch,
            # NaN (no validation clip could be read) is not JSON: stored as null, read back as NaN.
            "history": history_as_json(self.history),
            "best_epoch": self.best_epoch,
            "best_key": list(self.best_key) if self.best_key else None,
            "param_groups": opt["param_groups"],
            "sample_rate": self.sample_rate,
            "settings": _resume_settings(self.config),
            "clips": [len(self.train_examples), len(self.valid_examples)],
        }
        write_tensors(path, tensors, document)

    def load_checkpoint(self, path: Path) -> None:
        """Continue from a checkpoint; one that is damaged, tampered with or from another version
        raises ``ModelFileError`` naming it, and leaves this trainer as it was."""
        model_state = copy.deepcopy(self.model.state_dict())
        optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        best_state = self.best_state
        try:
            self._load_checkpoint(path)
        except (ModelFileError, _RefusedCheckpoint):
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
            self.best_state = best_state
            raise ModelFileError(str(path), f"cannot resume from this checkpoint (damaged, edited, or written by "
                                            f"another audioseq version): {type(exc).__name__}: {exc}; remove it "
                                            "or train without --resume") from exc

    def _load_checkpoint(self, path: Path) -> None:
        tensors, doc = read_tensors(path)
        if doc.get("kind") != "checkpoint":
            raise _RefusedCheckpoint(f"{path} is not a training checkpoint; remove it or train without --resume")
        if doc.get("fingerprint") != self.fingerprint:
            raise _RefusedCheckpoint(f"{path} was written by a training run with other {self._difference(doc)}; "
                             "remove it or train without --resume")
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_state = best or None
        state: dict[int, dict[str, torch.Tensor]] = collections.defaultdict(dict)
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, name = k.split(".", 2)
                state[int(pid)][name] = v.reshape(()) if name == "step" else v
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for pid, values in state.items():
            for name, value in values.items():
                if name != "step" and (not 0 <= pid < len(params) or value.shape != params[pid].shape):
                    raise ValueError(f"optimiser state optim.{pid}.{name} has shape {list(value.shape)}, "
                                     "not that of its parameter")
        # The hyperparameters are this run's (the fingerprint says they are the checkpoint's too; the
        # learning rate is set before every step): only the per-parameter state comes from the file.
        self.optimizer.load_state_dict({"state": dict(state), "param_groups": self.optimizer.state_dict()["param_groups"]})
        counters = doc["epoch"], doc["best_epoch"]
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counters) or not (
                0 <= doc["best_epoch"] <= doc["epoch"] <= self.config.epochs):
            raise ValueError(f"epoch {doc['epoch']!r} and best_epoch {doc['best_epoch']!r} are not counts of "
                             f"epochs run (0 ≤ best_epoch ≤ epoch ≤ {self.config.epochs})")
        steps = [v for k, v in tensors.items() if k.startswith("optim.") and k.endswith(".step")]
        if any(not bool((v >= 0).all()) or v.numel() != 1 for v in steps):
            raise ValueError("an optimiser step counter is negative or not a single number")
        if (not isinstance(doc["history"], list) or len(doc["history"]) != doc["epoch"]
                or not all(isinstance(row, dict) for row in doc["history"])):
            raise ValueError("history must list one row (an object) per epoch run")
        if doc.get("best_key") is not None and not (
                isinstance(doc["best_key"], list) and all(isinstance(x, (int, float)) for x in doc["best_key"])):
            raise ValueError("best_key must be a list of numbers")
        self.epoch = int(doc["epoch"])
        self.history = [{k: float("nan") if v is None else v for k, v in row.items()} for row in doc["history"]]
        self.best_epoch = int(doc["best_epoch"])
        self.best_key = tuple(doc["best_key"]) if doc.get("best_key") else None  # type: ignore[assignment]

    def _difference(self, doc: dict[str, Any]) -> str:
        """What differs between this run and the checkpoint's, in words: the settings by name, else the data."""
        theirs = doc.get("settings")
        ours = json.loads(json.dumps(_resume_settings(self.config), default=str))  # as stored: tuples are lists
        if isinstance(theirs, dict):
            changed = sorted(k for k in set(theirs) | set(ours) if json.dumps(theirs.get(k), sort_keys=True)
                             != json.dumps(ours.get(k), sort_keys=True))
            if changed:
                return "settings (" + ", ".join(
                    f"{k}: {theirs.get(k)!r} then, {ours.get(k)!r} now" for k in changed) + ")"
            clips = doc.get("clips")
            if clips and list(clips) != [len(self.train_examples), len(self.valid_examples)]:
                return (f"data ({clips[0]} training and {clips[1]} validation clips then, {len(self.train_examples)} "
                        f"and {len(self.valid_examples)} now)")
            return "data (other clips, labels or starting weights)"
        return "data or settings"


def _check_labels(labels: Sequence[Any], examples: Sequence[Example]) -> None:
    """Refuse labels a model file could not hold (not text, control characters, not Unicode) and
    fewer than two; warn of labels that differ only in case or spaces."""
    not_text = [label for label in labels if not isinstance(label, str)] + [
        ex.label for ex in examples if not isinstance(ex.label, str)]
    if not_text:
        raise ValueError(f"labels must be strings (they name the classes in the model file), got "
                         f"{not_text[0]!r} ({type(not_text[0]).__name__})")
    check_label_text(labels)  # before training, not when the model file is written
    if len(labels) < 2:
        raise ValueError(f"training needs at least 2 labels, got {labels}")
    spelled = collections.defaultdict(list)
    for label in labels:
        spelled[" ".join(label.split()).casefold()].append(label)
    if alike := [group for group in spelled.values() if len(group) > 1]:
        warnings.warn("labels that differ only in case or spaces are separate classes: "
                      + "; ".join(" and ".join(map(repr, group)) for group in alike), stacklevel=3)


class _RefusedCheckpoint(ValueError):
    """Not a checkpoint, or another run's: its message says what to do."""


def checkpoint_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".ckpt.safetensors")


def metrics_file(out: str | os.PathLike) -> Path:
    """Where ``audioseq train`` writes a model's metrics: ``m.safetensors`` → ``m.metrics.json``,
    and any other name gains the suffix (``m.v1`` → ``m.v1.metrics.json``, not ``m.metrics.json``)."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".safetensors") + ".metrics.json")


def train(
    data: Dataset | Sequence[Example],
    config: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    callback: Callback | None = None,
    labels: Sequence[str] | None = None,
    init: Classifier | str | os.PathLike | None = None,
) -> TrainResult:
    """Train a classifier on a dataset (or a list of examples) and optionally save it.

    With ``init`` (a classifier, a model file or a bundled model's name), training starts from
    that model's weights instead of random ones — fine-tuning it, e.g. to a new voice or
    microphone from a few recordings. Its labels, features, network, preprocessing and
    normalisation are kept (the matching ``config`` fields are ignored, see
    :func:`config_from_model`); the data may hold any of its labels, and no other.

    Trains on the examples whose split is ``train`` or None and validates on those marked
    ``valid``; without any, a stratified validation split is drawn from the training examples,
    grouped by ``Example.group`` (whole speakers held out) unless the test split shares its
    groups with training, in which case validation imitates that. ``test`` examples are scored
    after training (``metrics["test"]``). Every label must have a readable training clip,
    except when fine-tuning (``init``). With ``out``, a checkpoint is written
    atomically after every epoch next to it; ``resume=True`` continues from it. ``callback``
    receives one dict per epoch (epoch, losses, validation accuracy).
    """
    config = config or TrainConfig()
    if resume and out is None:
        raise ValueError("resume=True needs out: the checkpoint it continues lies beside the model file")
    examples = list(data.examples()) if hasattr(data, "examples") else list(data)
    base: Classifier | None = None
    if init is not None:
        base = init if isinstance(init, Classifier) else load(init)
        config = config_from_model(base, config)
        unknown = sorted({ex.label for ex in examples} - set(base.labels))
        if unknown:
            raise ValueError(
                f"the data has labels the model to start from does not know: {', '.join(unknown)}; "
                f"it knows {', '.join(base.labels)}"
            )
        if labels is not None and list(labels) != base.labels:
            raise ValueError(f"labels {list(labels)} differ from those of the model to start from, {base.labels}")
        labels = base.labels
    labels = list(labels or getattr(data, "labels", None) or sorted({ex.label for ex in examples}, key=str))
    _check_labels(labels, examples)
    train_ex = [ex for ex in examples if ex.split in (None, "train")]
    valid_ex = [ex for ex in examples if ex.split == "valid"]
    test_ex = [ex for ex in examples if ex.split == "test"]
    # Validation should look like the test: hold whole groups (speakers) out only when the test
    # split has none of the training groups, or when there is no test split to imitate.
    test_groups = {ex.group for ex in test_ex if ex.group is not None}
    seen_groups = {ex.group for ex in examples if ex.split != "test" and ex.group is not None}
    by_group = not test_ex or not (test_groups & seen_groups)
    if not train_ex:
        raise ValueError(f"no training examples: all {len(examples)} are marked valid or test"
                         if examples else "no examples to train on")
    if not valid_ex:
        train_ex, valid_ex = stratified_split(train_ex, config.valid_fraction, config.seed, by_group)
    init_state = base.model.state_dict() if base else None  # the Trainer copies it into its own model
    trainer = Trainer(config, labels, train_ex, valid_ex, init_state)
    trainer.prepare_data()
    if base is None:  # a class the network never saw a clip of would still get a share of every answer
        unseen = [label for i, label in enumerate(labels) if not bool((trainer.train_targets == i).any())]
        if unseen:
            raise ValueError(f"no readable training clip of {', '.join(map(repr, unseen))}: the model would have "
                             "classes it never learned; give each label training clips, or leave it out")
    ckpt = checkpoint_path(out) if out is not None else None
    resumed_after = None
    if resume and ckpt is not None and ckpt.exists():
        trainer.load_checkpoint(ckpt)
        resumed_after = trainer.epoch
    elif base is None:  # a model to start from keeps the statistics its weights were trained with
        trainer.fit_normalisation()
    history = trainer.fit(ckpt, callback)
    valid_metrics = trainer.evaluate_waves(trainer.valid_waves, trainer.valid_targets) if trainer.valid_waves else {}
    metrics: dict[str, Any] = {
        "best_epoch": trainer.best_epoch,
        "epochs_run": trainer.epoch,
        "resumed_after_epoch": resumed_after,  # None: not resumed
        "train_clips": len(trainer.train_waves),
        # Clips left out of training and validation, with why; the model file's header holds the metrics, so
        # a folder of a million broken files is listed by its first thousand and counted.
        "skipped": trainer.skipped[:SKIPPED_LISTED],
        "skipped_count": len(trainer.skipped),
        "valid": valid_metrics,
        "recipe": config.to_dict(),
    }
    if base is not None:
        metrics["init"] = base.path or "<in memory>"  # the model training started from
    spec = ModelSpec(
        labels=labels,
        sample_rate=trainer.sample_rate,
        network=trainer.network,
        feature=config.feature,
        feature_params=resolved_params("feature", config.feature, config.feature_params),
        preprocess=config.preprocess,
        max_seconds=config.max_seconds,
        metrics=metrics,
    )
    classifier = Classifier(spec, trainer.model.cpu(), path=str(out) if out else None)
    if test_ex:
        from .evaluation import evaluate

        try:
            metrics["test"] = evaluate(classifier, test_ex)
        except EvaluationError as exc:  # the trained model is kept: the test split is what is wrong
            metrics["test_error"] = str(exc)
            warnings.warn(f"the test split could not be scored, so the model has no test metrics: {exc}",
                          stacklevel=2)
    if out is not None:
        classifier.save(out)
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()
    return TrainResult(classifier, history, metrics)
