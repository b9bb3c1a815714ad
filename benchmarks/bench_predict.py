"""Batch prediction and feature extraction throughput against a naive per-file pipeline.

Both pipelines run in this process on the same clips with the same network (the bundled
digits model, or the one ``--model`` names). The naive one is what one writes first:
librosa.load, librosa's log-mel, one forward pass per clip. Prints a markdown table of clips/s and the ratios.

Every time is the best of three runs. Prediction is timed with each backend that can run the
network (torch, and onnxruntime when installed); the naive pipeline always runs torch. Also
prints the network's own throughput on the batches prediction makes (frames already computed):
no decoding or feature speed-up can take batch prediction past it; and the time to classify
one clip at a time (``clf.predict(path)`` per file).

Usage: python benchmarks/bench_predict.py [--clips N] [--model FILE_OR_NAME]
"""

from __future__ import annotations

import argparse
import inspect

import librosa
import numpy as np
import torch

import audioseq
from audioseq.classifier import _NetworkRunner
from audioseq.default_plugins.embedding import LAYERS, RATE, SpeechEmbeddingLite
from audioseq.export import onnxruntime_available
from audioseq.pipeline import Item, iter_batches

from common import fsdd_files, model_path, timed

PREDICT_BATCH = inspect.signature(audioseq.Classifier.predict).parameters["batch_size"].default


def naive_predict(clf: audioseq.Classifier, files: list[str]) -> list[str]:
    feat = clf.frontend.feature
    out = []
    for f in files:
        y, _ = librosa.load(f, sr=clf.sample_rate)
        y, _ = librosa.effects.trim(y, top_db=clf.spec.preprocess.trim_db)
        y = y / max(float(np.sqrt(np.mean(y**2))), 1e-8) * 10 ** (clf.spec.preprocess.target_db / 20)
        frames = naive_features(y, clf.sample_rate, feat)
        with torch.no_grad():
            x = torch.from_numpy(frames).unsqueeze(0)
            logits = clf.model(x, torch.tensor([x.shape[1]]))
        out.append(clf.labels[int(logits.argmax())])
    return out


def naive_features(y: np.ndarray, sr: int, feat: torch.nn.Module) -> np.ndarray:
    """The model's features (log-mel, or MFCC as the DCT of log-mel) computed with librosa; for
    speech-embedding-lite, its network over librosa's log-mel of the clip in its silence."""
    if isinstance(feat, SpeechEmbeddingLite):
        y = librosa.resample(y, orig_sr=sr, target_sr=RATE) if sr != RATE else y
        y = np.pad(y, feat.pad_samples)
        frames = naive_features(y, RATE, feat.logmel)
        x = (torch.from_numpy(frames) - feat.in_mean) / feat.in_std  # (T, 32)
        with torch.no_grad():
            x = x.T[None]
            for i, (_, pool) in enumerate(LAYERS):
                x = torch.relu(torch.conv1d(x, getattr(feat, f"conv{i}_weight"), getattr(feat, f"conv{i}_bias")))
                x = torch.max_pool1d(x, 2) if pool else x
            return torch.conv1d(x, feat.head_weight, feat.head_bias)[0].T.numpy()
    mel_fb = feat.mel.mel_scale
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=feat.n_fft, win_length=feat.win_length, hop_length=feat.hop_length,
        n_mels=mel_fb.n_mels, fmin=mel_fb.f_min, center=False, power=2.0,
    )
    log_mel = np.log(np.maximum(mel, 1e-10))
    if hasattr(feat, "dct"):
        return librosa.feature.mfcc(S=log_mel, n_mfcc=feat.dim, norm="ortho").T.astype(np.float32)
    return log_mel.T.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=2500)
    parser.add_argument("--model", default=None, help="a model file or name (default: the bundled digits)")
    args = parser.parse_args()
    files = fsdd_files()[: args.clips]
    backends = ["torch"] + (["onnxruntime"] if onnxruntime_available() else [])
    classifiers = {b: audioseq.load(args.model or model_path(), backend=b) for b in backends}
    clf = classifiers["torch"]
    for c in classifiers.values():
        c.predict(files[:64])  # warm-up every path
    naive_predict(clf, files[:16])

    t_fast, preds = {}, {}
    for b, c in classifiers.items():
        t_fast[b], preds[b] = timed(c.predict, files)
    t_naive, naive = timed(naive_predict, clf, files)
    agree = {b: np.mean([p.label == n for p, n in zip(preds[b], naive)]) for b in backends}

    waves = [clf.frontend.prepare(f) for f in files]
    feat = clf.frontend.feature

    # The batches Classifier.predict makes: its default batch size; with torch, each window of
    # 8 batches sorted by length; with onnxruntime, batches in input order (its network sorts).
    items = [Item(i, f, waveform=w) for i, (f, w) in enumerate(zip(files, waves))]

    def predict_batches(c: audioseq.Classifier) -> list[list[torch.Tensor]]:
        window = _NetworkRunner(c).window
        return [[it.waveform for it in good] for good, _ in iter_batches(iter(items), PREDICT_BATCH, window)]

    batches = predict_batches(clf)

    def batched() -> None:
        for batch in batches:
            with torch.no_grad():
                clf.frontend(batch)  # padding and features, as prediction computes them

    def per_clip_librosa() -> None:
        for w in waves:
            naive_features(w.numpy(), clf.sample_rate, feat)

    inputs = {b: [c.frontend(batch) for batch in predict_batches(c)] for b, c in classifiers.items()}

    def network_only(c: audioseq.Classifier) -> None:
        for frames, lengths in inputs[c.runtime]:  # (B, T, F), (B,) per batch
            c.probabilities(frames, lengths)

    singles = files[:200]

    def one_at_a_time(c: audioseq.Classifier) -> None:
        for f in singles:
            c.predict(f)

    t_single = {b: timed(one_at_a_time, c)[0] for b, c in classifiers.items()}
    t_feat, _ = timed(batched)
    t_feat_naive, _ = timed(per_clip_librosa)
    t_net = {b: timed(network_only, c)[0] for b, c in classifiers.items()}
    n = len(files)
    print(f"| what | audioseq | naive per-file | ratio |\n|---|---|---|---|")
    for b in backends:
        print(f"| predict {n} FSDD clips, {b} backend (clips/s) | {n / t_fast[b]:,.0f} | {n / t_naive:,.0f} | {t_naive / t_fast[b]:.1f}x |")
    print(f"| {clf.spec.feature} features only, batched torchaudio vs per-clip librosa (clips/s) | {n / t_feat:,.0f} | {n / t_feat_naive:,.0f} | {t_feat_naive / t_feat:.1f}x |")
    for b in backends:
        print(f"| the network alone on the same batches, frames ready, {b} (clips/s) | {n / t_net[b]:,.0f} | | {t_naive / t_net[b]:.1f}x |")
    for b in backends:
        print(f"| one clip at a time, {b} (ms a clip, {len(singles)} files) | {t_single[b] / len(singles) * 1e3:.2f} | | |")
    print(f"\nlabels agreeing with the naive pipeline: "
          + ", ".join(f"{b} {agree[b]:.4f}" for b in backends) + f"; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
