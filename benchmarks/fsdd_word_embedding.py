"""Leave-one-speaker-out on FSDD with a second representation learned from many speakers.

``fsdd_pretrained_embedding.py`` measures Google's speech_embedding, which the bundled
``digits`` model's feature was distilled from. This script measures another: EfficientWord-Net's
word embedding, a ResNet-50 trained with an ArcFace loss to tell spoken words apart across
speakers (2,048 values for a 1.5 s window of 64 log-mel bands at 16 kHz; Apache-2.0), in the
ONNX form the ``efficientword-net`` package ships. Not an audioseq dependency; its own
dependencies include PyAudio, which needs PortAudio to build, and none of them is needed here:

    pip install --no-deps "efficientword-net==1.0.5"
    pip install "openwakeword==0.4.0"         # for the speech_embedding rows
    python benchmarks/fsdd_word_embedding.py [--extra-train DIR] [--out results.json]

Each clip is read at 8 kHz and preprocessed as the bundled model's are (trimmed, RMS level),
resampled to 16 kHz and centred in the 1.5 s window with zeros (as the package pads its
reference clips; a longer clip keeps its middle 1.5 s). For each speaker left out, a logistic
regression is trained on the other four: on the word embedding, on speech_embedding's mean
and maximum over time (as in ``fsdd_pretrained_embedding.py``), and the two combined — their
log-probabilities summed. ``--extra-train DIR`` adds a folder of ``LABEL/`` clips (e.g. the
synthetic voices of ``scripts/synth_speech.py``) to every training set.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import numpy as np
import torch
import torchaudio

from audioseq.audio import read_audio
from audioseq.preprocess import Preprocess

from fsdd_pretrained_embedding import embed_all, labelled_clips, linear_classifier, pooled

BAND_RATE, RATE = 8000, 16000
WINDOW = int(1.5 * RATE)  # the word embedding's input: 1.5 s, 149 frames of 64 log-mel bands
MODEL = "models/resnet_50_arc/slim_93%_accuracy_72.7390%.onnx"


def word_embeddings(files: list[str]) -> np.ndarray:
    """Each file → its (2048,) word embedding: (len(files), 2048)."""
    import onnxruntime as ort

    try:
        package = resources.files("eff_word_net")
        from eff_word_net.audio_utils import logfbank
    except ModuleNotFoundError as exc:
        raise SystemExit('needs the word embedding: pip install --no-deps "efficientword-net==1.0.5"') from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(package / MODEL), options, providers=["CPUExecutionProvider"])
    preprocess = Preprocess()
    out = []
    for f in files:
        wave = preprocess(read_audio(f, BAND_RATE), BAND_RATE)
        wave = torchaudio.functional.resample(wave, BAND_RATE, RATE).numpy().astype(np.float64)
        if wave.size > WINDOW:
            start = (wave.size - WINDOW) // 2
            wave = wave[start : start + WINDOW]
        pad = WINDOW - wave.size
        wave = np.pad(wave, (pad // 2, pad - pad // 2))
        bands = logfbank(wave, samplerate=RATE, winlen=0.025, winstep=0.01, nfilt=64, nfft=512, preemph=0.0)
        out.append(session.run(None, {"input": bands[None, None].astype(np.float32)})[0][0])
    return np.stack(out)


def log_probabilities(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Logistic regression fitted on rows ``train``, its log-probabilities on rows ``test``: (n_test, 10)."""
    return linear_classifier(max_iter=3000).fit(x[train], y[train]).predict_log_proba(x[test])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extra-train", help="a folder of LABEL/ clips added to every training set")
    parser.add_argument("--out", help="write the accuracies here as JSON")
    args = parser.parse_args()
    every, digits, speakers = labelled_clips(args.extra_train)
    start = time.perf_counter()
    word = word_embeddings(every)
    ms_per_clip = (time.perf_counter() - start) / len(every) * 1e3
    print(f"word embedding: {ms_per_clip:.1f} ms a clip")
    speech = pooled(embed_all(every))  # speech_embedding's mean and maximum over time: (N, 192)
    rows = ("word embedding", "speech_embedding", "both, log-probabilities summed")
    results: dict[str, dict[str, float]] = {row: {} for row in rows}
    confusions: dict[str, dict[str, int]] = {}
    for speaker in sorted(str(s) for s in set(speakers) - {"(extra)"}):
        test = speakers == speaker
        truth = digits[test]
        lp_word = log_probabilities(word, digits, ~test, test)
        lp_speech = log_probabilities(speech, digits, ~test, test)
        for row, lp in zip(rows, (lp_word, lp_speech, lp_word + lp_speech)):
            results[row][speaker] = float((lp.argmax(1) == truth).mean())
        guess = (lp_word + lp_speech).argmax(1)
        pairs = [f"{t}->{g}" for t, g in zip(truth, guess) if t != g]
        confusions[speaker] = {p: pairs.count(p) for p in sorted(set(pairs), key=lambda p: (-pairs.count(p), p))[:3]}
    for row, accuracy in results.items():
        values = list(accuracy.values())
        cells = ", ".join(f"{s} {a:.1%}" for s, a in accuracy.items())
        print(f"{row}: {cells} — mean {np.mean(values):.1%}, worst {min(values):.1%}")
    print("most frequent confusions, both:", confusions)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"word_embedding": "efficientword-net 1.0.5, resnet_50_arc (float)",
                       "word_embedding_ms_per_clip": ms_per_clip, "extra_train": args.extra_train,
                       "extra_clips": int((speakers == "(extra)").sum()), "accuracy": results, "confusions_both": confusions}, fh, indent=2)


if __name__ == "__main__":
    main()
