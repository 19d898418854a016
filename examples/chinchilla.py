"""The main job: a joint Bayesian fit of the Chinchilla law to the 240 Chinchilla runs, PPC bands, a compute plan,
and a report on disk.

    python examples/chinchilla.py --out results/chinchilla

Data: Besiroglu et al. 2024's reconstruction of Hoffmann et al. 2022 Fig. 4 (bundled; see bayescale/datasets).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import bayescale as bs
from bayescale.datasets import load_chinchilla
from bayescale.report import plan_table
from bayescale.infer.settings import add_sampler_arguments, sampler_from_args

BUDGET = 5.76e23  # Chinchilla's training compute (Hoffmann et al. 2022, Sec. 4), the budget Besiroglu et al. check


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/chinchilla")
    add_sampler_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    sampler = sampler_from_args(args)

    ds = load_chinchilla()
    print(f"data: {ds.sizes['point']} Chinchilla runs; fitting hoffmann2022 with NUTS "
          f"({sampler.num_chains} chains x {sampler.num_warmup} warmup + {sampler.num_samples} draws) ...", flush=True)
    t0 = time.perf_counter()
    result = bs.fit("hoffmann2022", ds, sampler=sampler, rng_key=args.seed)
    print(f"fit took {time.perf_counter() - t0:.1f} s")
    fit_path = bs.save(result, out / "fit.nc")
    print(bs.summary(result).to_string(float_format="%.4g"))

    report = bs.write_report(result, out, budgets=[BUDGET])
    plan = plan_table(result, [BUDGET])
    print(f"\ncompute-optimal allocation at C = {BUDGET:.3g} FLOP (median and 90% interval):")
    for var, label in [("N_opt", "N*"), ("D_opt", "D*"), ("tokens_per_param", "D*/N*"), ("loss_opt", "L*")]:
        row = plan.loc[(BUDGET, var)]
        print(f"  {label:7s} {row['median']:.3g}  [{row['q0.05']:.3g}, {row['q0.95']:.3g}]")
    print(f"coverage of the 90% predictive band: {bs.check_coverage(result):.1%}")
    trend = bs.check_residuals(result)  # a law can cover 90% and still miss systematically along an input
    print("residual trend along " + ", ".join(trend["covariate"]) + ": "
          + ("none" if trend.attrs["passes"] else trend.attrs["message"]))
    print(f"\nresults in {out.resolve()}:\n  fit     {fit_path}\n  figure  {out / 'ppc.png'}\n  report  {report}")
    return out


if __name__ == "__main__":
    main()
