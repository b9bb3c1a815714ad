"""Write a manifest CSV (path,label,split,group) for a folder of FSDD recordings.

Usage: python scripts/fsdd_manifest.py RECORDINGS_DIR OUT.csv [--test-speakers a,b] [--extra DIR]

Without --test-speakers the split is the dataset's official one (recording index 0-4 is
test); with it, those speakers are the test split (leave-speakers-out). The group column
holds the speaker unless --no-groups is given; training then draws its validation clips from
every training speaker instead of holding one speaker out.

--extra DIR adds the clips of DIR/<label>/ (read as the folder dataset reads them; e.g. from
scripts/synth_speech.py) to the training split only. Validation then stays made of
recordings, drawn as training would draw it (seed 0, the default fraction): whole speakers
when the group column is kept, else clips of every speaker.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def rows(recordings: Path, test_speakers: set[str], groups: bool = True) -> list[tuple[str, str, str, str]]:
    out = []
    for path in sorted(recordings.glob("*.wav")):
        match = NAME.match(path.name)
        if not match:
            continue
        digit, speaker, index = match.groups()
        if test_speakers:
            split = "test" if speaker in test_speakers else "train"
        else:
            split = "test" if int(index) < 5 else "train"
        out.append((str(path.resolve()), digit, split, speaker if groups else ""))
    return out


def with_extra(table: list[tuple[str, str, str, str]], extra: Path) -> list[tuple[str, str, str, str]]:
    """The recordings with an explicit validation split, then the extra clips as training."""
    import audioseq
    from audioseq.dataset import Example, stratified_split
    from audioseq.training import TrainConfig

    train = [Example(path, label, split, group or None) for path, label, split, group in table if split == "train"]
    _, valid = stratified_split(train, TrainConfig.valid_fraction, 0, by_group=True)
    valid_paths = {ex.audio for ex in valid}
    out = [(path, label, "valid" if path in valid_paths else split, group) for path, label, split, group in table]
    clips = audioseq.load_dataset("folder", str(extra)).examples()
    return out + [(str(Path(ex.audio).resolve()), ex.label, "train", "") for ex in clips]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recordings", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--test-speakers", default="")
    parser.add_argument("--no-groups", action="store_true")
    parser.add_argument("--extra", type=Path, default=None, help="Folder of LABEL/ audio clips added to training.")
    args = parser.parse_args()
    speakers = {s for s in args.test_speakers.split(",") if s}
    table = rows(args.recordings, speakers, groups=not args.no_groups)
    if not table:
        raise SystemExit(f"no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) in {args.recordings}")
    if args.extra:
        table = with_extra(table, args.extra)
    with open(args.out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "group"])
        writer.writerows(table)
    print(f"{args.out}: {len(table)} clips")


if __name__ == "__main__":
    main()
