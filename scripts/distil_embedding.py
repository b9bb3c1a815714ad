"""Train the weights of the built-in ``speech-embedding-lite`` feature by distillation.

The teacher is the ``speech-embedding`` feature of the audioseq-speech-embedding plugin
(Google's speech_embedding, pretrained on a large amount of speech): 96 values every 80 ms.
The student is the network of ``audioseq/default_plugins/embedding.py``: nine convolutions
over 32 log-mel bands at 8 kHz that see the same 76 frames and step 8 frames, as the teacher.
It learns to give the teacher's outputs (each standardised) on the same clips, by mean squared
error. The clips are synthetic speech only, so no recorded speaker is built into the feature:

    python scripts/synth_speech.py VOICES                      # the ten digits, 2,450 clips
    WORDS_LIST="$(python scripts/distil_embedding.py --list-words)"
    python scripts/synth_speech.py WORDS --engines espeak-ng --per-word 8 --seed 3 \\
        --words "$WORDS_LIST" --labels "$(seq -s, 0 599)"     # 4,800 clips
    python scripts/synth_speech.py FLITE_WORDS --engines flite \\
        --words "$WORDS_LIST" --labels "$(seq -s, 0 599)"     # 27,000 clips
    python scripts/distil_embedding.py VOICES WORDS FLITE_WORDS \\
        --out audioseq/default_plugins/weights/speech-embedding-lite.safetensors

The digit clips are taken as they are and in two copies changed at random (speed 0.8–1.2,
gain ±6 dB, faint noise, and for half of them up to 1 s of quiet noise before and after), the
word clips half of them changed once; each is preprocessed as
models preprocess by default (trimmed, −20 dBFS RMS) and given 0.5 s of silence on each side
as the feature gives it. The word list is the 600 most frequent words of 3 to 10 letters in the
licence texts every Debian system holds (``/usr/share/common-licenses``), the digit words
left out; flite says each in its five voices at three speeds and three pitches (39,150 clips
in all). One torch thread: about 35 minutes on one core.
"""

from __future__ import annotations

import argparse
import collections
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audioseq.audio import read_audio, resample
from audioseq.augment import noise_padded
from audioseq.default_plugins.embedding import DIM, HOP_MS, LAYERS, N_MELS, PAD_SECONDS, RATE, WIN_MS
from audioseq.default_plugins.features import LogMel
from audioseq.preprocess import Preprocess

DIGITS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
LICENCES = Path("/usr/share/common-licenses")


def words(count: int = 600) -> list[str]:
    """The ``count`` most frequent words of 3 to 10 letters in the system's licence texts."""
    text = " ".join(p.read_text(errors="ignore").lower() for p in sorted(LICENCES.glob("*")) if p.is_file())
    counts = collections.Counter(re.findall(r"\b[a-z]{3,10}\b", text))
    return [w for w, _ in counts.most_common() if w not in DIGITS][:count]


class Student(nn.Module):
    """Log-mel frames (B, T, 32), standardised → (B, T', 96); batch norm while it trains."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = N_MELS
        for kernel, pool in LAYERS:
            layers += [nn.Conv1d(size, channels, kernel), nn.BatchNorm1d(channels), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool1d(2))
            size = channels
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv1d(channels, DIM, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(frames.transpose(1, 2))).transpose(1, 2)

    def folded(self) -> dict[str, torch.Tensor]:
        """Each convolution with its batch norm folded in, named as the feature reads them."""
        convs = [m for m in self.body if isinstance(m, nn.Conv1d)]
        norms = [m for m in self.body if isinstance(m, nn.BatchNorm1d)]
        out = {}
        for i, (conv, norm) in enumerate(zip(convs, norms)):
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            out[f"conv{i}.weight"] = conv.weight * scale[:, None, None]
            out[f"conv{i}.bias"] = (conv.bias - norm.running_mean) * scale + norm.bias
        out["head.weight"], out["head.bias"] = self.head.weight, self.head.bias
        return {k: v.detach().contiguous() for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("voices", nargs="?", type=Path, help="synthetic digits: LABEL/*.wav")
    parser.add_argument("words", nargs="*", type=Path, help="synthetic words: LABEL/*.wav, one folder or more")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--copies", type=int, default=2, help="changed copies of each digit clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speeds", default="0.8,0.85,0.9,0.95,1.0,1.05,1.1,1.15,1.2", help="speed factors of a changed clip")
    parser.add_argument("--noise-db", default="-60,-35", help="a changed clip's noise level range, dBFS RMS "
                        "(the clip itself is at -20)")
    parser.add_argument("--pad-noise", type=float, default=0.5, help="share of changed clips given up to 1 s of "
                        "quiet noise (30-50 dB below the clip) before and after")
    parser.add_argument("--list-words", action="store_true", help="print the word list, comma-separated")
    args = parser.parse_args()
    if args.list_words:
        print(",".join(words()))
        return
    if not (args.voices and args.words and args.out):
        parser.error("VOICES, WORDS and --out are needed")
    from audioseq_speech_embedding import SpeechEmbedding
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    preprocess = Preprocess()
    teacher = SpeechEmbedding(RATE, pad=PAD_SECONDS).eval()
    logmel = LogMel(RATE, n_mels=N_MELS, win_ms=WIN_MS, hop_ms=HOP_MS, f_min=0.0)
    pad = round(PAD_SECONDS * RATE)
    speeds = [float(v) for v in args.speeds.split(",")]
    noise_low, noise_high = (float(v) for v in args.noise_db.split(","))

    def changed(wave: torch.Tensor) -> torch.Tensor:
        speed = float(rng.choice(speeds))
        if speed != 1.0:
            wave = resample(wave, round(RATE * speed), RATE)
        if args.pad_noise and rng.random() < args.pad_noise:  # 0 draws nothing, as earlier weights were made
            before, after = (int(rng.uniform(0, 1) * RATE) for _ in range(2))
            level = wave.pow(2).mean().sqrt() * 10 ** (-rng.uniform(30, 50) / 20)
            wave = noise_padded(wave, before, after, level)
        wave = wave * 10 ** (rng.uniform(-6, 6) / 20)
        return wave + torch.randn(wave.shape) * 10 ** (rng.uniform(noise_low, noise_high) / 20)

    inputs, targets = [], []
    start = time.perf_counter()
    with torch.no_grad():
        def add(wave: torch.Tensor) -> None:
            inputs.append(logmel(F.pad(wave, (pad, pad))[None])[0])
            targets.append(teacher(wave[None])[0])

        digits = [preprocess(read_audio(str(p), RATE), RATE) for p in sorted(args.voices.glob("*/*.wav"))]
        for copy in range(1 + args.copies):
            for wave in digits:
                add(wave if copy == 0 else changed(wave))
        for p in sorted(p for folder in args.words for p in folder.glob("*/*.wav")):
            wave = preprocess(read_audio(str(p), RATE), RATE)
            add(changed(wave) if rng.random() < 0.5 else wave)
    print(f"{len(inputs)} clips through the teacher in {time.perf_counter() - start:.0f} s", flush=True)
    every = torch.cat(inputs)
    in_mean, in_std = every.mean(0), every.std(0) + 1e-3
    every = torch.cat(targets)
    out_mean, out_std = every.mean(0), every.std(0) + 1e-3

    student = Student(args.channels)
    optimiser = torch.optim.AdamW(student.parameters(), lr=2e-3, weight_decay=1e-2)
    batches = (len(inputs) + 31) // 32
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 2e-3, total_steps=args.epochs * batches)
    for epoch in range(args.epochs):
        student.train()
        order, total, start = torch.randperm(len(inputs)).tolist(), 0.0, time.perf_counter()
        for first in range(0, len(order), 32):
            idx = order[first : first + 32]
            frames = nn.utils.rnn.pad_sequence([(inputs[i] - in_mean) / in_std for i in idx], batch_first=True)
            out = student(frames)  # outputs past a clip's own count read padding: not compared
            loss = sum(F.mse_loss(out[j, : len(targets[i])], (targets[i] - out_mean) / out_std, reduction="sum")
                       for j, i in enumerate(idx)) / (DIM * sum(len(targets[i]) for i in idx))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        print(f"epoch {epoch + 1}: loss {total / batches:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    student.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({**student.folded(), "in_mean": in_mean, "in_std": in_std}, str(args.out),
              metadata={"teacher": "speech_embedding (Google, Apache-2.0) via audioseq-speech-embedding",
                        "clips": str(len(inputs)), "epochs": str(args.epochs), "seed": str(args.seed)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
