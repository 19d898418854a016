"""Chinchilla fit timing: dense vs diagonal mass matrix, on whatever machine this runs.

    python benchmarks/chinchilla.py            # prints a Markdown table

Each configuration is timed twice in one process: a 1-warmup/1-draw fit (compilation and fixed overhead) and the full
4 chains x 1000 warmup + 1000 draws fit; "sampling" is the difference. ESS/s uses the smallest bulk ESS over the
parameters and the full wall time.
"""

from __future__ import annotations

import json
import platform
import time
import warnings

import numpy as np

import bayescale as bs
from bayescale.datasets import load_chinchilla


def run(dense: bool, chains: int = 4, warmup: int = 1000, samples: int = 1000) -> dict:
    ds = load_chinchilla()
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # a 2-draw fit warns about ESS, by design
        warnings.simplefilter("ignore")
        bs.fit("hoffmann2022", ds, num_chains=chains, num_warmup=2, num_samples=2, dense_mass=dense, progress_bar=False)
    overhead = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = bs.fit("hoffmann2022", ds, num_chains=chains, num_warmup=warmup, num_samples=samples, dense_mass=dense,
                    progress_bar=False)
    total = time.perf_counter() - t0
    diag = json.loads(result.attrs["diagnostics"])
    ess = min(row["ess_bulk"] for row in diag["parameters"])
    steps = float(result.sample_stats["n_steps"].mean())
    return dict(mass="dense" if dense else "diagonal", total_s=total, overhead_s=overhead,
                sampling_s=total - overhead, steps_per_draw=steps, min_ess_bulk=ess, ess_per_s=ess / total,
                divergences=diag["divergences"])


def main() -> None:
    rows = [run(True), run(False)]
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {__import__('os').cpu_count()} cores; "
          f"jax {__import__('jax').__version__} ({__import__('jax').devices()[0].platform})\n")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    base = rows[1]
    print(f"\ndense vs diagonal: {base['steps_per_draw'] / rows[0]['steps_per_draw']:.1f}x fewer leapfrog steps per draw, "
          f"{rows[0]['ess_per_s'] / base['ess_per_s']:.1f}x ESS/s")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
