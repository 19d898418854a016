"""Loss curves under learning-rate schedules: fit a schedule law on constant + cosine runs, predict the whole curve of
a WSD and a step-decay run with 50/90% bands, and overlay the truth. The WSD run is a cooldown branching from the
constant run at step 19200: it is predicted twice, as a new run and as a branch of the fitted constant run
(``predict_schedule(..., branch_from="constant")``, conditioned on that run's effect and its last checkpoint).

    python examples/lr_schedules.py --out results/schedules                 # both laws (a few minutes on 2 CPU cores)
    python examples/lr_schedules.py --out results/schedules --quick         # tiny settings (smoke test)

Data: simulated by bayescale.analyses.schedules.simulate_schedule_curves from the multi-power law at the published constants
of Luo et al.'s 400M model (24000 steps, peak LR 3e-4, 2160 linear-warmup steps, final LR 3e-5; the law file's
convention, the authors' "all_steps"), with a run effect and OU residuals along ln(step); the WSD run shares the
constant run's effect and residual path up to step 19200. Both laws are fitted to the same simulated runs: the multi-power law (the truth's
form) and the annealing law of Tissue et al. 2024 (a different form: how well it transfers across schedules is the
question).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bayescale.analyses.schedules import (  # noqa: E402
    fit_schedule,
    load_schedule_law,
    lr_schedule,
    predict_schedule,
    simulate_schedule_curves,
)
from bayescale.infer.settings import MEDIAN_START, add_sampler_arguments, sampler_from_args  # noqa: E402

TRAIN = ("constant", "cosine")
HELD_OUT = ("wsd", "step")


def schedules(total: int, warmup: int, peak: float = 3e-4, final: float = 3e-5) -> dict:
    common = dict(total_steps=total, peak_lr=peak, warmup_steps=warmup)
    return {
        "constant": lr_schedule("constant", **common),
        "cosine": lr_schedule("cosine", final_lr=final, **common),
        "wsd": lr_schedule("wsd", final_lr=final, decay_steps=total // 5, **common),
        "step": lr_schedule("step", milestones=[total // 2, (3 * total) // 4], decay_factor=0.316, **common),
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/schedules")
    parser.add_argument("--laws", default="luo2025_mpl,tissue2024", help="comma-separated schedule laws to fit")
    parser.add_argument("--checkpoints", type=int, default=40, help="logged steps per run")
    add_sampler_arguments(parser, MEDIAN_START.replace(num_warmup=500, num_samples=500))
    parser.add_argument("--quick", action="store_true", help="tiny settings: 2 chains x 60/60, 10 checkpoints")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.warmup, args.samples, args.checkpoints = 2, 60, 60, 10
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    truth_law = load_schedule_law("luo2025_mpl")
    truth = truth_law.reference("luo2025_400M").values
    sched = schedules(24000, 2160)
    curves = simulate_schedule_curves(truth_law, truth, sched, checkpoints=args.checkpoints, seed=args.seed,
                                      branches={"wsd": "constant"})
    curves.to_csv(out / "schedule_curves.csv", index=False)
    train = curves[curves["run"].isin(TRAIN)]
    laws = [s.strip() for s in args.laws.split(",") if s.strip()]

    fig, axes = plt.subplots(len(laws), len(HELD_OUT) + 1, figsize=(4.2 * (len(HELD_OUT) + 1), 3.4 * len(laws)),
                             squeeze=False)
    print(f"{'law':<12} {'run':<9} {'true final':>10} {'median':>8} {'90% band':>19} {'cov90':>6}")
    for row, law_id in enumerate(laws):
        t0 = time.perf_counter()
        result = fit_schedule(law_id, train, sched, sampler=sampler_from_args(args), rng_key=args.seed)
        print(f"# {law_id}: fit on {', '.join(TRAIN)} ({result.attrs['n_points']} points) in "
              f"{time.perf_counter() - t0:.0f} s")
        ax = axes[row, 0]
        for name in (*TRAIN, *HELD_OUT):
            ax.plot(np.arange(1, 24001), sched[name].lr, label=name)
        ax.set(title="learning-rate schedules", xlabel="step", ylabel="learning rate")
        ax.legend(fontsize=8)
        for col, name in enumerate(HELD_OUT, start=1):
            seen = curves[curves["run"] == name]
            seen_steps = seen["step"].to_numpy()
            grid = np.linspace(sched[name].warmup_steps + 1, 24000, 60 if args.quick else 400).round().astype(int)
            pred = predict_schedule(result, sched[name], np.union1d(grid, seen_steps), rng_key=args.seed)
            band, steps = pred["loss_band"], pred["step"].values
            ax = axes[row, col]
            ax.fill_between(steps, band.sel(quantile=0.05), band.sel(quantile=0.95), alpha=0.25, color="C0", label="90%")
            ax.fill_between(steps, band.sel(quantile=0.25), band.sel(quantile=0.75), alpha=0.45, color="C0", label="50%")
            ax.plot(steps, band.sel(quantile=0.5), color="C0", lw=1, label="predicted median")
            if name == "wsd":  # the cooldown as a branch of the fitted constant run
                branch = predict_schedule(result, sched[name], np.union1d(grid[grid > 19200], seen_steps),
                                          branch_from="constant", rng_key=args.seed)
                b_band = branch["loss_band"]
                ax.fill_between(branch["step"], b_band.sel(quantile=0.05), b_band.sel(quantile=0.95), alpha=0.35,
                                color="C2", label="90%, branch of constant")
            ax.plot(steps, truth_law.loss(truth, sched[name], steps), color="k", ls="--", lw=1, label="true law")
            ax.plot(seen["step"], seen["loss"], ".", color="C3", ms=4, label="simulated run (held out)")
            ax.set_title(f"{law_id}: {name} run, fitted on {'+'.join(TRAIN)}", fontsize=9)
            ax.set(xlabel="step", ylabel="loss",
                   ylim=(float(seen["loss"].min()) - 0.08, float(seen["loss"].quantile(0.9)) + 0.05))
            if name == "wsd":  # the held-out cooldown is logged after the branch point only
                ax.set_xlim(16000, 24000)
            ax.legend(fontsize=7)
            at = band.sel(step=seen_steps)
            obs = seen["loss"].to_numpy()
            cover = float(np.mean((obs >= at.sel(quantile=0.05).values) & (obs <= at.sel(quantile=0.95).values)))
            final = at.isel(step=-1)
            print(f"{law_id:<12} {name:<9} {obs[-1]:>10.4f} {float(final.sel(quantile=0.5)):>8.4f} "
                  f"[{float(final.sel(quantile=0.05)):.4f}, {float(final.sel(quantile=0.95)):.4f}] {cover:>6.2f}")
            if name == "wsd":
                at = b_band.sel(step=seen_steps)
                cover = float(np.mean((obs >= at.sel(quantile=0.05).values) & (obs <= at.sel(quantile=0.95).values)))
                final = at.isel(step=-1)
                print(f"{law_id:<12} {'wsd|const':<9} {obs[-1]:>10.4f} {float(final.sel(quantile=0.5)):>8.4f} "
                      f"[{float(final.sel(quantile=0.05)):.4f}, {float(final.sel(quantile=0.95)):.4f}] {cover:>6.2f}")
    fig.tight_layout()
    path = out / "schedule_prediction.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"figure: {path}")
    return path


if __name__ == "__main__":
    main()
