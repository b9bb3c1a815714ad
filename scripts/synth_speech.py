"""Synthesise spoken words in many voices, as extra training clips for a word classifier.

Usage: python scripts/synth_speech.py OUT_DIR [--per-word 200] [--seed 0]
           [--words zero,one,...] [--labels 0,1,...] [--engines espeak-ng,flite]

Writes OUT_DIR/<label>/<engine>_<n>.wav and OUT_DIR/voices.csv (one row per clip: file,
label, word, engine, voice, pitch, speed). By default two offline synthesisers are used, both
Debian packages (`apt-get install espeak-ng flite`):

- espeak-ng: ``--per-word`` clips per word, each with a random English accent (8 of them), a
  random voice variant (about 85; the robotic and whispered ones are left out), pitch 20-80 and
  speed 110-200 words a minute, drawn from ``--seed``;
- flite: its five built-in voices (kal, kal16, awb, rms, slt), each at 3 durations x 3 pitch
  targets;
- festival (only when named in ``--engines``; `apt-get install festival festvox-kallpc16k
  festvox-kdlpc16k`): its two diphone voices (kal, ked), each at 3 durations x 5 pitch targets
  from 85 to 220 Hz. Measured to lower unseen-speaker accuracy when added to the other two
  (BENCHMARKS.md), so the bundled model's recipe leaves it out.

The defaults are the ten digits, labelled 0-9 as in the Free Spoken Digit Dataset. Added to
its recorded speakers for training (scripts/fsdd_manifest.py --extra, benchmarks/fsdd_speakers.py
--extra-train), these voices raised accuracy on speakers the model never heard (BENCHMARKS.md);
the bundled digits model is trained with them (scripts/train_digits.sh).
The same seed gives the same clips with the same synthesiser versions.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DIGITS = "zero,one,two,three,four,five,six,seven,eight,nine"
ACCENTS = (
    "en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)  # fmt: skip
# Variants that do not sound like a person speaking normally.
UNNATURAL = {"Demonic", "whisper", "whisperf", "UniRobot", "anikaRobot", "Tweaky", "croak"}
FLITE_VOICES = {"kal": 105, "kal16": 105, "awb": 110, "rms": 105, "slt": 160}  # voice: mean pitch (Hz)
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone")  # Debian festvox-kallpc16k, festvox-kdlpc16k
FESTIVAL_PITCHES = (85, 110, 140, 180, 220)  # target mean pitch (Hz)
FESTIVAL_STRETCHES = (0.85, 1.05, 1.3)
ENGINES = ("espeak-ng", "flite", "festival")
DEFAULT_ENGINES = ("espeak-ng", "flite")


def espeak_variants() -> list[str]:
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = [line.split()[4].split("/", 1)[1] for line in listing.splitlines()[1:] if len(line.split()) > 4]
    return sorted(v for v in names if v not in UNNATURAL and not v.startswith("robosoft"))


def festival_command(voice: str, pitch: int, stretch: float, word: str, file: str) -> list[str]:
    f0 = f"(set! int_lr_params '((target_f0_mean {pitch}) (target_f0_std {round(pitch * 0.15)}) (model_f0_mean 170) (model_f0_std 34)))"
    return ["sh", "-c", f'echo "$0" | text2wave -eval "(voice_{voice})" -eval "$1" -eval "$2" -o "$3"',
            word, f0, f"(Parameter.set 'Duration_Stretch {stretch})", file]  # fmt: skip


def plan(
    words: list[str], labels: list[str], per_word: int, seed: int, engines: tuple[str, ...] = DEFAULT_ENGINES
) -> list[dict]:
    """One dict per clip: its file (relative), label, word, engine, voice, pitch, speed and command."""
    rng = random.Random(seed)
    variants = espeak_variants()
    clips = []
    for word, label in zip(words, labels):
        for n in range(per_word):
            accent, variant = rng.choice(ACCENTS), rng.choice(variants)
            pitch, speed = rng.randint(20, 80), rng.randint(110, 200)
            file = f"{label}/espeak_{n}.wav"
            voice = f"{accent}+{variant}"
            cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", file, word]
            clips.append(dict(file=file, label=label, word=word, engine="espeak-ng", voice=voice, pitch=pitch, speed=speed, cmd=cmd))
        n = 0
        for voice, mean_pitch in FLITE_VOICES.items():
            for stretch in (0.85, 1.0, 1.2):
                for pitch_scale in (0.8, 1.0, 1.25):
                    file = f"{label}/flite_{n}.wav"
                    pitch = round(mean_pitch * pitch_scale)
                    cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
                           "--setf", f"int_f0_target_mean={pitch}", "-t", word, "-o", file]  # fmt: skip
                    clips.append(dict(file=file, label=label, word=word, engine="flite", voice=voice, pitch=pitch, speed=stretch, cmd=cmd))
                    n += 1
        n = 0
        for voice in FESTIVAL_VOICES:
            for stretch in FESTIVAL_STRETCHES:
                for pitch in FESTIVAL_PITCHES:
                    file = f"{label}/festival_{n}.wav"
                    cmd = festival_command(voice, pitch, stretch, word, file)
                    clips.append(dict(file=file, label=label, word=word, engine="festival", voice=voice, pitch=pitch, speed=stretch, cmd=cmd))
                    n += 1
    return [clip for clip in clips if clip["engine"] in engines]


TOOLS = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}
PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival festvox-kallpc16k festvox-kdlpc16k"}


def synthesise(
    out: Path,
    words: list[str],
    labels: list[str],
    per_word: int = 200,
    seed: int = 0,
    jobs: int = 4,
    engines: tuple[str, ...] = DEFAULT_ENGINES,
) -> int:
    """Write the clips under ``out``; returns how many were written."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise SystemExit(f"unknown engine {', '.join(unknown)}; known: {', '.join(ENGINES)}")
    missing = [e for e in engines if shutil.which(TOOLS[e]) is None]
    if missing:
        raise SystemExit(f"{', '.join(TOOLS[e] for e in missing)} not found: apt-get install {' '.join(PACKAGES[e] for e in missing)}")
    if len(words) != len(labels):
        raise SystemExit(f"{len(words)} words but {len(labels)} labels")
    clips = plan(words, labels, per_word, seed, engines)
    for label in labels:
        (out / label).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda clip: subprocess.run(clip["cmd"], cwd=out, check=True, capture_output=True), clips))
    with open(out / "voices.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label", "word", "engine", "voice", "pitch", "speed"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(clips)
    return len(clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--words", default=DIGITS)
    parser.add_argument("--labels", default=None, help="Comma list, one per word (default: 0, 1, ...).")
    parser.add_argument("--per-word", type=int, default=200, help="espeak-ng clips per word (flite adds 45).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES), help=f"Comma list of {', '.join(ENGINES)}.")
    args = parser.parse_args()
    words = [w for w in args.words.split(",") if w]
    labels = [x for x in args.labels.split(",") if x] if args.labels else [str(i) for i in range(len(words))]
    engines = tuple(e for e in args.engines.split(",") if e)
    count = synthesise(args.out, words, labels, args.per_word, args.seed, engines=engines)
    print(f"{args.out}: {count} clips")


if __name__ == "__main__":
    main()
