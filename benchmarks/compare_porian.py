"""`bayescale compare` on two real setups of Porian et al. 2024 at a budget beyond both fits (docs/planning.md).

    PYTHONPATH=. python benchmarks/compare_porian.py --out results/porian            # iid fits (~2.5 min on 2 cores)
    PYTHONPATH=. python benchmarks/compare_porian.py --out results/porian --curves   # A also as curves (run+ou)

RefinedWeb validation loss, standard parameter counting, short warmup, base hyperparameters, from
``/work/shared/data/porian_resolving_discrepancies/derived_isoflop_points.csv`` (``--data``): A = long cosine
(``decay=kaplan``; the points of one size at different budgets are snapshots of one run, so runs are labelled by N),
B = cosine matched to each budget (``decay=chinchilla``, one run per point). Fits ``hoffmann2022`` to each (2 chains x
500 + 500, seed 0), saves them with ``attrs["evaluation"]`` and prints ``bayescale compare A B --compute 1e21
--compute 2.56e19``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

import bayescale as bs
from bayescale.cli import main as cli

DATA = "/work/shared/data/porian_resolving_discrepancies/derived_isoflop_points.csv"


def setup(d: pd.DataFrame, decay: str) -> pd.DataFrame:
    g = d[(d.dataset == "rw") & (d.param_count == "standard") & (d.val == "val") & (d.warmup == "short")
          & (d.hparams == "base") & (d.decay == decay)]
    runs = [f"N{n:.3g}" if decay == "kaplan" else f"N{n:.3g}-C{c:.3g}" for n, c in zip(g.N_params, g.flops_budget)]
    return pd.DataFrame({"N": g.N_params.values, "D": g.D_tokens.values, "loss": g.loss.values, "run": runs})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DATA)
    p.add_argument("--out", default="results/porian")
    p.add_argument("--curves", action="store_true", help="fit A (long cosine) with noise='run+ou' instead of iid")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = pd.read_csv(args.data)
    paths = []
    for name, decay, noise in (("long_cosine", "kaplan", "run+ou" if args.curves else "iid"),
                               ("matched_cosine", "chinchilla", "iid")):
        fit = bs.fit("hoffmann2022", bs.load_runs(setup(d, decay)), noise=noise, rng_key=0, num_chains=2,
                     num_warmup=500, num_samples=500, progress_bar=False)
        fit.attrs["evaluation"] = "RefinedWeb validation, nats/token (Porian et al. 2024)"
        paths.append(str(out / f"{name}.nc"))
        bs.save(fit, paths[-1])
    return cli(["compare", *paths, "--compute", "1e21", "--compute", "2.56e19"])


if __name__ == "__main__":
    sys.exit(main())
