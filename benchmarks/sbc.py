"""Simulation-based calibration of the catalogue's laws under every noise model, with the power of each verdict and the
negative controls that must fail.

    PYTHONPATH=. python benchmarks/sbc.py                          # every law x noise model, the full study (long)
    PYTHONPATH=. python benchmarks/sbc.py --laws kaplan2020_n --noise student_t:iid --simulations 50
    PYTHONPATH=. python benchmarks/sbc.py --laws hoffmann2022 --noise normal:run+ou --controls --out sbc.csv
    PYTHONPATH=. python benchmarks/sbc.py --laws hoffmann2022 --controls prior law --no-positive

For every (law, likelihood:noise): the positive control (simulate from the fitted model; must pass) with as many
simulations as a 90% power against a posterior 30% too narrow in one parameter needs (``--simulations power``, the
default: 225 at 10 bins and 100 kept draws), or a given number. With ``--controls`` (optionally naming some), the
negative controls of ``bayescale.validation.calibration`` (``prior``: a sampler that returns the prior; ``narrow``: posterior
draws shrunk 0.5x; ``law``: data from the law with every input raised to 1.25; ``sigma``: residuals 3x the drawn
sigma), each of which must fail. Prints one row per study: the verdict, the number of simulations, the test's power against a posterior 30% too
narrow, 30% too wide and shifted by 0.5 sd, the smallest p-value and the rank histogram of that parameter
(``worst_histogram``, in the CSV), every parameter's p-value, the mean and per-parameter contraction (posterior IQR
/ prior IQR in prior-quantile units), and ``stuck``: the fits whose chain stopped moving (every parameter's
contraction below ``STUCK_CONTRACTION``) and ``stalled``: the fits whose chain crept (some parameter's bulk ESS below
``calibration.MIN_ESS_SHARE`` of the draws). A verdict from fits with more than ``calibration.MAX_DIVERGENT_SHARE`` of
their draws divergent, or more than ``calibration.MAX_STALLED_SHARE`` of them stalled, is marked "not trusted" (the
fits may not have explored: more ``--warmup``). Exits non-zero if a
positive control fails, a negative control passes, or a verdict is not trusted. Curve noise (``run+ou``) uses 6 runs x 6 checkpoints (``bayescale.validation.calibration.default_design``) and needs a
law of N and D. The table in docs/validation.md comes from this script.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.validation.calibration import check_calibration, simulations_for_power, verdict_trusted
from bayescale.infer.noise import Noise

#: The noise models of the full study: likelihood:noise.
NOISE_MODELS = ("student_t:iid", "normal:iid", "student_t:hetero", "normal:run+ou")
#: Simulations of each negative control: the 0.5x-narrow posterior needs 100 for a per-parameter power of 0.95 in 5
#: bins (bayescale.validation.calibration.sbc_power); the other failures are gross (contraction ~1, ranks all at one end).
CONTROL_SIMULATIONS = {"prior": 50, "narrow": 100, "law": 50, "sigma": 30}
#: A fit counts as stuck when the posterior spread of every parameter is below this share of its prior spread.
STUCK_CONTRACTION = 1e-3


def study_row(law: str, likelihood: str, noise: str, control: str | None, sims: int, args) -> dict:
    t0 = time.perf_counter()
    tab = check_calibration(law, num_simulations=sims, num_warmup=args.warmup, num_samples=args.samples,
                            thin=args.thin, num_bins=args.bins, likelihood=likelihood, noise=noise,
                            misspecify=control, rng_key=args.seed, init=args.init, batched=args.init == "median")
    a = tab.attrs
    worst = tab["p_value"].idxmin()
    return {
        "law": law, "noise": f"{likelihood}:{noise}", "control": control or "positive", "simulations": sims,
        # a study whose fits diverged often tests the sampler's settings, pass or fail (calibration.MAX_DIVERGENT_SHARE)
        "verdict": ("passes" if a["passes"] else "FAILS")
        + ("" if verdict_trusted(tab) else f" (not trusted: {a['divergent_share']:.1%} divergent, "
                                           f"{a['stalled_share']:.0%} of fits stalled)"),
        "power_narrow30": round(a["power"]["narrow_30"], 2), "power_wide30": round(a["power"]["wide_30"], 2),
        "power_shift05": round(a["power"]["shift_0.5"], 2),
        "min_p": f"{tab['p_value'].min():.2g} ({worst})", "threshold": f"{a['threshold']:.2g}",
        "mean_contraction": round(a["mean_contraction"], 2),
        "contraction": " ".join(f"{n}={v:.2f}" for n, v in tab["contraction"].items()),
        "p_values": " ".join(f"{n}={v:.2g}" for n, v in tab["p_value"].items()),
        # The rank histogram of the parameter with the smallest p-value: a one-sided excess is a biased posterior (or
        # an unlucky draw of truths that the data barely inform), a U shape a too-narrow one or autocorrelated draws.
        "worst_histogram": " ".join(str(c) for c in np.bincount(
            np.floor(a["ranks"][:, list(tab.index).index(worst)] * args.bins / (a["n_draws"] + 1)).astype(int),
            minlength=args.bins)),
        "uninformative": ",".join(a["uninformative"]), "divergences": a["divergences"], "rejected": a["rejected"],
        # Fits whose chain stopped moving: every parameter's posterior spread below STUCK_CONTRACTION of its prior's.
        # A calibrated fit of these designs keeps at least ~0.05 in its least-informed parameter; the fits caught in
        # the Student-t corner nu -> 0, sigma -> 0 under the former nu prior had identical draws (docs/validation.md).
        "stuck": int(np.sum(np.all(a["contractions"] < STUCK_CONTRACTION, axis=1))),
        # Fits that crept: some parameter's bulk ESS below calibration.MIN_ESS_SHARE of the draws (a partial stall that
        # "stuck" misses: the chain moves, in tiny steps).
        "stalled": int(round(a["stalled_share"] * sims)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--laws", nargs="*", default=None, help="law ids (default: the whole catalogue)")
    p.add_argument("--noise", nargs="*", default=list(NOISE_MODELS), help="likelihood:noise pairs")
    p.add_argument("--simulations", default="power",
                   help="simulations of the positive control, or 'power': enough for 90%% power against a posterior "
                        "30%% too narrow")
    p.add_argument("--controls", nargs="*", default=None, choices=list(CONTROL_SIMULATIONS),
                   help="also run these negative controls (all four when given without names) for the first --noise "
                        "entry")
    p.add_argument("--no-positive", action="store_true", help="run only the negative controls")
    p.add_argument("--control-simulations", type=int, default=None, help="override CONTROL_SIMULATIONS")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--init", choices=("median", "map"), default="median",
                   help="where each fit's chain starts; map fits one table at a time (batched=False), median batches")
    p.add_argument("--thin", type=int, default=2)
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the table as CSV")
    args = p.parse_args(argv)
    laws = args.laws or bs.list_laws()
    rows, ok = [], True
    for law in laws:
        inputs = bs.load_law(law).input_names
        for entry in args.noise:
            likelihood, noise = entry.split(":")
            if ("run" in noise or "ou" in noise) and not ("D" in inputs and len(inputs) > 1):
                continue  # curve noise needs checkpoints along D
            n_params = (len(bs.load_law(law).parameter_names) + 1 + (likelihood == "student_t")
                        + len(Noise.parse(noise).names))
            sims = (simulations_for_power(0.9, n_draws=args.samples // args.thin, num_bins=args.bins,
                                          n_parameters=n_params)
                    if args.simulations == "power" else int(args.simulations))
            studies = [] if args.no_positive else [(None, sims)]
            if args.controls is not None and entry == args.noise[0]:
                studies += [(c, args.control_simulations or n) for c, n in CONTROL_SIMULATIONS.items()
                            if not args.controls or c in args.controls]
            for control, n in studies:
                row = study_row(law, likelihood, noise, control, n, args)
                rows.append(row)
                # an untrusted verdict (too many divergent draws) is no evidence either way: the study fails
                ok &= row["verdict"] in (("passes",) if control is None else ("FAILS",))
                print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    print()
    if args.out:
        table.to_csv(args.out, index=False)
    print(table.drop(columns=["contraction", "p_values", "worst_histogram"]).to_string(index=False))
    print("all positive controls pass and all negative controls fail" if ok
          else "SBC FAILED (a positive control failed, a negative control passed, or a verdict is not trusted)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
