"""Per-token loss as in Kaplan et al. 2020, Fig. 20, as Bayesian fits on SIMULATED data (no per-token data is public).

Left: per-token losses of models of six sizes, simulated from the hierarchical model whose truth is the least-squares
trend of the six published (a, b, c) legend fits in log N (sizes assigned by inverting Kaplan's L(N); see
docs/kaplan.md); one model is held out, the other five are fitted jointly with a, b, c tied to log N, and the held-out
size gets a predicted curve with 50%/90% bands (plus a size beyond the largest). Right: loss at several positions over
training steps, from L(T, S) = a + b·T^(−c·S/(S+S_h)) + (S_c/S)^alpha_S, fitted back.

    python examples/kaplan_per_token.py --out results/kaplan_per_token        # about 2 minutes on 2 CPU cores
    python examples/kaplan_per_token.py --out /tmp/x --quick                 # tiny settings (tests)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bayescale.analyses.kaplan.pertoken import (  # noqa: E402
    PER_TOKEN_SAMPLER,
    fit_per_token,
    fit_per_token_steps,
    plot_per_token,
    plot_per_token_steps,
    predict_per_token,
    simulate_per_token,
    simulate_per_token_steps,
)
from bayescale.infer.settings import add_sampler_arguments, sampler_from_args  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/kaplan_per_token")
    parser.add_argument("--positions", type=int, default=24, help="log-spaced token positions per model (1…1024)")
    parser.add_argument("--held-out", type=int, default=3, help="index (0-5, small to large) of the held-out model")
    add_sampler_arguments(parser, PER_TOKEN_SAMPLER)
    parser.add_argument("--quick", action="store_true", help="tiny settings: 1 chain x 100 + 100, 8 positions")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.warmup, args.samples, args.positions = 1, 100, 100, 8
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(sampler=sampler_from_args(args), rng_key=args.seed)

    positions = np.unique(np.round(np.geomspace(1, 1024, args.positions)))
    data = simulate_per_token(positions=positions, seed=args.seed)
    sizes = np.asarray(data.attrs["truth"]["N"])
    held = data["N"] == sizes[args.held_out]
    start = time.perf_counter()
    result = fit_per_token(data[~held], **settings)
    print(f"per-token fit on {(~held).sum()} points of {len(sizes) - 1} simulated models: "
          f"{time.perf_counter() - start:.0f} s")
    post = result["posterior"]
    for name in ("a1", "b1", "c1"):
        v = post[name].values.ravel()
        q = np.quantile(v, [0.05, 0.5, 0.95])
        print(f"  {name} (per decade of N): {q[1]:+.3f} [{q[0]:+.3f}, {q[2]:+.3f}]  truth "
              f"{data.attrs['truth']['hyper'][name]:+.3f}")
    pred = predict_per_token(result, float(sizes[args.held_out]), data.loc[held, "T"].to_numpy(), observation_noise=True)
    lo, hi = np.quantile(pred.values, [0.05, 0.95], axis=0)
    y = data.loc[held, "loss"].to_numpy()
    print(f"held-out model N={sizes[args.held_out]:.3g}: {np.mean((y >= lo) & (y <= hi)):.0%} of its "
          f"{y.size} per-token losses inside the 90% predictive band")

    steps = simulate_per_token_steps(positions=positions[:: max(1, len(positions) // 8)], seed=args.seed)
    start = time.perf_counter()
    steps_fit = fit_per_token_steps(steps, **settings)
    print(f"per-token-over-steps fit on {len(steps)} points: {time.perf_counter() - start:.0f} s")
    for name, truth in steps.attrs["truth"].items():
        if name in steps_fit["posterior"]:
            q = np.quantile(steps_fit["posterior"][name].values.ravel(), [0.05, 0.5, 0.95])
            print(f"  {name}: {q[1]:.4g} [{q[0]:.4g}, {q[2]:.4g}]  truth {truth:.4g}")

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    plot_per_token(result, data[~held], new_sizes=(float(sizes[args.held_out]), 3e9), ax=left)
    left.plot(data.loc[held, "T"], y, "x", color="crimson", ms=4, label="held-out model")
    left.set_title("per-token loss by model size (simulated from Kaplan's fits)", fontsize=10)
    plot_per_token_steps(steps_fit, steps, ax=right)
    right.set_title("per-token loss over training steps (simulated)", fontsize=10)
    fig.tight_layout()
    figure = out / "pertoken_kaplan_fig20.png"
    fig.savefig(figure, dpi=130)
    plt.close(fig)
    print(f"figure: {figure}")
    return figure


if __name__ == "__main__":
    main()
