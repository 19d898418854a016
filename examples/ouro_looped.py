"""Looped LMs (Ouro): one joint fit of every point of 15 training curves across N and T_m, the 3 x 5 grid of real vs
predicted curves with bands (as Ouro's Fig. 15), and the paper's generalisation splits scored by R² and by the
coverage of the 90% band on the held-out points.

    python examples/ouro_looped.py --out results/ouro              # fit and grid (about 3 minutes on 2 CPU cores)
    python examples/ouro_looped.py --out results/ouro --splits     # + 3-of-5 sizes, 25/50/75% prefixes, leave one T_m out

Data: simulated by bayescale.validation.simulate.ouro_curves (Ouro's runs are not public): 5 sizes (53M-1.364B) x T_m in
{2, 4, 8}, checkpoints from 1M to 20B tokens, 1% residual noise correlated along log-tokens and a 0.5% run effect.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import bayescale as bs
from bayescale.results.plots import plot_curve_grid
from bayescale.infer.settings import add_sampler_arguments, sampler_from_args
from bayescale.validation.simulate import OURO_TRUTH, ouro_curves
from bayescale.validation.holdout import validate

#: R² the paper reports (App. D.2) for the same questions, on its real runs.
PAPER_R2 = {"all points": 0.9596, "3 of 5 sizes": 0.9542, "first 25%": 0.9385, "first 50%": 0.9609, "first 75%": 0.962,
            "leave one T_m out": 0.9581}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/ouro")
    parser.add_argument("--checkpoints", type=int, default=40, help="evenly spaced checkpoints per curve (+6 early)")
    parser.add_argument("--noise", default="run+ou", help="noise model of the fit (compare with iid)")
    add_sampler_arguments(parser, bs.NUTS(num_warmup=500, num_samples=500))
    parser.add_argument("--splits", action="store_true", help="also run the generalisation splits (refits)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    table = ouro_curves(checkpoints=args.checkpoints, seed=args.seed)
    table.to_csv(out / "ouro_curves.csv", index=False)
    ds = bs.load_runs(table)
    sampler = sampler_from_args(args)
    settings = dict(sampler=sampler, noise=args.noise, rng_key=args.seed)
    print(f"data: {ds.sizes['point']} points of {table['run'].nunique()} simulated curves; fitting ouro2025 "
          f"(noise {args.noise}) ...", flush=True)
    t0 = time.perf_counter()
    result = bs.fit("ouro2025", ds, **settings)
    print(f"fit took {time.perf_counter() - t0:.1f} s")
    bs.save(result, out / "fit.nc")
    summary = bs.summary(result)
    summary["truth"] = pd.Series(OURO_TRUTH)
    print(summary[["median", "q0.05", "q0.95", "rhat", "ess_bulk", "truth"]].to_string(float_format="%.4g"))
    grid = out / "ouro_grid.png"
    plot_curve_grid(result, rows="T_m", cols="N", path=grid,
                    title=f"ouro2025, noise {args.noise}: simulated curves, posterior predictive median, 50% and 90% bands")
    print(f"coverage of the 90% predictive band, all points: {bs.check_coverage(result):.1%}")
    print(f"wrote {grid}")

    if args.splits:
        fit_kwargs = {"sampler": sampler.replace(progress_bar=False), "noise": args.noise}
        parts = [
            ("3 of 5 sizes", dict(split="largest", by="N", holdout=2)),
            ("prefix", dict(split="prefix", by="D", fractions=(0.25, 0.5, 0.75))),
            ("leave one T_m out", dict(split="leave_one_out", by="T_m")),
        ]
        # Two loop counts cannot identify the loop term's 3 constants: the priors carry them (a warning says so).
        fit_kwargs["require_identifiable"] = False
        rows = []
        for name, split in parts:
            def draw(fold, method, fit, train, test, _name=split["split"]):
                path = out / f"split_{_name}_{fold.name.replace(' ', '_').replace('%', 'pct').replace('=', '')}.png"
                plot_curve_grid(fit, heldout=test, path=path, title=f"{fold.name}: fitted (blue) and held-out (red)")

            res = validate("ouro2025", ds, fit_kwargs=fit_kwargs, rng_key=args.seed, on_fold=draw, **split)
            res.insert(0, "question", name)
            res.attrs.clear()  # per-point tables differ between splits; pd.concat compares attrs
            rows.append(res)
        splits = pd.concat(rows, ignore_index=True)
        splits["paper_r2"] = [PAPER_R2.get(q if q != "prefix" else f"first {h.split(' ')[1]}", float("nan"))
                              for q, h in zip(splits["question"], splits["fold"])]
        splits.to_csv(out / "splits.csv", index=False)
        print(splits[["question", "held_out", "n_train", "n_test", "r2", "paper_r2", "abs_rel_err", "cover50",
                      "cover90"]].to_string(index=False, float_format="%.4g"))
        print(f"wrote {out / 'splits.csv'}")
    return out


if __name__ == "__main__":
    main()
