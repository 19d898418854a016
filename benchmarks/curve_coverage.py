"""Do 90% intervals from whole training curves cover the truth? The correlated noise model against independent checkpoints.

    PYTHONPATH=. python benchmarks/curve_coverage.py                    # 40 simulated datasets, batched fits
    PYTHONPATH=. python benchmarks/curve_coverage.py --reps 5 --out results/coverage.csv
    PYTHONPATH=. python benchmarks/curve_coverage.py --sizes 4 --loop     # the first study's design, one fit at a time
    PYTHONPATH=. python benchmarks/curve_coverage.py --checkpoints 32 --spacing linear   # checkpoints logged every k steps

Each repetition simulates curves from hoffmann2022 at fixed constants with the noise the curve model assumes
(``bayescale.validation.simulate.simulate_curves``: 0.5% run effect, 1% residuals correlated along log-tokens with length 0.5),
16 runs (8 sizes from 5e7 to 5e9 x 2 seeds) x 16 checkpoints, and fits it twice: ``noise="run+ou"`` and ``noise="iid"`` (every
checkpoint independent). It records whether each true constant lies inside its central 90% posterior interval. The
correlated model should cover in about 90% of cases (85-95% over enough repetitions); the independent one, which
counts 16 correlated checkpoints as 16 independent measurements, should under-cover (the negative control).
Datasets are fitted in batches of ``--batch`` with ``bayescale.infer.batch.fit_batch`` (one compiled, vectorised NUTS run
per batch and noise model; ``--loop`` fits one at a time with ``bayescale.fit``). Prints one table; the numbers in
docs/noise.md come from this script.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.validation.simulate import simulate_curves

TRUTH = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)
NOISE = dict(sigma=0.01, tau=0.005, ell=0.5)


#: ``--truth prior``: E's prior with a fixed bound (as in SBC, bayescale.validation.calibration) so that the law the truth is
#: drawn from and the law that is fitted are the same distribution; the fit uses the same override.
PRIOR_OVERRIDES = {"E": "Uniform(0, 2)"}


def prior_truth(seed: int) -> tuple[dict, dict]:
    """Law constants and noise parameters drawn from the fitted model's own priors (hoffmann2022 + noise priors)."""
    import jax

    from bayescale.infer.model import NOISE_PRIORS, resolve_priors
    from bayescale.infer.noise import Noise

    priors = resolve_priors(bs.load_law("hoffmann2022"), "normal", PRIOR_OVERRIDES, Noise.parse("run+ou"))
    keys = jax.random.split(jax.random.PRNGKey(seed), len(priors))
    draw = {n: float(p.distribution({}).sample(k)) for (n, p), k in zip(priors.items(), keys)}
    noise = {n: draw.pop(n) for n in list(draw) if n in NOISE_PRIORS}
    return draw, noise


def dataset(seed: int, checkpoints: int = 16, spacing: str = "log", noise: dict | None = None,
            sizes: int = 8, truth: dict | None = None) -> pd.DataFrame:
    runs = pd.DataFrame([{"run": f"N{n:.2g}-s{s}", "N": n} for n in np.geomspace(5e7, 5e9, sizes) for s in range(2)])
    if spacing == "log":
        tokens = np.geomspace(1e9, 1e11, checkpoints)
    else:  # logged every k steps, as labs do: dense in log-tokens late in the run
        tokens = np.linspace(1e11 / checkpoints, 1e11, checkpoints)
    return simulate_curves("hoffmann2022", truth or TRUTH, runs, tokens, seed=seed, **(noise or NOISE))


def pooled_coverage(table: pd.DataFrame) -> pd.DataFrame:
    """Coverage pooled over parameters, per noise model, with two standard errors.

    ``se_clustered``: the intervals of one dataset are covered or missed together (E, B and β move with one offset of
    the curves, A and α with another), so the datasets, not the intervals, are the independent units. The pooled share
    is the mean over datasets of each dataset's share, and its SE the sd of those shares over sqrt(datasets) (the
    cluster-robust SE of a mean with equal cluster sizes). ``se_binomial`` treats every interval as independent and
    understates the error when the parameters of a dataset are covered together.
    """
    rows = []
    for noise, g in table.groupby("noise"):
        per_dataset = g.groupby("rep")["covered"].mean()
        k = per_dataset.size
        share = float(per_dataset.mean())
        rows.append({"noise": noise, "coverage": share, "intervals": len(g), "datasets": k,
                     "se_clustered": float(per_dataset.std(ddof=1) / np.sqrt(k)) if k > 1 else np.nan,
                     "se_binomial": float(np.sqrt(share * (1 - share) / len(g)))})
    return pd.DataFrame(rows).set_index("noise")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=40)
    p.add_argument("--sizes", type=int, default=8, help="model sizes (2 seeds each)")
    p.add_argument("--truth", choices=["fixed", "prior"], default="fixed",
                   help="fixed: the constants TRUTH for every dataset (student-t fit); prior: constants and noise "
                        "drawn per dataset from the fitted model's priors (Normal likelihood, E ~ Uniform(0, 2)), "
                        "where a correct model covers 90%% exactly on average")
    p.add_argument("--batch", type=int, default=10, help="datasets per batched fit")
    p.add_argument("--loop", action="store_true", help="fit one dataset at a time (bayescale.fit) instead")
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
    p.add_argument("--summarise", metavar="CSV", default=None,
                   help="print the tables of a CSV written by --out (per-dataset rows); no fitting")
    args = p.parse_args(argv)
    if args.summarise:
        table = pd.read_csv(args.summarise)
        print(table.pivot_table(index="parameter", columns="noise", values="covered", aggfunc="mean")
              .to_string(float_format="%.2f"))
        print(pooled_coverage(table).to_string(float_format="%.3f"))
        return 0
    rows = []
    t0 = time.perf_counter()
    noise_args = dict(sigma=args.sigma, tau=args.tau, ell=args.ell)
    settings = dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples)
    for start in range(0, args.reps, 1 if args.loop else args.batch):
        reps = list(range(start, min(start + (1 if args.loop else args.batch), args.reps)))
        truths = [prior_truth(1000 + r) if args.truth == "prior" else (TRUTH, noise_args) for r in reps]
        dss = [bs.load_runs(dataset(1000 + r, args.checkpoints, args.spacing, nz, args.sizes, th),
                            check_units=args.truth == "fixed") for r, (th, nz) in zip(reps, truths)]
        if args.truth == "prior":
            settings.update(likelihood="normal", priors=PRIOR_OVERRIDES)
        for noise in args.models:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if args.loop:
                    posts = [bs.fit("hoffmann2022", dss[0], noise=noise, rng_key=reps[0], progress_bar=False,
                                    **settings).posterior]
                else:
                    batch = bs.fit_batch("hoffmann2022", dss, noise=noise, rng_key=start, **settings).posterior
                    posts = [batch.isel(fit=i) for i in range(len(reps))]
            for rep, post, (truth, _) in zip(reps, posts, truths):
                for name, value in truth.items():
                    lo, hi = np.quantile(post[name].values, [0.05, 0.95])
                    rows.append({"rep": rep, "noise": noise, "parameter": name, "truth": value, "q05": lo,
                                 "q95": hi, "covered": bool(lo <= value <= hi), "width_rel": (hi - lo) / value})
        done = pd.DataFrame(rows)
        if args.out:  # after every batch: an interrupted study keeps what it measured
            done.to_csv(args.out, index=False)
        print(f"rep {reps[-1] + 1}/{args.reps} ({time.perf_counter() - t0:.0f} s): "
              + ", ".join(f"{m} {done[done.noise == m].covered.mean():.0%}" for m in args.models), flush=True)
    table = pd.DataFrame(rows)
    by_param = table.pivot_table(index="parameter", columns="noise", values="covered", aggfunc="mean")
    width = table.pivot_table(index="parameter", columns="noise", values="width_rel", aggfunc="median")
    truth = ("constants and noise drawn from the priors" if args.truth == "prior"
             else f"sigma {args.sigma}, tau {args.tau}, ell {args.ell}")
    print(f"\n{args.reps} simulated datasets ({args.sizes} sizes x 2 seeds, {args.checkpoints} {args.spacing}-spaced "
          f"checkpoints per run, {truth}); share of 90% intervals covering the truth:")
    print(by_param.to_string(float_format="%.2f"))
    print("\npooled over parameters, with standard errors clustered by dataset:")
    print(pooled_coverage(table).to_string(float_format="%.3f"))
    print("\nmedian 90% interval width relative to the truth:")
    print(width.to_string(float_format="%.3f"))
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
