"""Simulation-based calibration of every law in the catalogue, with the negative control.

    PYTHONPATH=. python benchmarks/sbc.py                       # all laws, 100 simulations each (long: ~1 h on 2 cores)
    PYTHONPATH=. python benchmarks/sbc.py --simulations 20      # quicker look
    PYTHONPATH=. python benchmarks/sbc.py --laws kaplan2020_n --out sbc.csv

For every law: the positive control (simulate from the fitted model; must pass) and the negative control (residuals
inflated 3x, ``misspecify="noise"``; must fail). Prints one row per (law, control) and exits non-zero if a positive
control fails or a negative control passes. The numbers in docs/validation.md come from this script.
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

import bayescale as bs
from bayescale.calibration import check_calibration


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--laws", nargs="*", default=None, help="law ids (default: the whole catalogue)")
    p.add_argument("--simulations", type=int, default=100)
    p.add_argument("--negative-simulations", type=int, default=20,
                   help="simulations of the negative control (its failure is gross: sigma's ranks all sit at 0)")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--thin", type=int, default=2)
    p.add_argument("--bins", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the table as CSV")
    args = p.parse_args(argv)
    laws = args.laws or bs.list_laws()
    rows, ok = [], True
    for law in laws:
        for control, mis, sims in (("positive", None, args.simulations), ("negative", "noise", args.negative_simulations)):
            t0 = time.perf_counter()
            tab = check_calibration(law, num_simulations=sims, num_warmup=args.warmup, num_samples=args.samples,
                                    thin=args.thin, num_bins=args.bins, misspecify=mis, rng_key=args.seed)
            worst = tab["p_value"].idxmin()
            row = {"law": law, "control": control, "simulations": sims, "worst_parameter": worst,
                   "min_p": float(tab["p_value"].min()), "threshold": tab.attrs["alpha"] / len(tab),
                   "passes": tab.attrs["passes"], "divergences": tab.attrs["divergences"], "rejected": tab.attrs["rejected"],
                   "seconds": round(time.perf_counter() - t0, 1),
                   "p_values": " ".join(f"{n}={v:.2g}" for n, v in tab["p_value"].items())}
            rows.append(row)
            ok &= row["passes"] == (control == "positive")
            print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    print()
    if args.out:
        table.to_csv(args.out, index=False)
    print(table.to_string(index=False))
    print("all positive controls pass and all negative controls fail" if ok else "SBC FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
