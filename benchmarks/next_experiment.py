"""Does following `rank_next_experiments` shrink the target interval faster per FLOP than picking runs at random?

Simulated study with real refits (NUTS, no shortcuts): data from the Chinchilla law at Besiroglu et al.'s constants
with 1% log-normal noise on a small 3 x 3 grid of runs (N 5e7-5e8, D 1e9-1e10); a pool of 9 candidate runs one
decade further out (N 1e9-5e9, D 2e10-1e11, cost 6ND); target: the loss at N = 7e10, D = 1.4e12 (Chinchilla).
Each strategy picks ``--steps`` runs one at a time, observes the simulated outcome, refits, and records the 90%
interval width of the target. "ranked" takes the top of the ranking (variance reduction per FLOP); "random" picks
uniformly from the remaining pool (several seeds). Repeated over ``--data-seeds`` simulated data sets.

    python benchmarks/next_experiment.py --out docs/figures     # ~15 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.planning import rank_next_experiments

TRUTH = dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)  # Besiroglu et al. 2024
TARGET = {"N": 7e10, "D": 1.4e12}
SIGMA = 0.01  # log-loss noise: ~0.02 nats at loss 2, the seed noise LAWS.md quotes


def simulate(law, n, d, rng):
    mean = np.asarray(law.predict(TRUTH, N=np.asarray(n, float), D=np.asarray(d, float)))
    return mean * np.exp(SIGMA * rng.standard_normal(mean.shape))


def refit(table, args, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bs.fit("hoffmann2022", table, rng_key=seed, num_chains=args.num_chains, num_warmup=args.num_warmup,
                        num_samples=args.num_samples, progress_bar=False)
        pred = bs.predict(result, **TARGET)["loss"].values.reshape(-1)
    lo, hi = np.quantile(pred, [0.05, 0.95])
    return result, float(hi - lo)


def run(args) -> dict:
    law = bs.load_law("hoffmann2022")
    pool = pd.DataFrame([(n, d) for n in (1e9, 2e9, 5e9) for d in (2e10, 5e10, 1e11)], columns=["N", "D"])
    pool["cost"] = 6 * pool["N"] * pool["D"]
    traces = []
    for data_seed in range(args.data_seeds):
        rng = np.random.default_rng(1000 + data_seed)
        grid = [(n, d) for n in np.geomspace(5e7, 5e8, 3) for d in np.geomspace(1e9, 1e10, 3)]
        base = pd.DataFrame(grid, columns=["N", "D"])
        base["loss"] = simulate(law, base["N"], base["D"], rng)
        outcomes = simulate(law, pool["N"], pool["D"], rng)  # one fixed outcome per candidate: both strategies see it
        result0, width0 = refit(base, args, 0)
        strategies = [("ranked", None)] + [("random", s) for s in range(args.random_seeds)]
        for name, seed in strategies:
            t0 = time.perf_counter()
            table, result, remaining = base.copy(), result0, list(range(len(pool)))
            spent, widths, picks = [0.0], [width0], []
            pick_rng = np.random.default_rng(seed)
            for step in range(args.steps):
                if name == "ranked":
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        ranking = rank_next_experiments(result, pool.iloc[remaining], target=TARGET, rng_key=step)
                    j = int(pool.index[(pool["N"] == ranking["N"][0]) & (pool["D"] == ranking["D"][0])][0])
                else:
                    j = int(pick_rng.choice(remaining))
                remaining.remove(j)
                picks.append(j)
                row = pool.loc[j]
                table = pd.concat([table, pd.DataFrame([{"N": row.N, "D": row.D, "loss": outcomes[j]}])],
                                  ignore_index=True)
                result, width = refit(table, args, step + 1)
                spent.append(spent[-1] + row.cost)
                widths.append(width)
            traces.append(dict(data_seed=data_seed, strategy=name, seed=seed, spent=spent, widths=widths, picks=picks,
                               seconds=time.perf_counter() - t0))
            print(f"data {data_seed} {name:6s} {seed}: widths {np.round(widths, 4)} spent {[f'{s:.2e}' for s in spent[1:]]} "
                  f"picks {picks}", flush=True)
    return dict(pool=pool.to_dict("list"), traces=traces, settings=vars(args) | {"target": TARGET, "truth": TRUTH})


def summarise(out: dict) -> dict:
    """Ranked vs random at equal FLOP spent on new runs, per random-strategy point (spend s, width w).

    Where s lies within the ranked curve's spend range, compare w with the ranked width interpolated (log-log) at s.
    Beyond the ranked curve's last spend, the ranked strategy wins if its last width is already <= w (it got there
    with less compute); otherwise the pair is undetermined (the ranked strategy never spent that much). Below its
    first spend, random wins if w <= the ranked first width, else undetermined.
    """
    rows = []
    for ds in sorted({t["data_seed"] for t in out["traces"]}):
        tr = [t for t in out["traces"] if t["data_seed"] == ds]
        ranked = next(t for t in tr if t["strategy"] == "ranked")
        x = np.log(np.array(ranked["spent"][1:]))
        y = np.log(np.array(ranked["widths"][1:]))
        for t in (t for t in tr if t["strategy"] == "random"):
            for s, w in zip(t["spent"][1:], t["widths"][1:]):
                if x[0] <= np.log(s) <= x[-1]:
                    rw = float(np.exp(np.interp(np.log(s), x, y)))
                    verdict = "ranked" if rw < w else "random"
                elif np.log(s) > x[-1]:
                    rw = float(np.exp(y[-1]))
                    verdict = "ranked" if rw <= w else "undetermined"
                else:
                    rw = float(np.exp(y[0]))
                    verdict = "random" if w <= rw else "undetermined"
                rows.append(dict(data_seed=ds, seed=t["seed"], spent=s, random_width=w, ranked_width=rw,
                                 verdict=verdict))
    df = pd.DataFrame(rows)
    counts = df["verdict"].value_counts().to_dict()
    return dict(comparisons=len(df), ranked_better=int(counts.get("ranked", 0)),
                random_better=int(counts.get("random", 0)), undetermined=int(counts.get("undetermined", 0)),
                rows=rows)


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({t["data_seed"] for t in out["traces"]})
    fig, axes = plt.subplots(1, len(seeds), figsize=(5.5 * len(seeds), 4.2), squeeze=False, constrained_layout=True)
    for ax, ds in zip(axes[0], seeds):
        for t in (t for t in out["traces"] if t["data_seed"] == ds):
            x = np.array(t["spent"], float)
            x[0] = 1e19  # the initial fit, drawn at the left edge
            if t["strategy"] == "ranked":
                ax.plot(x, t["widths"], "o-", color="C3", lw=2.2, label="ranked (variance reduction / FLOP)", zorder=3)
            else:
                ax.plot(x, t["widths"], "s--", color="0.55", lw=1, alpha=0.8,
                        label="random" if t["seed"] == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("FLOP spent on new runs (initial fit at left)")
        ax.set_ylabel("90% interval width of L(7e10, 1.4e12)")
        ax.set_title(f"simulated data set {ds}")
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--data-seeds", type=int, default=2)
    p.add_argument("--random-seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--num-chains", type=int, default=2)
    p.add_argument("--num-warmup", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=500)
    args = p.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = run(args)
    out["summary"] = summarise(out)
    print(json.dumps({k: v for k, v in out["summary"].items() if k != "rows"}))
    (out_dir / "next_experiment.json").write_text(json.dumps(out, indent=1, default=float))
    plot(out, out_dir / "next_experiment.png")
    return out


if __name__ == "__main__":
    main()
