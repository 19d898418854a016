"""Many small fits: a Python loop of ``bayescale.fit`` against one ``bayescale.fit_batch``, measured in one run.

    PYTHONPATH=. python benchmarks/batch.py                    # 20 fits (about 5 minutes on 2 CPU cores)
    PYTHONPATH=. python benchmarks/batch.py --fits 1000 --skip-loop   # the GPU goal's size (1,000 fits)
    PYTHONPATH=. python benchmarks/batch.py --skip-loop --chains 4 --kernels nuts chees   # NUTS against ChEES-HMC

Each fit is hoffmann2022 on its own simulated 36-point table (6 sizes x 6 token counts, 1% noise, seed = fit index),
2 chains x 500 warmup + 500 draws. The loop fits one table after another with ``fit`` (its default chain layout;
every fit pays Python overhead and, without the persistent cache, compilation); the batch fits all tables in one
compiled vmapped run, optionally in groups of ``--batch-size`` (fit, chain) pairs, with each of ``--kernels``
(``nuts``: vectorised NUTS, every iteration waits for the deepest tree of the batch; ``chees``: ChEES-HMC, jittered
fixed-length HMC adapted across each fit's chains). Columns: wall time (a batch: its second, warm run; ``cold_s``
the first, with compilation), per-fit time, leapfrog steps per draw (``lockstep_steps``: the largest over the
batch, what a vectorised iteration costs), median over fits of the smallest bulk ESS, the largest R-hat, ESS per
second, and ratios to the first row.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import jax
import numpy as np

import bayescale as bs

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from _table import markdown  # noqa: E402
from tests.conftest import simulate_table  # noqa: E402

TRUTH = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)
NAMES = ("E", "A", "B", "alpha", "beta")


def batch_row(tables: list, kernel: str, batch_size: int | None, settings: dict) -> dict:
    """One ``fit_batch`` of ``tables`` twice in this process: ``cold_s`` includes tracing and compiling, the other
    columns are the second (warm) run's. ``ess_per_s``: the median over fits of the smallest bulk ESS of the law's
    parameters, times the number of fits, per second of the warm run."""
    walls = []
    for _ in range(2):
        t = time.perf_counter()
        r = bs.fit_batch("hoffmann2022", tables, rng_key=0, batch_size=batch_size, kernel=kernel, **settings)
        walls.append(time.perf_counter() - t)
    diag = r["fit_diagnostics"].to_dataset()
    ess = diag["ess_bulk"].sel(parameter=list(NAMES)).min("parameter").values
    stats = r["sample_stats"]
    return dict(method=f"fit_batch {kernel}", fits=len(tables), chains=settings["num_chains"],
                batch_size=str(batch_size or "all"), cold_s=walls[0], wall_s=walls[1], per_fit_s=walls[1] / len(tables),
                steps_per_draw=float(stats["n_steps"].mean()),
                lockstep_steps=float(stats["n_steps"].max(("fit", "chain")).mean()),
                median_min_ess=float(np.median(ess)), max_rhat=float(diag["rhat"].max()),
                divergences=int(stats["diverging"].sum()), ess_per_s=float(np.median(ess)) * len(tables) / walls[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fits", type=int, default=20)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--batch-size", type=int, nargs="*", default=[None], help="(fit, chain) pairs per vmapped group")
    p.add_argument("--kernels", nargs="+", default=["nuts"], choices=["nuts", "chees"],
                   help="fit_batch kernels to compare (default nuts)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--skip-loop", action="store_true")
    args = p.parse_args(argv)
    tables = [simulate_table("hoffmann2022", TRUTH, seed=s) for s in range(args.fits)]
    settings = dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples, device=args.device)
    rows = []
    warnings.simplefilter("ignore")
    if not args.skip_loop:
        t = time.perf_counter()
        ess = []
        for k, table in enumerate(tables):
            r = bs.fit("hoffmann2022", table, rng_key=k, progress_bar=False, **settings)
            post = r.posterior.to_dataset()[list(NAMES)]
            import arviz_stats as azs

            ess.append(float(azs.ess(post, method="bulk").to_array().min()))
        wall = time.perf_counter() - t
        rows.append(dict(method="loop of fit", fits=args.fits, chains=args.chains, batch_size="-", wall_s=wall,
                         per_fit_s=wall / args.fits, median_min_ess=float(np.median(ess)),
                         ess_per_s=float(np.median(ess)) * args.fits / wall))
    for kernel in args.kernels:
        for size in args.batch_size:
            rows.append(batch_row(tables, kernel, size, settings))
            print(markdown(rows), flush=True)
    for row in rows:
        row["time_vs_first"] = row["wall_s"] / rows[0]["wall_s"]
        row["ess_per_s_vs_first"] = row["ess_per_s"] / rows[0]["ess_per_s"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} "
          f"({jax.devices()[0].platform}, {jax.local_device_count()} devices)\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
