"""Catalogue laws on their real data: the SLDBench / ScaleBench training splits (bundled, CC-BY-4.0).

    python examples/sldbench_laws.py --task moe --out results/sldbench        # one task
    python examples/sldbench_laws.py --task all --out results/sldbench        # every task
    python examples/sldbench_laws.py --task vocab --quick --out /tmp/sld      # smoke run

Tasks (bayescale.datasets.sldbench.TASKS) and their laws: moe (clark2022_moe), vocab (tao2024_vocab, a negative target
fitted on the natural scale), parallel (chen2025_parscale, one fit per corpus), sparsity (frantar2023_sparsity),
domain_mixture (ye2024_mixing: one law per validation domain and model size, fitted together with fit_batch), farseer
(li2025_farseer), data_constrained (muennighoff2023), lr_bsz (steplaw2025 on the runs within 3% of each (N, D) cell's
best), lr_sweep (caballero2023_bpl on U-shaped learning-rate sweeps, one per batch size).

For each fit it prints the posterior (median, 90% interval, R-hat, bulk ESS, sd_ratio = posterior sd / prior sd), the
in-sample R² of the posterior-median law and the 90% coverage of the posterior predictive, and writes
``<task>_<group>.png`` (observed vs predicted with 90% bands).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import arviz_stats as azs  # noqa: E402
import numpy as np  # noqa: E402

import bayescale as bs  # noqa: E402
from bayescale.infer.batch import select_fit  # noqa: E402
from bayescale.datasets.sldbench import TASKS, load_task  # noqa: E402
from bayescale.infer.settings import add_sampler_arguments, sampler_from_args  # noqa: E402


def r_squared(result, ds, allow_unconverged: bool = False) -> float:
    """R² of the posterior-median law curve at the fitted points (the SLDBench score, here in-sample)."""
    pred = bs.predict(result, allow_unconverged=allow_unconverged,
                      **{n: ds[n].values for n in json.loads(result.attrs["inputs"])})
    median = np.median(pred["loss"].values.reshape(-1, ds.sizes["point"]), axis=0)
    y = ds["loss"].values
    return float(1 - np.sum((y - median) ** 2) / np.sum((y - y.mean()) ** 2))


def report(task: str, group: str, result, ds, out: Path) -> dict:
    table = bs.summary(result)
    print(f"\n== {task} / {group}: law {result.attrs['law_id']}, {ds.sizes['point']} points, "
          f"target {result.attrs.get('target', 'loss')}")
    print(table[["median", "q0.05", "q0.95", "rhat", "ess_bulk", "sd_ratio"]].to_string(float_format=lambda v: f"{v:.4g}"))
    verdict = bs.convergence(result)
    if not verdict.converged:  # a smoke run (--quick) or a hard law: the numbers below are marked, not hidden
        print("NOT CONVERGED (numbers below are not to be acted on): " + "; ".join(verdict.reasons))
    r2, cover = r_squared(result, ds, allow_unconverged=not verdict.converged), bs.check_coverage(result)
    steps = float(result["sample_stats"]["n_steps"].mean())
    print(f"max R-hat {table['rhat'].max():.3f}, divergences {table.attrs['divergences']}, leapfrog steps per draw "
          f"{steps:.0f}, in-sample R² {r2:.4f}, 90% predictive coverage {cover:.2f}")
    draws = result["posterior_predictive"]["loss"].values.reshape(-1, ds.sizes["point"])
    lo, mid, hi = np.quantile(draws, [0.05, 0.5, 0.95], axis=0)
    y = ds["loss"].values
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.errorbar(y, mid, yerr=[mid - lo, hi - mid], fmt=".", ms=3, lw=0.5, alpha=0.6)
    lims = [min(y.min(), lo.min()), max(y.max(), hi.max())]
    ax.plot(lims, lims, "k--", lw=0.8)
    ax.set_xlabel("observed")
    ax.set_ylabel("predicted (median, 90% band)")
    ax.set_title(f"{task} / {group}: R² {r2:.3f}, cover {cover:.0%}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"{task}_{group.replace('/', '_')}.png", dpi=100)
    plt.close(fig)
    return dict(task=task, group=group, law=result.attrs["law_id"], points=int(ds.sizes["point"]),
                max_rhat=float(table["rhat"].max()), divergences=int(table.attrs["divergences"]), r2=r2,
                coverage90=cover, steps_per_draw=steps)


def run_task(task: str, args, out: Path) -> list[dict]:
    spec = TASKS[task]
    datasets = load_task(task)
    if args.quick:  # a smoke run: the first group only (two for the multi-output task, to exercise fit_batch)
        datasets = dict(list(datasets.items())[: 2 if task == "domain_mixture" else 1])
    sampler = sampler_from_args(args)
    settings = dict(rng_key=args.seed, likelihood=spec.likelihood)
    rows = []
    t0 = time.perf_counter()
    if task == "domain_mixture":
        # One law per (model size, validation domain), all with the same law file and the same shapes: fit_batch
        # runs them as one vectorised NUTS run; select_fit takes each fit out (posterior only).
        batch = bs.fit_batch(spec.law, list(datasets.values()), sampler=sampler.replace(init="median"), **settings)
        names = bs.load_law(spec.law).parameter_names
        for i, (group, ds) in enumerate(datasets.items()):
            post = select_fit(batch, i)["posterior"].to_dataset()[list(names)]
            rhat = max(float(v) for v in azs.rhat(post).data_vars.values())
            print(f"{task} / {group}: max R-hat {rhat:.3f}; medians "
                  + ", ".join(f"{n} {float(post[n].median()):.3g}" for n in names))
            rows.append(dict(task=task, group=group, law=spec.law, points=int(ds.sizes["point"]), max_rhat=rhat))
    else:
        for group, ds in datasets.items():
            result = bs.fit(spec.law, ds, sampler=sampler, num_prior_samples=100 if args.quick else 1000, **settings)
            rows.append(report(task, group, result, ds, out))
    print(f"{task}: {len(datasets)} fit(s) in {time.perf_counter() - t0:.0f} s")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="all", choices=["all", *TASKS])
    parser.add_argument("--out", default="results/sldbench")
    add_sampler_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="first group of each task only (use with small settings)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in TASKS if args.task == "all" else [args.task]:
        rows += run_task(task, args, out)
    (out / "sldbench_fits.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
