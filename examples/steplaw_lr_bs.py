"""Step Law: one joint Bayesian fit of loss over (N, D, learning rate, batch size), the optimal learning rate and batch
size as functions of (N, D) with intervals, and the comparison with the published Step Law.

    python examples/steplaw_lr_bs.py --out results/steplaw            # full fit (minutes)
    python examples/steplaw_lr_bs.py --result results/steplaw/fit.nc  # redraw from a saved fit
    python examples/steplaw_lr_bs.py --quick --out /tmp/steplaw       # smoke run

Data: dense_lr_bs_loss.csv of github.com/step-law/steplaw (Li et al. 2025; no licence, so not bundled): pass --data.
Figures: steplaw_lr.png (loss vs learning rate per (N, D) cell at the cell's best batch size) and steplaw_bs.png (loss
vs batch size at the cell's best learning rate), with 50%/90% bands of the law, the runs, the posterior optimum with
its 90% interval (shaded) and the published Step Law optimum (dashed).
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
from bayescale.analyses import steplaw as lr_bs  # noqa: E402
from bayescale.infer.settings import add_sampler_arguments, sampler_from_args  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "steplaw_lr_bs" / "data" / "dense_lr_bs_loss.csv"
OPT_NAMES = ["c_lr", "a_N", "a_D", "c_bs", "d_bs"]


def comparison_table(result) -> str:
    """Markdown table: posterior mean and 90% interval of the optimum laws vs Step Law's published values."""
    post = result["posterior"]
    lines = ["| parameter | posterior mean | 90% interval | Step Law (published) |", "|---|---|---|---|"]
    for name in OPT_NAMES:
        d = post[name].values.ravel()
        lo, hi = np.quantile(d, [0.05, 0.95])
        lines.append(f"| {name} | {d.mean():.3g} | [{lo:.3g}, {hi:.3g}] | {lr_bs.STEPLAW_PUBLISHED[name]:.3g} |")
    return "\n".join(lines)


def _panel(ax, x_obs, y_obs, x_grid, pred, opt_draws, published, label):
    q = np.quantile(pred, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    ax.fill_between(x_grid, q[0], q[4], color="C0", alpha=0.2, label="90% band")
    ax.fill_between(x_grid, q[1], q[3], color="C0", alpha=0.4, label="50% band")
    ax.plot(x_grid, q[2], color="C0", lw=1)
    ax.plot(x_obs, y_obs, "k.", ms=4, label="runs")
    lo, med, hi = np.quantile(opt_draws, [0.05, 0.5, 0.95])
    ax.axvspan(lo, hi, color="C3", alpha=0.2, label=f"{label} 90%")
    ax.axvline(med, color="C3", lw=1)
    ax.axvline(published, color="k", ls="--", lw=1, label="Step Law")
    ax.set_xscale("log")


def plot(result, table, out: Path) -> list[Path]:
    cells = table.groupby(["N", "D"])
    n_cells = len(cells)
    ncols = 5
    nrows = int(np.ceil(n_cells / ncols))
    opt = lr_bs.optimal_lr_batch(result, [n for n, _ in cells.groups], [d for _, d in cells.groups])
    pub = lr_bs.steplaw_published([n for n, _ in cells.groups], [d for _, d in cells.groups])
    paths = []
    for axis, fname in (("lr", "steplaw_lr.png"), ("batch_size", "steplaw_bs.png")):
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
        for k, ((n, d), cell) in enumerate(cells):
            ax = axes.flat[k]
            best = cell.loc[cell["loss"].idxmin()]
            other = "batch_size" if axis == "lr" else "lr"
            sub = cell[np.isclose(cell[other], best[other])]
            grid = np.geomspace(cell[axis].min() / 1.5, cell[axis].max() * 1.5, 60)
            # a figure of the fit: drawn (with a ConvergenceWarning) even for the --quick smoke run
            pred = bs.predict(result, N=n, D=d, allow_unconverged=True,
                              **{axis: grid, other: best[other]})["loss"].values.reshape(-1, grid.size)
            draws = opt["eta_opt" if axis == "lr" else "B_opt"].isel(point=k).values.ravel()
            published = float(pub["eta_opt" if axis == "lr" else "B_opt"][k])
            _panel(ax, sub[axis], sub["loss"], grid, pred, draws, published, "optimum")
            ax.set_title(f"N={n:.2g}, D={d:.2g}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("peak learning rate" if axis == "lr" else "batch size (tokens)", fontsize=7)
        for ax in axes.flat[n_cells:]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize=6)
        fig.suptitle("steplaw2025: loss vs " + ("learning rate (at each cell's best batch size)" if axis == "lr"
                     else "batch size (at each cell's best learning rate)"), fontsize=10)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/steplaw")
    parser.add_argument("--data", default=str(DATA), help="path to dense_lr_bs_loss.csv")
    parser.add_argument("--result", default=None, help="a saved fit (fit.nc) to plot instead of fitting")
    parser.add_argument("--window", type=float, default=0.03, help="keep runs within this fraction of the cell's best")
    add_sampler_arguments(parser, bs.NUTS(num_chains=2, num_warmup=500, num_samples=500))
    parser.add_argument("--quick", action="store_true", help="tiny settings: 2 cells' worth of sampling, for a smoke run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    table = lr_bs.steplaw_table(args.data, window=args.window)
    print(f"data: {table.attrs['selection']}")
    if args.result:
        result = bs.load(args.result)
    else:
        sampler = sampler_from_args(args)
        if args.quick:
            sampler = sampler.replace(num_warmup=30, num_samples=30)
        ds = lr_bs.load_steplaw(args.data, window=args.window)
        t0 = time.perf_counter()
        # run effects = one partially pooled offset per (N, D) cell: L0(N, D) need not be exact in every cell
        result = bs.fit("steplaw2025", ds, noise="run", sampler=sampler, rng_key=args.seed, num_prior_samples=50 if args.quick else 1000)
        print(f"fit took {time.perf_counter() - t0:.0f} s")
        print(f"saved {bs.save(result, out / 'fit.nc')}")
    print(comparison_table(result))
    for p in plot(result, table, out):
        print(f"figure: {p}")
    return out


if __name__ == "__main__":
    main()
