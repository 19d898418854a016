"""Many small fits: a Python loop of ``bayescale.fit`` against one ``bayescale.fit_batch``, measured in one run.

    PYTHONPATH=. python benchmarks/batch.py                    # 20 fits (about 5 minutes on 2 CPU cores)
    PYTHONPATH=. python benchmarks/batch.py --fits 1000 --skip-loop   # the GPU goal's size (1,000 fits)

Each fit is hoffmann2022 on its own simulated 36-point table (6 sizes x 6 token counts, 1% noise, seed = fit index),
2 chains x 500 warmup + 500 draws. The loop fits one table after another with ``fit`` (its default chain layout;
every fit pays Python overhead and, without the persistent cache, compilation); the batch fits all tables in one
compiled vmapped run, optionally in groups of ``--batch-size`` (fit, chain) pairs. Columns: wall time including
compilation, per-fit time, median over fits of the smallest bulk ESS, and the ratio to the loop.
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fits", type=int, default=20)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--batch-size", type=int, nargs="*", default=[None], help="(fit, chain) pairs per vmapped group")
    p.add_argument("--skip-loop", action="store_true")
    args = p.parse_args(argv)
    tables = [simulate_table("hoffmann2022", TRUTH, seed=s) for s in range(args.fits)]
    settings = dict(num_chains=2, num_warmup=args.warmup, num_samples=args.samples)
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
        rows.append(dict(method="loop of fit", fits=args.fits, batch_size="-", wall_s=wall, per_fit_s=wall / args.fits,
                         median_min_ess=float(np.median(ess))))
    for size in args.batch_size:
        t = time.perf_counter()
        r = bs.fit_batch("hoffmann2022", tables, rng_key=0, batch_size=size, **settings)
        wall = time.perf_counter() - t
        ess = r["fit_diagnostics"]["ess_bulk"].sel(parameter=list(NAMES)).min("parameter").values
        rows.append(dict(method="fit_batch", fits=args.fits, batch_size=str(size or "all"), wall_s=wall,
                         per_fit_s=wall / args.fits, median_min_ess=float(np.median(ess))))
    for row in rows:
        row["time_vs_first"] = row["wall_s"] / rows[0]["wall_s"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} "
          f"({jax.devices()[0].platform}, {jax.local_device_count()} devices)\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
