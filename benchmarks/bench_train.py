"""Training time to 99% test accuracy on FSDD's official split with the default recipe.

Runs the same loop as ``audioseq train`` (decode once, then epochs of augmented batches, each
followed by the validation pass) and measures the official test accuracy after every epoch; the
time reported excludes those extra test evaluations. Prints the epoch and seconds at which 99%
was first reached.

Usage: python benchmarks/bench_train.py [--threads N] [--recipe JSON]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from audioseq.training import Trainer

from fsdd_speakers import examples, make_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--recipe", default="{}", help="TrainConfig keyword arguments as JSON (default: the defaults)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    exs = examples()
    train_ex = [e for e in exs if e.split == "train"]
    test_ex = [e for e in exs if e.split == "test"]
    config = make_config(json.loads(args.recipe))
    start = time.perf_counter()
    from audioseq.dataset import stratified_split

    tr, va = stratified_split(train_ex, config.valid_fraction, config.seed)
    trainer = Trainer(config, [str(d) for d in range(10)], tr, va)
    trainer.prepare_data()
    trainer.fit_normalisation()
    setup = time.perf_counter() - start
    test = Trainer(config, trainer.labels, test_ex, [])
    test.prepare_data()
    test_waves, test_targets = [trainer._clean(w) for w in test.train_waves], test.train_targets
    elapsed = setup
    for epoch in range(config.epochs):
        t = time.perf_counter()
        trainer.train_epoch(epoch)
        trainer.evaluate_waves(trainer.valid_waves, trainer.valid_targets)
        elapsed += time.perf_counter() - t
        acc = trainer.evaluate_waves(test_waves, test_targets)["accuracy"]
        print(f"epoch {epoch + 1}: test accuracy {acc:.4f} at {elapsed:.1f} s", flush=True)
        if acc >= args.target:
            print(f"reached {args.target:.0%} after {epoch + 1} epochs, {elapsed:.1f} s (decoding {setup:.1f} s), "
                  f"{args.threads} threads")
            return
    print(f"did not reach {args.target:.0%} in {config.epochs} epochs ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
