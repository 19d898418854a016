"""Leave-largest-out validation on the Chinchilla data: the Bayesian fit and the classic Huber baseline in one table.

    PYTHONPATH=. python benchmarks/validate_chinchilla.py [--holdout 5] [--bootstrap 200] [--out results/validation]

Holds out the ``--holdout`` largest model sizes (N rounded to 2 significant digits; 5 sizes = N >= 6.8e9, 17 runs,
extrapolating 0.55 decades in N beyond the largest fitted size, about Chinchilla-70B's distance from the 16B runs it
was planned from), fits both methods on the rest, and scores the held-out runs. The table in docs/validation.md comes
from this script (same command, defaults).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from bayescale.datasets import load_chinchilla
from bayescale.validation.holdout import plot_validation, validate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--holdout", type=int, default=5)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--bootstrap-starts", type=int, default=1)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/validation")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    table = validate(
        "hoffmann2022", load_chinchilla(), "largest", by="N", holdout=args.holdout, methods=("bayes", "baseline"),
        fit_kwargs=dict(num_chains=args.chains, num_warmup=args.samples, num_samples=args.samples),
        baseline_kwargs=dict(num_bootstrap=args.bootstrap, bootstrap_starts=args.bootstrap_starts), rng_key=args.seed,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 200)
    print(table.drop(columns=["fold"]).to_string(index=False, float_format="%.4g"))
    table.to_csv(out / "chinchilla_largest_out.csv", index=False)
    table.attrs["points"].to_csv(out / "chinchilla_largest_out_points.csv", index=False)
    plot_validation(table, path=out / "chinchilla_largest_out.png")
    print(f"wrote {out}/chinchilla_largest_out.(csv|png) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
