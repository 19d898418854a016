"""Simulation-based calibration of the declared models (per-token loss, shape, critical batch) and the schedule laws,
through their own fit functions (``bayescale.validation.calibration.check_calibration_fit``), with the power of each
verdict and the negative controls that must fail.

    PYTHONPATH=. python benchmarks/sbc_declared.py                                 # every model, the default sizes
    PYTHONPATH=. python benchmarks/sbc_declared.py --models critical_batch --simulations 200 --bins 10
    PYTHONPATH=. python benchmarks/sbc_declared.py --models per_token --controls prior narrow --out sbc_declared.csv

Designs: the simulated tables of the suite's shared fits (tests/fits.py): 5 per-token models x 12 positions, the shape
scan (4 sizes x 3 token counts x shapes), Kaplan's batch scan reduced to 4 loss levels, and Luo et al.'s 400M setup
(constant, cosine and WSD curves, 15 checkpoints each) for the two schedule laws (multi-power, Luo et al. 2025;
annealing, Tissue et al. 2024). The floors whose priors read the data
(``Uniform(0, min_loss)``) are fixed at ``Uniform(0, 3)`` for the study (SBC needs one prior for the draw and the fit;
the check refuses a data-dependent prior). Prints one row per study; exits non-zero when a positive control fails, a
negative control passes, or a verdict is not trusted.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import numpy as np
import pandas as pd

from bayescale.analyses import schedules as S
from bayescale.analyses.kaplan import batchsize as bb, pertoken as pt, shape as sh
from bayescale.validation.calibration import MIN_ESS_SHARE, check_calibration_fit, verdict_trusted
from tests.fits import MPL, data

#: Fixed floors for the models whose declared floor prior reads the data (Uniform(0, min_loss)): every simulated table
#: of these designs has losses above 3 only when the floor's truth is high, and the prior stays one distribution.
FIXED_FLOOR = "Uniform(0, 3)"


def design(model: str):
    """(fit function, design table, observed column, fit keywords, sampler settings beyond warmup and draws) of one
    model: each model's own default kernel (target acceptance 0.95 for the funnels of the per-token and shape models),
    one chain."""
    if model == "per_token":
        table = data("per_token")
        return pt.fit_per_token, table, "loss", {}, {"num_warmup": 300, "target_accept_prob": 0.95}
    if model == "shape":
        return (sh.fit_shape, data("shape"), "loss", {"priors": {"E": FIXED_FLOOR}},
                {"num_warmup": 300, "target_accept_prob": 0.95})
    if model == "critical_batch":
        table = bb.steps_to_loss(data("critical_batch"), None, n_levels=4, min_runs=3)
        return bb.fit_critical_batch, table, "S", {}, {"num_warmup": 300}
    if model in ("multi_power", "annealing"):
        curves, sched = data("multi_power")
        law = S.load_schedule_law(MPL if model == "multi_power" else "tissue2024")
        fit = functools.partial(S.fit_schedule, law, schedules=sched)
        fit.__name__ = "fit_schedule"  # type: ignore[attr-defined]
        return (fit, curves[curves["run"] != "step"], "loss", {"max_block": 256, "priors": {"L0": FIXED_FLOOR}},
                {"num_warmup": 500})
    raise SystemExit(f"unknown model {model!r}; must be one of {MODELS}")


def stalled_in(tab: pd.DataFrame) -> str:
    """The parameter with the smallest ESS share in each stalled fit, counted ("tau_c 5, sigma 1")."""
    share = np.asarray(tab.attrs["ess_share"])
    stalled = share.min(axis=1) < MIN_ESS_SHARE
    names = np.asarray(tab.index)[share[stalled].argmin(axis=1)]
    counts = pd.Series(names, dtype=object).value_counts()
    return ", ".join(f"{k} {v}" for k, v in counts.items())


MODELS = ("critical_batch", "per_token", "shape", "multi_power", "annealing")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--simulations", type=int, default=100)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=None, help="warmup per fit (default: 300, 500 for schedules)")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--target-accept", type=float, default=None, help="NUTS target acceptance (default: the model's)")
    parser.add_argument("--init", choices=("map", "median"), default=None,
                        help="where each fit's chain starts (default: the model's, else median)")
    parser.add_argument("--thin", type=int, default=2)
    parser.add_argument("--controls", nargs="*", default=None, help="negative controls: prior, narrow (all if none named)")
    parser.add_argument("--no-positive", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="CSV of the rows")
    args = parser.parse_args(argv)
    controls = [] if args.controls is None else (args.controls or ["prior", "narrow"])
    rows, bad = [], 0
    for model in args.models:
        fit, table, column, kwargs, kernel = design(model)
        for control in ([] if args.no_positive else [None]) + controls:
            t0 = time.perf_counter()
            tab = check_calibration_fit(
                fit, table, column=column, num_simulations=args.simulations, num_bins=args.bins, thin=args.thin,
                sampler={"init": "median"} | kernel | {"num_samples": args.samples, "num_chains": 1, "progress_bar": False}
                | ({"init": args.init} if args.init else {}) | ({"num_warmup": args.warmup} if args.warmup else {})
                | ({"target_accept_prob": args.target_accept} if args.target_accept else {}),
                misspecify=control, rng_key=args.seed, fit_kwargs=kwargs,
                progress=lambda i, n: print(f"  {model} {control or 'positive'}: {i}/{n}", file=sys.stderr, flush=True)
                if i % 10 == 0 else None)
            a = tab.attrs
            worst = tab["p_value"].idxmin()
            row = {
                "model": a["law"], "control": control or "positive", "simulations": a["num_simulations"],
                "bins": a["num_bins"], "verdict": ("passes" if a["passes"] else "FAILS")
                + ("" if verdict_trusted(tab) else f" (not trusted: {a['divergent_share']:.1%} divergent, "
                                                   f"{a['stalled_share']:.0%} of fits stalled)"),
                "power_narrow30": a["power"]["narrow_30"], "power_wide30": a["power"]["wide_30"],
                "power_shift05": a["power"]["shift_0.5"],
                "smallest_p": f"{tab.loc[worst, 'p_value']:.2g} ({worst}) vs {a['threshold']:.2g}",
                "p_values": ", ".join(f"{k} {v:.2g}" for k, v in tab["p_value"].items()),
                "contraction": f"{a['mean_contraction']:.2f}; "
                + ", ".join(f"{k} {v:.2f}" for k, v in tab["contraction"].items()),
                "divergent": f"{a['divergent_share']:.2%}", "stalled": f"{a['stalled_share']:.0%}",
                # per parameter, the stalled fits in which it had the smallest ESS share
                "stalled_in": stalled_in(tab),
                "seconds": round(time.perf_counter() - t0),
            }
            rows.append(row)
            print(" | ".join(str(v) for v in row.values()), flush=True)
            must_pass = control is None
            bad += (a["passes"] != must_pass) or not verdict_trusted(tab)
    if args.out:
        pd.DataFrame(rows).to_csv(args.out, index=False)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
