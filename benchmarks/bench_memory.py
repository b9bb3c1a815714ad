"""Peak memory of batch prediction for 10,000 inputs against 1,000.

Each size runs in a fresh process (FSDD paths repeated to reach the count) and reports its
peak resident memory, and that of its decoding workers. Prints a markdown table.

Usage: python benchmarks/bench_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

CHILD = r"""
import json, resource, sys
sys.path.insert(0, "benchmarks")
import audioseq
from common import fsdd_files, model_path
n = int(sys.argv[1])
files = fsdd_files()
inputs = [files[i % len(files)] for i in range(n)]
clf = audioseq.load(model_path())
count = sum(1 for p in clf.predict_iter(inputs, batch_size=64) if p.error is None)
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"n": n, "ok": count, "self_mb": self_kb / 1024, "workers_mb": child_kb / 1024}))
"""


def run(n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    small, large = run(1000), run(10000)
    print("| inputs | predictions | peak RSS main (MB) | peak RSS of its largest child process (MB) |\n|---|---|---|---|")
    for r in (small, large):
        print(f"| {r['n']:,} | {r['ok']:,} | {r['self_mb']:.0f} | {r['workers_mb']:.0f} |")
    print(f"\nratio 10,000 / 1,000 (main process): {large['self_mb'] / small['self_mb']:.2f}x")


if __name__ == "__main__":
    main()
