"""The 9-parameter Farseer law on 400 real points: chain starts (multi-start MAP vs prior median), side by side.

    PYTHONPATH=. python benchmarks/farseer.py                 # about 10 minutes on 2 idle CPU cores
    PYTHONPATH=. python benchmarks/farseer.py --init map      # one row

Data: ``farseer_scaling_law.csv`` of the SLDBench training splits (Li et al. 2025; CC-BY-4.0; 404 rows, 4 exact
duplicates dropped), from ``$BAYESCALE_SHARED_DATA/sldbench_train`` (default ``../shared/data/sldbench_train``). Law:
``benchmarks/farseer_boxcox.toml``, Farseer's L = exp(a3 N^γ + b3) + exp(a2 N^β + b2) D^(−exp(a1 N^α + b1)) with each
``a N^x + b`` written in its Box-Cox form ``b' + a' (n^x − 1) / x`` (n = N / 1e9; the file's notes say why). Each row
fits it with ``bayescale.fit`` defaults (4 chains × 1000 + 1000, Student-t) but the start, and gives the largest
R-hat, the smallest bulk ESS, divergences, leapfrog steps per draw, the modes the start search found, and the wall.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

import bayescale as bs

sys.path.insert(0, os.path.dirname(__file__))
from _table import markdown  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("BAYESCALE_SHARED_DATA", HERE.parent.parent / "shared" / "data")) / "sldbench_train"


def measure(init: str, num_warmup: int, num_samples: int) -> dict:
    table = pd.read_csv(DATA / "farseer_scaling_law.csv").drop(columns="group").drop_duplicates()
    ds = bs.load_runs(table)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bs.fit(bs.load_law(HERE / "farseer_boxcox.toml"), ds, init=init, num_warmup=num_warmup,
                        num_samples=num_samples, pointwise=False, progress_bar=False)
    wall = time.perf_counter() - t0
    table = bs.summary(result)
    record = json.loads(result.attrs["init"])
    return dict(init=init, points=ds.sizes["point"], max_rhat=float(table["rhat"].max()),
                min_ess_bulk=float(table["ess_bulk"].min()), divergences=table.attrs["divergences"],
                steps_per_draw=float(result["sample_stats"]["n_steps"].mean()),
                modes=len(record.get("modes", [])) or "-", multimodal=record.get("multimodal", "-"), wall_s=wall)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", nargs="*", default=["median", "map"])
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--samples", type=int, default=1000)
    args = p.parse_args(argv)
    rows = [measure(init, args.warmup, args.samples) for init in args.init]
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
