"""The data-constrained law of Muennighoff et al. (2023) fitted to their C4 runs, and its shape parameters (alpha,
beta, R_D*, R_N*) compared with the published ones.

    python examples/data_constrained.py --out results/data_constrained
    python examples/data_constrained.py --quick --out /tmp/dc      # smoke run
    python examples/data_constrained.py --quick --no-pointwise --init median --chain-method sequential --out /tmp/dc
                                                                   # the tests' smoke run: the least to compile

Data: the bundled C4 runs (bayescale/datasets/datablations.py; runs with more than 100 epochs or loss above 6 left
out). Figure dataconstr_epochs.png: loss vs epochs at the three isoFLOP budgets (2.8B/55B, 4.2B/84B, 8.7B/178B
tokens), runs and the law's 50%/90% bands, with the published law (dashed). ``--no-pointwise`` saves the fit without
the per-point groups (posterior predictive, log-likelihood, prior predictive), which the table and figure do not read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bayescale as bs  # noqa: E402
from bayescale.datasets.datablations import datablations_table, load_datablations  # noqa: E402
from bayescale.infer.settings import add_sampler_arguments, sampler_from_args  # noqa: E402

BUDGETS = [(2.81e9, 5.5e10), (4.2465e9, 8.4e10), (8.67e9, 1.78e11)]  # the isoFLOP runs (Muennighoff et al. Fig. 4)


def comparison_table(result) -> str:
    law = bs.load_law("muennighoff2023")
    pub = law.reference("muennighoff2023").values
    post = result["posterior"]
    lines = ["| parameter | posterior mean | 90% interval | Muennighoff et al. 2023 |", "|---|---|---|---|"]
    for name in law.parameter_names:
        d = post[name].values.ravel()
        lo, hi = np.quantile(d, [0.05, 0.95])
        lines.append(f"| {name} | {d.mean():.4g} | [{lo:.4g}, {hi:.4g}] | {pub[name]:.4g} |")
    return "\n".join(lines)


def plot(result, out: Path) -> Path:
    table = datablations_table()
    law = bs.load_law("muennighoff2023")
    pub = law.reference("muennighoff2023").values
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (n, d) in zip(axes, BUDGETS):
        runs = table[np.isclose(table["N"], n, rtol=0.01) & np.isclose(table["D"], d, rtol=0.01)]
        epochs = np.geomspace(1, 60, 50)
        # a figure of the fit: drawn (with a ConvergenceWarning) even for the --quick smoke run that cannot converge
        pred = bs.predict(result, N=n, D=d, U_D=d / epochs, allow_unconverged=True)["loss"].values.reshape(-1, epochs.size)
        q = np.quantile(pred, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        ax.fill_between(epochs, q[0], q[4], color="C0", alpha=0.2, label="90% band")
        ax.fill_between(epochs, q[1], q[3], color="C0", alpha=0.4, label="50% band")
        ax.plot(epochs, q[2], color="C0", lw=1)
        ax.plot(epochs, np.asarray(law.predict(pub, N=n, D=d, U_D=d / epochs)), "k--", lw=1, label="published")
        ax.plot(runs["epochs"], runs["loss"], "ko", ms=4, label="runs")
        ax.set_xscale("log")
        ax.set_xlabel("epochs (D / U_D)")
        ax.set_title(f"N = {n:.2g}, D = {d:.2g}", fontsize=9)
    axes[0].set_ylabel("final validation loss (nats)")
    axes[0].legend(fontsize=7)
    fig.suptitle("muennighoff2023 on the C4 runs: loss vs repetition at fixed compute", fontsize=10)
    fig.tight_layout()
    path = out / "dataconstr_epochs.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/data_constrained")
    add_sampler_arguments(parser, bs.NUTS(num_chains=2))
    parser.add_argument("--quick", action="store_true", help="tiny sampler settings, for a smoke run")
    parser.add_argument("--no-pointwise", action="store_true",
                        help="fit without the per-point groups, which the table and figure do not read (less to "
                             "compile, the same posterior)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    ds = load_datablations()
    print(f"data: {ds.attrs['source']}")
    sampler = sampler_from_args(args)
    if args.quick:
        sampler = sampler.replace(num_warmup=30, num_samples=30)
    t0 = time.perf_counter()
    result = bs.fit("muennighoff2023", ds, sampler=sampler, rng_key=args.seed, pointwise=not args.no_pointwise,
                    num_prior_samples=50 if args.quick else 1000)
    print(f"fit took {time.perf_counter() - t0:.0f} s; saved {bs.save(result, out / 'fit.nc')}")
    print(comparison_table(result))
    print(f"figure: {plot(result, out)}")
    return out


if __name__ == "__main__":
    main()
