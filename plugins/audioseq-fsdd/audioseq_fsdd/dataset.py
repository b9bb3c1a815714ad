"""The ``fsdd`` dataset: the Free Spoken Digit Dataset with its official or a leave-speakers-out split.

Free Spoken Digit Dataset (Zohar Jackson et al.), CC BY-SA 4.0. A model trained on it is a
derived work: credit the dataset wherever the model goes.
"""

from __future__ import annotations

import re
from typing import Sequence

from audioseq.dataset import SPLITS, Example
from audioseq.errors import ParameterError

from . import fetch
from .fetch import DIGITS, Recording

OFFICIAL_TEST_INDICES = range(5)  # recordings 0-4 of each speaker and digit are the official test set
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a tag; it becomes part of a URL and a cache path


class FSDD:
    """Free Spoken Digit Dataset: spoken digits, 8 kHz mono WAV; labels "0".."9", group = speaker.

    Free Spoken Digit Dataset (Zohar Jackson et al.), CC BY-SA 4.0.

    ``root`` (a ``recordings/`` folder or the folder holding one) uses that copy and never
    downloads. Without it, release ``version`` is kept in the user cache
    (``<cache>/audioseq/fsdd/<version>/recordings``) and downloaded there once from GitHub,
    unless ``download`` is false or ``AUDIOSEQ_OFFLINE=1``. Every construction checks the files:
    their names, their count, every digit, each 8 kHz mono WAV header.

    Splits: with no ``test_speakers``, the official split (recordings 0-4 of every speaker and
    digit are test, the rest train); with ``test_speakers``, those speakers are test and the
    others train. There is no valid split: training holds whole speakers out of train for it.

    Args:
        test_speakers: speakers held out as the test split (empty: the official split by recording index).
        download: download the release into the cache when it is not there.
        version: the dataset's release tag on GitHub.
    """

    def __init__(
        self,
        root: str | None = None,
        test_speakers: tuple[str, ...] = (),
        download: bool = True,
        version: str = "v1.0.10",
    ) -> None:
        if not _VERSION.fullmatch(version):
            raise ParameterError(f"fsdd: version {version!r} is not a release tag such as 'v1.0.10'")
        if isinstance(test_speakers, str):  # a Python caller's "george,theo", as the CLI gives it
            test_speakers = tuple(test_speakers.split(","))
        if root is not None:
            self.folder = fetch.local_folder(root)
            fix = f"fix or replace the files in {self.folder}, or pass --data another copy"
        else:
            self.folder = fetch.cache_folder(version)
            fix = f"delete {self.folder.parent} to download it again, or pass --data a local copy"
            if not self.folder.is_dir():
                if not download:
                    raise fetch.FSDDError(self.folder, "is not there and download is off; pass --data a local copy "
                                                       "of the FSDD recordings folder, or allow the download")
                fetch.fetch(version, self.folder)
        recordings = fetch.verify(self.folder, fix)
        self.speakers = sorted({r.speaker for r in recordings})
        self.test_speakers = self._held_out(test_speakers)
        self.labels = list(DIGITS)
        recordings.sort(key=lambda r: (r.speaker, r.digit, r.index))
        self._items = [Example(str(r.path), r.digit, self._split(r), r.speaker) for r in recordings]

    def _held_out(self, test_speakers: Sequence[str]) -> tuple[str, ...]:
        wanted = tuple(dict.fromkeys(s.strip().lower() for s in test_speakers if s.strip()))
        unknown = [s for s in wanted if s not in self.speakers]
        if unknown:
            raise ParameterError(
                f"fsdd: test_speakers {', '.join(unknown)} not found in {self.folder}; "
                f"its speakers are {', '.join(self.speakers)}"
            )
        if wanted and len(wanted) == len(self.speakers):
            raise ParameterError(f"fsdd: test_speakers holds out every speaker ({', '.join(wanted)}), none is left to train on")
        return wanted

    def _split(self, rec: Recording) -> str:
        if self.test_speakers:
            return "test" if rec.speaker in self.test_speakers else "train"
        return "test" if rec.index in OFFICIAL_TEST_INDICES else "train"

    def examples(self, split: str | None = None) -> Sequence[Example]:
        """All examples, or those of one split ("train" or "test"; "valid" is empty)."""
        if split is None:
            return list(self._items)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        return [ex for ex in self._items if ex.split == split]
