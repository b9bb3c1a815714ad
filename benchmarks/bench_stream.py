"""Prediction from a stream of inputs (a generator) against the same inputs as a list.

A list's length is known and a stream's is not, so the two take different paths into the
decoding workers; a stream should cost no more. Classifies the 2,500 FSDD clips with the
bundled digits model, given as a list and as a generator, with decoding in this process and in
worker processes. Every time is the best of three runs, all in this process; the labels of
both ways must agree. Prints a markdown table of clips/s and the stream / list ratio.

Usage: python benchmarks/bench_stream.py [--clips N] [--workers 0,2]
"""

from __future__ import annotations

import argparse

import audioseq

from common import fsdd_files, model_path, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=2500)
    parser.add_argument("--workers", default="0,2")
    args = parser.parse_args()
    files = fsdd_files()[: args.clips]
    clf = audioseq.load(model_path())
    clf.predict(files[:64])  # warm-up
    n = len(files)
    print("| decoding workers | list (clips/s) | generator (clips/s) | generator / list |\n|---|---|---|---|")
    for workers in (int(w) for w in args.workers.split(",")):
        t_list, as_list = timed(lambda: clf.predict(files, num_workers=workers))
        t_stream, as_stream = timed(lambda: clf.predict((f for f in files), num_workers=workers))
        if [p.label for p in as_list] != [p.label for p in as_stream]:
            raise SystemExit(f"a list and a stream gave different labels with {workers} workers")
        print(f"| {workers} | {n / t_list:,.0f} | {n / t_stream:,.0f} | {t_list / t_stream:.2f} |", flush=True)


if __name__ == "__main__":
    main()
