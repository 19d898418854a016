"""Real training curves, three ways: the Chinchilla law (hoffmann2022) fitted to the same runs as
(a) final losses only (each run's last checkpoint), (b) every checkpoint as an independent point (noise "iid"), and
(c) the curve model (noise "run+ou": run effects + residuals correlated along log-tokens, bayescale.infer.noise).
Prints one table of medians, 90% intervals and interval-width ratios (b)/(c), (a)/(c) for E, A, B, alpha, beta and
the compute-optimal N*, D*, and writes it as CSV with a figure of the intervals side by side.

    python examples/real_curves.py --dataset gemstones --out results/real_curves   # about 3-4 minutes on 2 CPU cores
    python examples/real_curves.py --dataset colpret --out results/real_curves     # GPT-3 curves, about 2 minutes

Data (not bundled; --data-dir, default /work/shared/data):
- gemstones: McLeish et al. 2025 (MIT), gemstones/wandb_dfs/wandb_df_for_fitting_hot.jsonl: 22 runs x 10
  checkpoints every 10B tokens up to 100B, from constant-learning-rate runs (no cooldown); `final_loss` is the logged
  loss at the checkpoint (probably training loss, see the data card).
- colpret: IBM/ColPret (MIT), colpret_hitchhiker/raw_data/gpt3/extracted.csv: GPT-3's 8 validation-loss curves
  (125M-175B) digitized from the GPT-3 paper's figure. The digitized points are binned into 20B-token bins (the
  median loss and median tokens of each bin) from 20B to 300B tokens: 8 runs x 14 checkpoints. It is the one family of
  that folder with enough model sizes for (a): OPT has 6 sizes, which with 5 law constants and a noise scale is too
  few points for a fit; Pile-T5 has 4, the datablations runs 3.

With (a) on these data every run ends at the same D, so the final losses cannot identify B and beta: that fit runs
with require_identifiable=False and its B, beta (and N*, D*) come from the priors. Widths in the table are hi - lo
for E, alpha, beta and decades, log10(hi/lo), for A, B, N*, D*.

``--no-pointwise`` fits without the per-point groups (posterior predictive, log-likelihood, prior predictive), which the
table and figure do not read: less to compile, the same posterior (the tests' smoke run uses it).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.datasets import gemstones_dir
from bayescale.infer.settings import add_sampler_arguments, sampler_from_args

COLUMNS = {"N": "N", "D": "D", "loss": "loss", "run": "run"}
TREATMENTS = {
    "a": "final losses (one point per run)",
    "b": "all checkpoints, independent (noise iid)",
    "c": "curve model (noise run+ou)",
}
QUANTITIES = ["E", "A", "B", "alpha", "beta", "N*", "D*"]
LOG_WIDTH = {"A", "B", "N*", "D*"}  # widths in decades
#: Published Approach-3 fit of Gemstones' `hot` table (Huber delta 1e-3; data card, derived_approach3_NxD_fits.csv).
GEMSTONES_PUBLISHED = {"E": 2.1431, "A": 213.01, "B": 4.9554e6, "alpha": 0.29287, "beta": 0.71287}
GPT3_PARAMS = {"small": 125e6, "medium": 350e6, "large": 760e6, "xl": 1.3e9, "2.7b": 2.7e9, "6.7b": 6.7e9,
               "13b": 13e9, "175b": 175e9}


def load_gemstones(data_dir: Path) -> tuple[pd.DataFrame, dict[str, str], str, dict[str, float]]:
    folder = data_dir / "gemstones" if (data_dir / "gemstones").is_dir() else gemstones_dir()  # bundled copy
    path = folder / "wandb_dfs" / "wandb_df_for_fitting_hot.jsonl"
    df = pd.read_json(path, lines=True)
    columns = {"N": "params_active_precise", "D": "tokens", "loss": "final_loss", "run": "run_name"}
    return df, columns, f"Gemstones 'hot' ({path.name})", GEMSTONES_PUBLISHED


def load_colpret(data_dir: Path, bin_tokens: float = 20.0) -> tuple[pd.DataFrame, dict[str, str], str, dict]:
    path = data_dir / "colpret_hitchhiker" / "raw_data" / "gpt3" / "extracted.csv"
    raw = pd.read_csv(path).dropna(subset=["val_loss"])  # `step` is billions of tokens (data card)
    edges = np.arange(bin_tokens, 300.0 + bin_tokens, bin_tokens)  # first bin (< 20B) dropped: early transient
    raw = raw[(raw["step"] > edges[0]) & (raw["step"] <= edges[-1])].copy()
    raw["bin"] = pd.cut(raw["step"], edges)
    binned = raw.groupby(["model", "bin"], observed=True).agg(tokens_b=("step", "median"), val_loss=("val_loss", "median"),
                                                               n_digitized=("val_loss", "size")).reset_index()
    binned["params"] = binned["model"].map(GPT3_PARAMS)
    binned["tokens"] = binned["tokens_b"] * 1e9
    df = binned[["model", "params", "tokens", "val_loss", "n_digitized"]]
    columns = {"N": "params", "D": "tokens", "loss": "val_loss", "run": "model"}
    return df, columns, f"GPT-3 validation curves digitized (ColPret {path.name}, {bin_tokens:g}B-token bins)", {}


def final_points(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Each run's last checkpoint (largest D)."""
    run, d = columns["run"], columns["D"]
    return df.loc[df.groupby(run)[d].idxmax()].reset_index(drop=True)


def interval_rows(result, budget: float) -> tuple[dict, dict]:
    """Median and 90% interval of every quantity (NaN draws of N*, D*, no interior optimum, are left out)."""
    post = result["posterior"].to_dataset()
    draws = {n: post[n].values.reshape(-1) for n in ["E", "A", "B", "alpha", "beta"]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a study of interval widths across noise treatments: its table gives R-hat and ESS beside every interval, so
        # a fit that did not converge is reported (with its verdict) rather than refused
        opt = bs.compute_optimal(result, budget, allow_unconverged=True)
    draws["N*"] = opt["N_opt"].values.reshape(-1)
    draws["D*"] = opt["D_opt"].values.reshape(-1)
    nan_share = float(np.isnan(draws["N*"]).mean())
    out = {}
    for q, x in draws.items():
        lo, med, hi = np.nanquantile(x, [0.05, 0.5, 0.95]) if np.isfinite(x).any() else (np.nan,) * 3
        width = np.log10(hi / lo) if q in LOG_WIDTH else hi - lo
        out[q] = dict(median=med, lo=lo, hi=hi, width=width)
    return out, {"nan_share_opt": nan_share, "opt_warnings": len(caught)}


def fit_one(label: str, ds, args, **kwargs):
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = bs.fit("hoffmann2022", ds, sampler=sampler_from_args(args).replace(progress_bar=False),
                        rng_key=args.seed, pointwise=not args.no_pointwise, **kwargs)
    seconds = time.perf_counter() - t0
    table = bs.summary(result)
    info = dict(treatment=label, points=int(ds.sizes["point"]), runs=int(np.unique(ds["run"].values).size),
                noise=bs.infer.noise.Noise.from_attrs(result.attrs).spec, seconds=round(seconds, 1),
                divergences=int(table.attrs["divergences"]), max_rhat=float(table["rhat"].max()),
                min_ess_bulk=float(table["ess_bulk"].min()), converged=bool(table.attrs["converged"]), warnings=" | ".join(str(w.message).replace("\n", " ")
                                                                                for w in caught))
    for name in ("sigma", "nu", "tau", "ell"):
        if name in table.index:
            info[name] = float(table.loc[name, "median"])
    print(f"  ({label}) {TREATMENTS[label]}: {info['points']} points, {seconds:.1f} s, "
          f"{info['divergences']} divergences, max R-hat {info['max_rhat']:.3f}, min bulk ESS {info['min_ess_bulk']:.0f}",
          flush=True)
    info.update(per_chain(result, ds))
    if "run_effect" in result["posterior"]:
        print(f"      per chain: E {info['chain_E']}; tau {info['chain_tau']}; mean energy {info['chain_energy']}; "
              f"corr(run effect, log N) {info['chain_corr_u_logN']}")
    return result, info


def per_chain(result, ds) -> dict[str, str]:
    """Per-chain medians (chains stuck in different modes show here) and, with run effects, how well the run effects
    follow log N: a correlation near 1 means they carry the N-dependence that the law should."""
    post = result["posterior"].to_dataset()
    fmt = lambda xs, f: " ".join(format(float(x), f) for x in xs)  # noqa: E731
    out = {"chain_E": fmt(post["E"].median("draw").values, ".3g"),
           "chain_energy": fmt(result["sample_stats"]["energy"].mean("draw").values, ".1f")}
    if "run_effect" in post:
        out["chain_tau"] = fmt(post["tau"].median("draw").values, ".3g")
        runs = post["run"].values
        first = {r: i for i, r in reversed(list(enumerate(ds["run"].values)))}
        log_n = np.log(ds["N"].values[[first[r] for r in runs]])
        u = post["run_effect"].median("draw").transpose("chain", "run").values
        out["chain_corr_u_logN"] = fmt([np.corrcoef(log_n, uc)[0, 1] for uc in u], ".2f")
    return out


def plot_intervals(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(QUANTITIES), figsize=(2.3 * len(QUANTITIES), 3.4))
    colors = {"a": "tab:gray", "b": "tab:orange", "c": "tab:blue"}
    for ax, q in zip(axes, QUANTITIES):
        row = table.loc[q]
        for i, t in enumerate(TREATMENTS):
            med, lo, hi = row[f"{t}_median"], row[f"{t}_lo"], row[f"{t}_hi"]
            if np.isfinite(med):
                ax.errorbar([i], [med], yerr=[[med - lo], [hi - med]], fmt="o", color=colors[t], capsize=4)
        if np.isfinite(row.get("published", np.nan)):
            ax.axhline(row["published"], color="k", ls="--", lw=0.8, label="published")
        if q in LOG_WIDTH:
            ax.set_yscale("log")
        ax.set_xticks(range(len(TREATMENTS)), ["(a)\nfinal", "(b)\niid", "(c)\nrun+ou"])
        ax.set_xlim(-0.6, len(TREATMENTS) - 0.4)
        ax.set_title(q)
    if "published" in table and table["published"].notna().any():
        axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["gemstones", "colpret"], default="gemstones")
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--out", default="results/real_curves")
    add_sampler_arguments(parser, bs.NUTS(num_warmup=500, num_samples=500))
    parser.add_argument("--budget", type=float, default=None,
                        help="FLOP budget for N*, D* (default: 6 x largest N x largest D of the data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-fits", action="store_true", help="also save the three fits as {dataset}_fit_{a,b,c}.nc")
    parser.add_argument("--no-pointwise", action="store_true",
                        help="fit without the per-point groups, which the table and figure do not read (less to "
                             "compile, the same posterior)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    loader = {"gemstones": load_gemstones, "colpret": load_colpret}[args.dataset]
    df, columns, description, published = loader(Path(args.data_dir))
    curves = bs.load_runs(df, columns=columns)
    finals_df = final_points(df, columns)
    finals = bs.load_runs(finals_df, columns=columns)
    budget = args.budget or 6.0 * float(curves["N"].max()) * float(curves["D"].max())
    d_final = np.unique(finals["D"].values)
    print(f"{description}: {curves.sizes['point']} checkpoints of {finals.sizes['point']} runs; "
          f"N {float(curves['N'].min()):.3g}-{float(curves['N'].max()):.3g}, D {float(curves['D'].min()):.3g}-"
          f"{float(curves['D'].max()):.3g}; final D: {', '.join(f'{d:.3g}' for d in d_final)}")
    print(f"fitting hoffmann2022 three ways ({args.chains} chains x {args.warmup} warmup + "
          f"{args.samples} draws); N*, D* at C = {budget:.3g} FLOP", flush=True)

    t_all = time.perf_counter()
    results, infos = {}, []
    # (a): with every run ending at the same D the final losses cannot identify B, beta: the priors carry them.
    results["a"], info = fit_one("a", finals, args, noise="iid", require_identifiable=False)
    infos.append(info)
    results["b"], info = fit_one("b", curves, args, noise="iid")
    infos.append(info)
    results["c"], info = fit_one("c", curves, args, noise="run+ou")
    infos.append(info)
    total = time.perf_counter() - t_all
    if args.save_fits:
        for t, result in results.items():
            bs.save(result, out / f"{args.dataset}_fit_{t}.nc")

    cells: dict[str, dict] = {q: {} for q in QUANTITIES}
    for t, result in results.items():
        rows, extra = interval_rows(result, budget)
        infos[list(results).index(t)].update(extra)
        for q in QUANTITIES:
            for k, v in rows[q].items():
                cells[q][f"{t}_{k}"] = v
    table = pd.DataFrame.from_dict(cells, orient="index")
    table.index.name = "quantity"
    table["width_unit"] = ["decades" if q in LOG_WIDTH else "linear" for q in QUANTITIES]
    table["ratio_b_over_c"] = table["b_width"] / table["c_width"]
    table["ratio_a_over_c"] = table["a_width"] / table["c_width"]
    table["published"] = [published.get(q, np.nan) for q in QUANTITIES]
    table.attrs.update(dataset=args.dataset, budget=budget)

    stem = f"{args.dataset}_intervals"
    table.to_csv(out / f"{stem}.csv")
    fits = pd.DataFrame(infos)
    fits["budget"] = budget
    fits.to_csv(out / f"{args.dataset}_fits.csv", index=False)
    plot_intervals(table, out / f"{stem}.png",
                   f"{description}: hoffmann2022, median and 90% interval; (a) final losses, (b) checkpoints iid, "
                   f"(c) run+ou; N*, D* at C = {budget:.3g} FLOP")

    show = pd.DataFrame(index=table.index)
    for t in TREATMENTS:
        show[f"({t}) median [90%]"] = [f"{r[f'{t}_median']:.4g} [{r[f'{t}_lo']:.4g}, {r[f'{t}_hi']:.4g}]"
                                       for _, r in table.iterrows()]
    show["width (b)/(c)"] = table["ratio_b_over_c"].map(lambda v: f"{v:.2f}")
    show["width (a)/(c)"] = table["ratio_a_over_c"].map(lambda v: f"{v:.2f}")
    if published:
        show["published"] = table["published"].map(lambda v: f"{v:.4g}" if np.isfinite(v) else "")
    print(f"\n{args.dataset}: hoffmann2022 under three treatments of the same runs "
          f"(widths: hi - lo, decades for A, B, N*, D*)")
    print(show.to_string())
    cols = [c for c in ["treatment", "points", "seconds", "divergences", "max_rhat", "min_ess_bulk", "sigma", "nu", "tau",
                        "ell", "nan_share_opt"] if c in fits]
    print("\n" + fits[cols].to_string(index=False, float_format="%.4g"))
    for info in infos:
        if not info["max_rhat"] <= 1.05:  # NaN (one chain) counts as unchecked
            print(f"note ({info['treatment']}): max R-hat {info['max_rhat']:.3g}: the chains disagree, so its intervals "
                  f"pool chains that may sit in different modes (per-chain medians of E: {info['chain_E']}); "
                  "run more chains/draws before trusting them")
    print(f"\nthree fits took {total:.0f} s; wrote {out / (stem + '.csv')}, {out / (stem + '.png')}, "
          f"{out / (args.dataset + '_fits.csv')}")
    return table


if __name__ == "__main__":
    main()
