"""Does choosing new runs with `rank_next_experiments(..., budget=B)` shrink the target interval more than spending the
same budget on runs picked at random?

Simulated study with real refits (NUTS via `bs.fit_batch`, no shortcuts). Each simulated data set: the Chinchilla law
at Besiroglu et al.'s constants with 1% log-normal noise on a 3 x 3 grid of small runs (N 5e7-5e8, D 1e9-1e10). A
pool of 16 candidate runs from inside the data to a decade beyond it (N 2e8-5e9 x D 5e9-1e11, cost 6ND =
6e18-3e21 FLOP), each with one
fixed simulated outcome that every strategy sees. Target: the loss at N = 7e10, D = 1.4e12 (Chinchilla).
For each budget B:
- "ranked": the set `rank_next_experiments` chooses within B from the initial fit;
- "random": the pool in a random order, each run taken if it still fits in B (so the budget is spent as fully);
then refit on the initial runs plus the chosen ones and record the 90% interval width of the target's loss, and
whether the interval covers the true loss. Prints a table; writes next_experiment.json and next_experiment.png.

    python benchmarks/next_experiment.py --out docs/figures     # the study in docs/planning.md (~17 min, 2 cores)
    python benchmarks/next_experiment.py --summarise docs/figures/next_experiment.json --out /tmp   # its table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.infer.batch import select_fit
from bayescale.planning.design import rank_next_experiments
from bayescale.results.predict import draws_log_law

sys.path.insert(0, os.path.dirname(__file__))
from _table import markdown  # noqa: E402

TRUTH = dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)  # Besiroglu et al. 2024
TARGET = {"N": 7e10, "D": 1.4e12}
SIGMA = 0.01  # log-loss noise: ~0.02 nats at loss 2, the seed noise LAWS.md quotes


def pool_of() -> pd.DataFrame:
    pool = pd.DataFrame([(n, d) for n in (2e8, 5e8, 1.5e9, 5e9) for d in (5e9, 1.5e10, 4e10, 1e11)], columns=["N", "D"])
    pool["cost"] = 6 * pool["N"] * pool["D"]
    return pool


def simulate(law, n, d, rng) -> np.ndarray:
    mean = np.asarray(law.predict(TRUTH, N=np.asarray(n, float), D=np.asarray(d, float)))
    return mean * np.exp(SIGMA * rng.standard_normal(mean.shape))


def random_set(cost: np.ndarray, budget: float, rng) -> list[int]:
    chosen, spent = [], 0.0
    for j in rng.permutation(cost.size):
        if spent + cost[j] <= budget:
            chosen.append(int(j))
            spent += cost[j]
    return chosen


def target_interval(result, law, i: int) -> tuple[float, float]:
    """5% and 95% quantiles of the law's loss at the target for fit ``i`` of a batch."""
    post = result["posterior"].to_dataset().isel(fit=i)
    params = {n: post[n].values.reshape(-1) for n in law.parameter_names}
    loss = np.exp(draws_log_law(law, params, {k: np.array([v]) for k, v in TARGET.items()})[:, 0])
    lo, hi = np.quantile(loss, [0.05, 0.95])
    return float(lo), float(hi)


def run(args) -> dict:
    law = bs.load_law("hoffmann2022")
    truth_loss = float(law.predict(TRUTH, **TARGET))
    pool = pool_of()
    cost = pool["cost"].to_numpy()
    sampler = dict(num_chains=args.num_chains, num_warmup=args.num_warmup, num_samples=args.num_samples)
    bases, outcomes = [], []
    for ds in range(args.data_sets):
        rng = np.random.default_rng(1000 + ds)
        grid = pd.DataFrame([(n, d) for n in np.geomspace(5e7, 5e8, 3) for d in np.geomspace(1e9, 1e10, 3)],
                            columns=["N", "D"])
        grid["loss"] = simulate(law, grid["N"], grid["D"], rng)
        bases.append(grid)
        outcomes.append(simulate(law, pool["N"], pool["D"], rng))

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        initial = bs.fit_batch(law, bases, rng_key=0, **sampler)
    t_initial = time.perf_counter() - t0

    plans, tables = [], []
    t0 = time.perf_counter()
    for ds in range(args.data_sets):
        one = select_fit(initial, ds)
        for budget in args.budgets:
            ranking = rank_next_experiments(one, pool, target=TARGET, budget=budget, law=law)
            ranked = [int(pool.index[(pool["N"] == r.N) & (pool["D"] == r.D)][0])
                      for r in ranking.itertuples() if r.selected]
            rng = np.random.default_rng([ds, int(np.log10(budget) * 100)])
            choices = [("ranked", 0, ranked)] + [("random", s, random_set(cost, budget, rng))
                                                  for s in range(args.random_sets)]
            for strategy, seed, picks in choices:
                extra = pool.iloc[picks][["N", "D"]].assign(loss=outcomes[ds][picks])
                tables.append(pd.concat([bases[ds], extra], ignore_index=True))
                # the estimator's forecast for this set: with a budget equal to its cost, the best affordable subset
                # is the whole set (more runs never raise the Bayes-linear variance)
                forecast = ranking if strategy == "ranked" else rank_next_experiments(
                    one, pool.iloc[picks], target=TARGET, budget=float(cost[picks].sum()), law=law)
                plans.append(dict(data_set=ds, budget=budget, strategy=strategy, seed=seed, picks=picks,
                                  spent=float(cost[picks].sum()),
                                  predicted_shrink=forecast.attrs["set_interval_shrink"]))
    t_design = time.perf_counter() - t0

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refits = bs.fit_batch(law, tables, rng_key=1, **sampler)
    t_refit = time.perf_counter() - t0
    widths0 = [target_interval(initial, law, ds) for ds in range(args.data_sets)]
    diag = refits["fit_diagnostics"].to_dataset()
    for i, p in enumerate(plans):
        lo, hi = target_interval(refits, law, i)
        lo0, hi0 = widths0[p["data_set"]]
        p.update(width=hi - lo, initial_width=hi0 - lo0, covers=bool(lo <= truth_loss <= hi),
                 max_rhat=float(diag["rhat"].isel(fit=i).max()), divergences=int(diag["divergences"].isel(fit=i)))
    return dict(plans=plans, pool=pool.to_dict("list"), truth_loss=truth_loss,
                seconds=dict(initial_fits=t_initial, design=t_design, refits=t_refit, n_refits=len(tables)),
                settings=vars(args) | {"target": TARGET, "truth": TRUTH, "sigma": SIGMA})


def summarise(out: dict) -> pd.DataFrame:
    """Per budget: widths relative to the initial fit's, ranked vs random (all pairs within a data set), and per data
    set the ranked width over the geometric mean of its random sets' widths: how many data sets favour the ranking,
    the geometric mean of that ratio with a 90% bootstrap interval over data sets, and a Wilcoxon signed-rank p-value
    (the data sets are independent; the pairs within one are not)."""
    from scipy.stats import wilcoxon

    df = pd.DataFrame(out["plans"])
    rng = np.random.default_rng(0)
    rows = []
    for budget, g in df.groupby("budget"):
        ranked = g[g.strategy == "ranked"].set_index("data_set")
        random = g[g.strategy == "random"]
        log_ratio = np.log(ranked["width"]) - np.log(random["width"]).groupby(random["data_set"]).mean()
        boot = np.exp([rng.choice(log_ratio.values, log_ratio.size).mean() for _ in range(4000)])
        pairs = random.merge(ranked[["width"]].rename(columns={"width": "width_ranked"}), left_on="data_set",
                             right_index=True)
        rows.append({
            "budget (FLOP)": f"{budget:.2g}",
            "ranked: spent": f"{ranked['spent'].median():.2g}",
            "random: spent": f"{random['spent'].median():.2g}",
            "ranked: width / initial": f"{(ranked['width'] / ranked['initial_width']).median():.3f}",
            "random: width / initial": f"{(random['width'] / random['initial_width']).median():.3f}",
            "forecast sd ratio ranked / random": f"{ranked['predicted_shrink'].median():.3f} / "
                                                  f"{random['predicted_shrink'].median():.3f}",
            "ranked narrower": f"{(pairs['width_ranked'] < pairs['width']).mean():.0%} of {len(pairs)}",
            "median ratio ranked/random": f"{(pairs['width_ranked'] / pairs['width']).median():.3f}",
            "data sets favouring ranked": f"{int((log_ratio < 0).sum())} of {log_ratio.size}",
            "geo-mean ratio [90% bootstrap]": f"{np.exp(log_ratio.mean()):.3f} [{np.quantile(boot, 0.05):.3f}, "
                                              f"{np.quantile(boot, 0.95):.3f}]",
            "Wilcoxon p": f"{wilcoxon(log_ratio).pvalue:.2g}" if log_ratio.size > 1 else "",
            "_p": wilcoxon(log_ratio).pvalue if log_ratio.size > 1 else np.nan,
            # simultaneous over the budgets: Bonferroni's 90% level for each of the len(budgets) intervals
            "_boot": boot,
            "coverage ranked / random": f"{ranked['covers'].mean():.0%} / {random['covers'].mean():.0%}",
        })
    table = pd.DataFrame(rows)
    # Three budgets are three tests: Holm's step-down adjustment of the Wilcoxon p-values (family-wise level), and
    # bootstrap intervals at the Bonferroni level 1 - 0.10 / (number of budgets), simultaneous over the budgets.
    # (scipy has only FDR procedures; statsmodels' multipletests would be a new dependency for these three lines.)
    p = table.pop("_p").to_numpy(dtype=float)
    order = np.argsort(p)
    holm = np.maximum.accumulate(np.minimum(1.0, (p.size - np.arange(p.size)) * p[order]))
    adjusted = np.empty_like(p)
    adjusted[order] = holm
    table["Holm-adjusted p"] = [f"{v:.2g}" for v in adjusted]
    level = 0.10 / len(table)
    table["geo-mean ratio, simultaneous 90% interval"] = [
        f"[{np.quantile(b, level / 2):.3f}, {np.quantile(b, 1 - level / 2):.3f}]" for b in table.pop("_boot")]
    return table


def forecast_agreement(out: dict) -> dict:
    """Does the estimator order sets as the refits do? Spearman rank correlation, within each (data set, budget),
    between the forecast sd ratio and the realised width of its 1 ranked + random sets, averaged."""
    from scipy.stats import spearmanr

    df = pd.DataFrame(out["plans"])
    rhos = [spearmanr(g["predicted_shrink"], g["width"]).statistic for _, g in df.groupby(["data_set", "budget"])
            if g["predicted_shrink"].nunique() > 1]
    return dict(mean_spearman=float(np.nanmean(rhos)), groups=len(rhos),
                max_rhat=float(df["max_rhat"].max()), fits_with_divergences=int((df["divergences"] > 0).sum()),
                fits=len(df))


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(out["plans"])
    df["rel"] = df["width"] / df["initial_width"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    ax = axes[0]
    budgets = sorted(df["budget"].unique())
    for name, color, shift in (("random", "0.45", 0.96), ("ranked", "C3", 1.04)):
        g = df[df.strategy == name]
        q = np.array([np.quantile(g[g.budget == b]["rel"], [0.25, 0.5, 0.75]) for b in budgets])
        x = np.array(budgets) * shift
        ax.errorbar(x, q[:, 1], yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]], fmt="o-", color=color, capsize=3,
                    label=f"{name}: median, quartiles over data sets" + (" and draws" if name == "random" else ""))
    ax.set_xscale("log")
    ax.set_xlabel("budget for new runs (FLOP)")
    ax.set_ylabel("90% interval width / before the new runs")
    ax.set_title("L(7e10, 1.4e12) after refitting")
    ax.legend(fontsize=8)
    ax = axes[1]
    for k, b in enumerate(budgets):
        g = df[df.budget == b]
        ranked = g[g.strategy == "ranked"].set_index("data_set")["width"]
        rnd = g[g.strategy == "random"].groupby("data_set")["width"].median()
        ax.scatter(rnd, ranked.loc[rnd.index], s=18, color=f"C{k}", label=f"B = {b:.2g}")
    lim = [df["width"].min() * 0.9, df["width"].max() * 1.1]
    ax.plot(lim, lim, color="0.6", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("random: median width over random sets")
    ax.set_ylabel("ranked: width")
    ax.set_title("per data set (below the line: ranked narrower)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--data-sets", type=int, default=24)
    p.add_argument("--random-sets", type=int, default=3)
    p.add_argument("--budgets", type=float, nargs="+", default=[6e20, 1.5e21, 3e21])
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--num-warmup", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--summarise", metavar="JSON", default=None,
                   help="print the table of a saved next_experiment.json and redraw its figure; no fitting")
    args = p.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        out = json.loads(Path(args.summarise).read_text())
        print(markdown(summarise(out).to_dict("records")))
        print(json.dumps(forecast_agreement(out)))
        plot(out, out_dir / "next_experiment.png")
        return out
    out = run(args)
    table = summarise(out)
    print(markdown(table.to_dict("records")))
    print("seconds: " + ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in out["seconds"].items()))
    out["summary"] = table.to_dict("records")
    out["forecast_agreement"] = forecast_agreement(out)
    print(json.dumps(out["forecast_agreement"]))
    (out_dir / "next_experiment.json").write_text(json.dumps(out, indent=1, default=float))
    plot(out, out_dir / "next_experiment.png")
    return out


if __name__ == "__main__":
    main()
