"""Kaplan et al. 2020's critical batch size (Fig. 10, Fig. 18) and L(N, S_min) as Bayesian fits.

    python examples/kaplan_batch.py --out results/kaplan_batch               # simulated scan from Kaplan's constants
    python examples/kaplan_batch.py --out results/kaplan_batch --steplaw ../shared/data/steplaw_lr_bs/data/dense_lr_bs_loss.csv

1. A batch-size scan simulated from Kaplan's constants (3M and 85M models, batches 2^14-2^21 tokens): steps and tokens
   to reach each loss, the joint hyperbola fit with B_crit(L) = B*/L^(1/α_B), figures batch_hyperbolae.png (Fig. 18)
   and batch_critical.png (Fig. 10); then L(N, S_min) on the same curves and the compute-efficient frontier
   (batch_frontier.png).
2. With ``--steplaw``: the Step Law grid (Li et al. 2025; final losses only, see docs/batch_size.md). For each model
   size and batch size, the best-learning-rate loss at each token budget D forms a pseudo-curve L(D); the tokens to
   reach each loss are interpolated along it and fitted the same way (batch_steplaw_*.png).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bayescale.analyses.kaplan import batchsize as bb  # noqa: E402
from bayescale.infer.settings import MEDIAN_START, add_sampler_arguments, sampler_from_args  # noqa: E402

SEQ_LEN = 2048  # Step Law's sequence length (CARD.md): tokens per batch = bs·2048


def steplaw_curves(path: str | Path) -> pd.DataFrame:
    """Pseudo-curves from the Step Law grid: per (N, batch size), the lowest smoothed final loss over learning rates
    at each token budget D; step = D/B."""
    df = pd.read_csv(path)
    best = df.loc[df.groupby(["N", "D", "bs"])["smooth loss"].idxmin()]
    B = best["bs"].to_numpy(float) * SEQ_LEN
    return pd.DataFrame({"run": [f"N{n:.3g}_bs{b}" for n, b in zip(best["N"], best["bs"])], "N": best["N"].astype(float),
                         "B": B, "step": best["D"].to_numpy(float) / B, "loss": best["smooth loss"].to_numpy(float),
                         "lr": best["lr"].to_numpy(float)})


def right_branch(table: pd.DataFrame, min_runs: int = 3) -> pd.DataFrame:
    """Keep, in each (model, loss) cell, the batch sizes at or above the one that needed the fewest tokens: Kaplan's
    hyperbola has E rising with B everywhere, so smaller batches that needed *more* tokens lie outside the model."""
    keep = []
    for _, cell in table.groupby("cell"):
        b_best = cell.loc[cell["E"].idxmin(), "B"]
        sub = cell[cell["B"] >= b_best]
        if len(sub) >= min_runs:
            keep.append(sub)
    out = pd.concat(keep, ignore_index=True)
    out["cell"] = out.groupby(["N", "level"], sort=True).ngroup()
    return out


def describe(result, names) -> str:
    post = result["posterior"]
    lines = []
    for name in names:
        q = np.quantile(post[name].values.reshape(-1), [0.05, 0.5, 0.95])
        ref = bb.KAPLAN_BATCH.get(name)
        lines.append(f"  {name:8s} {q[1]:.4g}  [{q[0]:.4g}, {q[2]:.4g}]" + (f"   Kaplan: {ref:.4g}" if ref else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/kaplan_batch")
    add_sampler_arguments(parser, MEDIAN_START)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny data and sampler settings (smoke test)")
    parser.add_argument("--steplaw", default=None, help="path to Step Law's dense_lr_bs_loss.csv")
    parser.add_argument("--skip-simulated", action="store_true", help="only the Step Law analysis")
    args = parser.parse_args(argv)
    out = Path(args.out)
    sampler = sampler_from_args(args)
    if args.quick:
        sampler = sampler.replace(num_chains=1, num_warmup=100, num_samples=50)
    nuts = dict(sampler=sampler, rng_key=args.seed)

    if not args.skip_simulated:
        batches = 2.0 ** np.arange(14, 22, 2 if args.quick else 1)
        curves = bb.simulate_batch_scan(batch_sizes=batches, rng_key=args.seed,
                                        steps=np.geomspace(1e3, 1e6, 12 if args.quick else 40))
        print(f"simulated scan: {curves['run'].nunique()} runs (Kaplan's constants, N = 3M and 85M)", flush=True)
        result = bb.fit_critical_batch(curves, n_levels=3 if args.quick else 6, **nuts)
        print("critical batch B_crit(L) = B*/L^(1/alpha_B) (median, 90% interval):")
        print(describe(result, ["B_star", "alpha_B", "sigma", "tau"]))
        bb.plot_hyperbolae(result, path=out / "batch_hyperbolae.png", title="simulated from Kaplan's constants")
        bb.plot_critical_batch(result, path=out / "batch_critical.png", title="simulated from Kaplan's constants")

        sizes = (3e6, 2e7, 8.5e7)
        curves = bb.simulate_batch_scan(model_sizes=sizes, batch_sizes=2.0 ** np.arange(14, 22, 3 if args.quick else 2),
                                        steps=np.geomspace(2e3, 5e5, 4 if args.quick else 10), rng_key=args.seed + 1)
        result = bb.fit_loss_steps(curves, num_iterations=40 if args.quick else 64, **nuts)
        print("L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S, S_min = S/(1 + B_crit(L)/B):")
        print(describe(result, ["N_c", "alpha_N", "S_c", "alpha_S", "B_star", "alpha_B"]))
        frontier = bb.compute_frontier(result, np.geomspace(1e-6, 1e2, 40) * bb.PF_DAY)
        bb.plot_frontier(frontier, path=out / "batch_frontier.png", title="compute-efficient frontier (simulated fit)")

    if args.steplaw:
        curves = steplaw_curves(args.steplaw)
        table = right_branch(bb.steps_to_loss(curves, n_levels=3 if args.quick else 5))
        print(f"Step Law: {curves['run'].nunique()} (N, batch) pseudo-curves, {table['cell'].nunique()} "
              f"(N, loss) cells, {len(table)} points on the right branch", flush=True)
        result = bb.fit_critical_batch(table, **nuts)
        print(describe(result, ["B_star", "alpha_B", "sigma", "tau"]))
        cells = result["cells"].to_dataset()
        b_crit = result["posterior"]["B_crit"].values.reshape(-1, cells.sizes["cell"])
        for c in range(cells.sizes["cell"]):
            q = np.quantile(b_crit[:, c], [0.05, 0.5, 0.95])
            print(f"  N={cells['N'].values[c]:.3g} L={cells['level'].values[c]:.3f}: B_crit {q[1]:.3g} tokens "
                  f"[{q[0]:.3g}, {q[2]:.3g}] = {q[1] / SEQ_LEN:.0f} sequences")
        bb.plot_hyperbolae(result, path=out / "batch_steplaw_hyperbolae.png", title="Step Law (best LR per point)")
        bb.plot_critical_batch(result, path=out / "batch_steplaw_critical.png", title="Step Law (best LR per point)")
    print(f"figures in {out.resolve()}")
    return out


if __name__ == "__main__":
    main()
