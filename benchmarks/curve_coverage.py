"""Do 90% intervals from whole training curves cover the truth? The correlated noise model against independent checkpoints.

    PYTHONPATH=. python benchmarks/curve_coverage.py                    # 20 simulated datasets (~30 min on 2 cores)
    PYTHONPATH=. python benchmarks/curve_coverage.py --reps 5 --out results/coverage.csv
    PYTHONPATH=. python benchmarks/curve_coverage.py --checkpoints 32 --spacing linear   # checkpoints logged every k steps

Each repetition simulates curves from hoffmann2022 at fixed constants with the noise the curve model assumes
(``bayescale.simulate.simulate_curves``: 0.5% run effect, 1% residuals correlated along log-tokens with length 0.5),
8 runs (4 sizes x 2 seeds) x 16 checkpoints, and fits it twice: ``noise="run+ou"`` and ``noise="iid"`` (every
checkpoint independent). It records whether each true constant lies inside its central 90% posterior interval. The
correlated model should cover in about 90% of cases (85-95% over enough repetitions); the independent one, which
counts 16 correlated checkpoints as 16 independent measurements, should under-cover (the negative control).
Prints one table; the numbers in docs/noise.md come from this script.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.simulate import simulate_curves

TRUTH = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)
NOISE = dict(sigma=0.01, tau=0.005, ell=0.5)


def dataset(seed: int, checkpoints: int = 16, spacing: str = "log", noise: dict | None = None) -> pd.DataFrame:
    runs = pd.DataFrame([{"run": f"N{n:.2g}-s{s}", "N": n} for n in np.geomspace(5e7, 5e9, 4) for s in range(2)])
    if spacing == "log":
        tokens = np.geomspace(1e9, 1e11, checkpoints)
    else:  # logged every k steps, as labs do: dense in log-tokens late in the run
        tokens = np.linspace(1e11 / checkpoints, 1e11, checkpoints)
    return simulate_curves("hoffmann2022", TRUTH, runs, tokens, seed=seed, **(noise or NOISE))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--models", nargs="*", default=["run+ou", "iid"])
    p.add_argument("--checkpoints", type=int, default=16, help="checkpoints per run")
    p.add_argument("--spacing", choices=["log", "linear"], default="log",
                   help="log: even in log-tokens from 1e9 to 1e11; linear: every 1e11/checkpoints tokens")
    p.add_argument("--sigma", type=float, default=NOISE["sigma"])
    p.add_argument("--tau", type=float, default=NOISE["tau"])
    p.add_argument("--ell", type=float, default=NOISE["ell"])
    p.add_argument("--out", default=None, help="also write per-repetition rows as CSV")
    args = p.parse_args(argv)
    rows = []
    t0 = time.perf_counter()
    for rep in range(args.reps):
        noise = dict(sigma=args.sigma, tau=args.tau, ell=args.ell)
        ds = bs.load_runs(dataset(1000 + rep, args.checkpoints, args.spacing, noise))
        for noise in args.models:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = bs.fit("hoffmann2022", ds, noise=noise, rng_key=rep, num_chains=args.chains,
                             num_warmup=args.warmup, num_samples=args.samples, progress_bar=False)
            post = fit["posterior"]
            for name, value in TRUTH.items():
                lo, hi = np.quantile(post[name].values, [0.05, 0.95])
                rows.append({"rep": rep, "noise": noise, "parameter": name, "truth": value, "q05": lo, "q95": hi,
                             "covered": bool(lo <= value <= hi), "width_rel": (hi - lo) / value})
        done = pd.DataFrame(rows)
        if args.out:  # after every repetition: an interrupted study keeps what it measured
            done.to_csv(args.out, index=False)
        print(f"rep {rep + 1}/{args.reps} ({time.perf_counter() - t0:.0f} s): "
              + ", ".join(f"{m} {done[done.noise == m].covered.mean():.0%}" for m in args.models), flush=True)
    table = pd.DataFrame(rows)
    by_param = table.pivot_table(index="parameter", columns="noise", values="covered", aggfunc="mean")
    width = table.pivot_table(index="parameter", columns="noise", values="width_rel", aggfunc="median")
    print(f"\n{args.reps} simulated datasets ({args.checkpoints} {args.spacing}-spaced checkpoints per run, sigma "
          f"{args.sigma}, tau {args.tau}, ell {args.ell}); share of 90% intervals covering the truth:")
    print(by_param.to_string(float_format="%.2f"))
    n = table.groupby("noise")["covered"].agg(["mean", "size"])
    n["se"] = np.sqrt(n["mean"] * (1 - n["mean"]) / n["size"])
    print("\npooled over parameters (binomial SE ignores the correlation between a dataset's parameters):")
    print(n.to_string(float_format="%.3f"))
    print("\nmedian 90% interval width relative to the truth:")
    print(width.to_string(float_format="%.3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
