"""Contract checks for feature extractors, for a feature author's own tests::

    from audioseq.testing import check_feature

    def test_my_feature_keeps_the_contract():
        check_feature(MyFeature, sample_rate=16000, n_bands=32)
"""

from __future__ import annotations

import pickle
import threading
from typing import Any, Callable, NoReturn

import torch
from torch import Tensor, nn

from ..errors import AudioseqError
from .contract import ContractError, checked_params, component_name, max_diff, quiet_torch

OTHER_RATES = (8000, 22050)  # besides the one asked for; a feature may refuse them with a ValueError
RELATIVE_TOLERANCE = 1e-4  # batched vs alone: FFT kernels may round differently per batch shape
LONGEST_SECONDS = 1.5


def check_feature(factory: Callable[..., nn.Module], sample_rate: int = 16000, **params: Any) -> None:
    """Check that a feature extractor keeps the contract the engine relies on.

    Covers: declared parameters; ``dim``; ``num_frames`` (LongTensor in, same shape out,
    non-decreasing, 0 for an empty clip, exact against ``forward`` for many lengths around the
    minimum and up to 1.5 s); ``min_samples``; output ``(B, T, dim)`` float32 and finite at
    several sample rates; fewer samples than one frame giving 0 frames or an error; a clip alone
    vs zero-padded in a batch with a longer clip; determinism; the same frames and an unchanged
    state when two threads call ``forward`` at once; silence; ``in_workers``.

    Args:
        factory: builds the feature, ``factory(sample_rate, **params) -> nn.Module``.
        sample_rate: rate in Hz it must support; 8000 and 22050 Hz are tried too and may be refused
            with a ``ValueError`` at construction.
        params: the feature's own parameters, as a user would give them.
    Raises:
        ContractError: naming the broken property, the numbers and the fix.
    """
    checked_params(factory, 1, params, "sample_rate")
    who = component_name(factory)
    with quiet_torch():
        for rate in dict.fromkeys((sample_rate, *OTHER_RATES)):
            try:
                feature = factory(rate, **params)
            except (ValueError, AudioseqError) as exc:
                if rate == sample_rate:
                    raise ContractError(who, "construction", f"factory({rate}, **{params!r}) raised {exc}",
                                        "build the feature at this sample rate") from exc
                continue
            _FeatureChecks(who, feature, rate).run()


class _FeatureChecks:
    def __init__(self, who: str, feature: nn.Module, rate: int) -> None:
        self.who, self.feature, self.rate = who, feature, rate
        self.gen = torch.Generator().manual_seed(rate)

    def fail(self, check: str, detail: str, fix: str) -> NoReturn:
        raise ContractError(self.who, check, f"at {self.rate} Hz, {detail}", fix)

    def noise(self, *shape: int) -> Tensor:
        return 0.3 * torch.randn(shape, generator=self.gen)

    def frames(self, waveform: Tensor) -> Tensor:
        with torch.no_grad():
            return self.feature(waveform)

    def run(self) -> None:
        if not isinstance(self.feature, nn.Module):
            self.fail("construction", f"the factory returned a {type(self.feature).__name__}", "return a torch.nn.Module")
        self.feature.eval()
        dim = getattr(self.feature, "dim", None)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            self.fail("dim", f"dim is {dim!r}", "set dim to the number of values per frame, a positive int")
        self.dim = dim
        minimum = self.num_frames_table()
        self.lengths(minimum)
        self.silence(minimum)
        self.batch_consistency(minimum)
        self.workers()

    def num_frames_table(self) -> int:
        """Check ``num_frames`` over every length up to 1.5 s; return the fewest samples giving a frame."""
        n = torch.arange(int(LONGEST_SECONDS * self.rate) + 1)
        counts = self.feature.num_frames(n)
        if not isinstance(counts, Tensor) or counts.dtype != torch.long or counts.shape != n.shape:
            got = f"{counts.dtype} {tuple(counts.shape)}" if isinstance(counts, Tensor) else type(counts).__name__
            self.fail("num_frames", f"for a LongTensor of shape {tuple(n.shape)} it returned {got}",
                      "return a LongTensor of the input's shape, computed elementwise")
        if int(counts[0]) != 0 or bool((counts < 0).any()) or bool((counts[1:] < counts[:-1]).any()):
            self.fail("num_frames", f"counts must be 0 for 0 samples and never decrease; got {counts[:5].tolist()}...",
                      "give the exact frame count: 0 below one frame, non-decreasing with the length")
        if int(counts[-1]) < 1:
            self.fail("num_frames", f"{LONGEST_SECONDS} s gives no frame", "frame clips of a few tenths of a second")
        minimum = int(torch.nonzero(counts)[0, 0])
        declared = getattr(self.feature, "min_samples", None)
        if declared is not None and (not isinstance(declared, int) or declared < 1 or declared >= len(n)):
            self.fail("min_samples", f"min_samples is {declared!r}",
                      "set min_samples to the fewest samples that give one frame (the pipeline pads clips to it)")
        if declared is not None and int(counts[declared]) < 1:  # min_samples too few, or num_frames wrong
            made = self.frames(self.noise(1, declared)).shape[1]
            if made == 0:
                self.fail("min_samples", f"min_samples is {declared} but the first frame needs {minimum} samples "
                          "(forward and num_frames agree)",
                          "set min_samples to the fewest samples that give one frame (the pipeline pads clips to it)")
            self.fail("num_frames", f"for {declared} samples (min_samples) forward gave {made} frames; num_frames "
                      "says 0", "make num_frames exact: the engine masks frames with it")
        return minimum

    def lengths(self, minimum: int) -> None:
        last = int(LONGEST_SECONDS * self.rate)
        picks = torch.randint(minimum, last + 1, (4,), generator=self.gen).tolist()
        for n in sorted({minimum, minimum + 1, minimum + 2, minimum + 7, 2 * minimum, last, *picks}):
            expected = int(self.feature.num_frames(torch.tensor([n]))[0])
            out = self.frames(self.noise(2, n))
            if not isinstance(out, Tensor) or out.dim() != 3 or out.shape[0] != 2:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                self.fail("output shape", f"for 2 clips of {n} samples forward gave {got}",
                          f"return frames of shape (B, T, dim) = (2, {expected}, {self.dim})")
            if out.shape[2] != self.dim:
                self.fail("dim", f"forward gave frames of {out.shape[2]} values but dim is {self.dim}",
                          "set dim to the number of values in each frame forward returns")
            if out.shape[1] != expected:
                self.fail("frame count", f"for 2 clips of {n} samples forward gave {out.shape[1]} frames; "
                          f"num_frames says {expected}", "make num_frames exact: the engine masks frames with it")
            if out.dtype != torch.float32 or not bool(torch.isfinite(out).all()):
                self.fail("output values", f"{n} samples of noise gave {out.dtype} frames, finite: "
                          f"{bool(torch.isfinite(out).all())}", "return finite float32 frames")
        for n in sorted({n for n in (0, 1, minimum - 1) if n < minimum}):
            try:
                out = self.frames(self.noise(1, n))
            except Exception:  # the pipeline pads or refuses such clips first; an error is a fine answer
                continue
            if out.shape[1] != 0:
                self.fail("too-short clip", f"{n} samples gave {out.shape[1]} frames but num_frames says 0",
                          "return (B, 0, dim) or raise an error below one frame")

    def batch_consistency(self, minimum: int) -> None:
        n_short = max(minimum + 3, int(0.3 * self.rate))
        n_long = max(n_short + minimum, int(0.8 * self.rate))
        short, long = self.noise(n_short), self.noise(n_long)
        batch = torch.stack([torch.nn.functional.pad(short, (0, n_long - n_short)), long])
        together = self.frames(batch)
        if not bool(torch.isfinite(together).all()):
            self.fail("batch consistency", f"the zero padding after a clip of {n_short} samples gave non-finite frames",
                      "keep frames over padding finite: the engine masks them by multiplying, and inf · 0 is NaN")
        valid = int(self.feature.num_frames(torch.tensor([n_short]))[0])
        for row, clip, frames in ((0, short, valid), (1, long, together.shape[1])):
            alone = self.frames(clip.unsqueeze(0))[0]
            mine = together[row, :frames]
            scale = alone.abs().clamp(min=1.0)
            worst = float(((mine - alone) / scale).abs().max()) if mine.shape == alone.shape else float("inf")
            if not worst <= RELATIVE_TOLERANCE:
                self.fail("batch consistency", f"a clip of {clip.numel()} samples alone vs zero-padded in a batch to "
                          f"{n_long}: its {frames} valid frames differ by {worst:.3g} relative",
                          "compute each frame from its own clip only: no centre padding past the end, "
                          "no normalisation over the batch or the padded length")
        again = self.frames(batch)
        if max_diff(again, together) > 0:
            self.fail("determinism", "the same batch gave different frames twice", "draw no random numbers in eval mode")
        self.threads(batch, together)

    def threads(self, batch: Tensor, expected: Tensor) -> None:
        """Prediction computes features in two threads at once."""
        before = {k: v.clone() for k, v in self.feature.state_dict().items()}
        results: list[Any] = [None, None]

        def run(slot: int) -> None:
            try:
                results[slot] = self.frames(batch)
            except Exception as exc:  # reported below, in the caller's thread
                results[slot] = exc

        workers = [threading.Thread(target=run, args=(slot,)) for slot in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        for out in results:
            if not isinstance(out, Tensor) or out.shape != expected.shape or not bool(
                    ((out - expected).abs() <= RELATIVE_TOLERANCE * expected.abs().clamp(min=1.0)).all()):
                got = f"{type(out).__name__}: {out}" if isinstance(out, Exception) else "other frames"
                self.fail("threads", f"two threads computing the same batch at once got {got}",
                          "keep forward free of state changes: no caches filled or buffers updated while it runs")
        after = self.feature.state_dict()
        if before.keys() != after.keys() or any(not torch.equal(before[k], after[k]) for k in before):
            self.fail("threads", "forward changed the module's state_dict",
                      "keep forward free of state changes: prediction may run it from two threads at once")

    def silence(self, minimum: int) -> None:
        for n in (minimum, self.rate):
            out = self.frames(torch.zeros(2, n))
            if not bool(torch.isfinite(out).all()):
                self.fail("silence", f"{n} samples of silence gave non-finite frames",
                          "floor the energy before taking a logarithm (e.g. clamp(min=1e-10))")

    def workers(self) -> None:
        flag = getattr(self.feature, "in_workers", False)
        if not isinstance(flag, bool):
            self.fail("in_workers", f"in_workers is {flag!r}", "make in_workers a bool")
        if flag:
            try:
                pickle.dumps(self.feature)
            except Exception as exc:
                self.fail("in_workers", f"the feature cannot be pickled: {type(exc).__name__}: {exc}",
                          "data-loading workers started by spawn (macOS, Windows) receive the feature pickled: "
                          "keep no lambdas, open files or locks on it")
