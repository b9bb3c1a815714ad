"""Shared fixtures: tiny classifiers, a tiny trained model, the bad-input corpus, the CLI, FSDD."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import soundfile as sf
import torch

from corpus import build_bad_corpus

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd" / "recordings"

# The tiny synthetic setting every training test shares: a few seconds per run on one core.
TINY_DATASET_OPTS = {"per_class": 12}
TINY_TRAIN_ARGS = ["--hidden", "16", "--layers", "1", "--dataset-opt", "per_class=12"]


@pytest.fixture(scope="module")
def one_thread() -> Any:
    """Run torch on one thread: the networks here are tiny, and on a busy machine two threads
    waiting for each other make a small recurrent step a hundred times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- audio ------------------------------------------------------------------------------


def sweep(seconds: float, rate: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A rising tone over quiet noise: (N,) for one channel, else (N, C), float32."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n) / rate
    f0 = 200 + 300 * rng.random()
    tone = 0.4 * np.sin(2 * np.pi * (f0 + 600 * t / max(seconds, 1e-3)) * t)
    wave = tone[:, None] + 0.02 * rng.standard_normal((n, channels))
    wave = wave.astype(np.float32)
    return wave[:, 0] if channels == 1 else wave


def write_wav(path: Path, wave: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, rate, subtype="PCM_16")
    return path


@contextlib.contextmanager
def registered(plugin: object, name: str) -> Iterator[None]:
    """``plugin`` registered as ``name`` for the block, with the component registry rebuilt."""
    from audioseq import plugins

    plugins.pm.register(plugin, name=name)
    plugins.refresh()
    try:
        yield
    finally:
        plugins.pm.unregister(name=name)
        plugins.refresh()


# --- models -----------------------------------------------------------------------------


def tiny_classifier(
    cell: str = "gru",
    pooling: str = "mean",
    bidirectional: bool = False,
    *,
    labels: tuple[str, ...] = ("a", "b", "c"),
    sample_rate: int = 8000,
    hidden_size: int = 8,
    num_layers: int = 2,
    seed: int = 0,
    backend: str = "auto",
) -> Any:
    """An untrained classifier with random (seeded) weights: enough to test plumbing."""
    from audioseq.classifier import Classifier
    from audioseq.model import NetworkConfig
    from audioseq.spec import ModelSpec

    torch.manual_seed(seed)
    network = NetworkConfig(
        input_size=16, num_classes=len(labels), cell=cell, hidden_size=hidden_size,
        num_layers=num_layers, bidirectional=bidirectional, pooling=pooling, dropout=0.0,  # type: ignore[arg-type]
    )
    spec = ModelSpec(labels=list(labels), sample_rate=sample_rate, network=network,
                     feature="logmel", feature_params={"n_mels": 16})
    return Classifier(spec, backend=backend)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def make_classifier() -> Callable[..., Any]:
    return tiny_classifier


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 3-label model saved to disk (8 kHz, log-mel, GRU)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    tiny_classifier().save(path)
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny model trained through the API on ``synthetic`` (two epochs, seconds): a TrainResult."""
    import audioseq
    from audioseq.training import TrainConfig

    out = tmp_path_factory.mktemp("trained") / "synthetic.safetensors"
    data = audioseq.load_dataset("synthetic", None, TINY_DATASET_OPTS)
    config = TrainConfig(hidden_size=16, num_layers=1, epochs=2, seed=1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return audioseq.train(data, config, out=out)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_model_file(trained: Any) -> Path:
    return Path(trained.classifier.path)


# --- inputs -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, type]]:
    """The bad-input corpus (``tests/corpus.py``): case -> (path, expected error class)."""
    return build_bad_corpus(tmp_path_factory.mktemp("bad_audio"))


@pytest.fixture(scope="session")
def good_wavs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three readable clips at different rates, channel counts and lengths."""
    folder = tmp_path_factory.mktemp("good_audio")
    return [
        write_wav(folder / "good_8k.wav", sweep(0.6, 8000, seed=1), 8000),
        write_wav(folder / "good_16k_stereo.wav", sweep(0.9, 16000, seed=2, channels=2), 16000),
        write_wav(folder / "good_44k.wav", sweep(0.4, 44100, seed=3), 44100),
    ]


@pytest.fixture(scope="session")
def fsdd() -> Path:
    """The FSDD recordings folder; skips when it is absent."""
    if not FSDD.is_dir() or not any(FSDD.glob("*.wav")):
        pytest.skip(f"FSDD recordings not found at {FSDD}")
    return FSDD


# --- the command line -------------------------------------------------------------------


def entry_point() -> list[str]:
    script = Path(sys.executable).with_name("audioseq")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from audioseq.cli import main; main()"]


def run_cli(*args: Any, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed ``audioseq`` command; returns the completed process (never raises on status)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")  # see one_thread
    return subprocess.run(
        entry_point() + [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def cli_json(*args: Any, cwd: Path | None = None) -> Any:
    """Run a command that prints JSON and parse it, failing with its stderr otherwise."""
    proc = run_cli(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli
