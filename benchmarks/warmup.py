"""The mass-matrix adaptation: Stan's shrinkage and numpyro's identity start against bayescale's rule and the MAP's
Laplace matrix, measured side by side in one run (2026-12-01; bayescale.infer.fit.regularizes_mass,
laplace_inverse_mass).

    PYTHONPATH=. python benchmarks/warmup.py                  # Chinchilla and a 1e4-row table (about 5 min, 2 cores)
    PYTHONPATH=. python benchmarks/warmup.py --rows 1e4 1e5   # the final-loss tables of benchmarks/scale.py

Every row is ``bayescale.fit("hoffmann2022", ...)`` at its defaults (4 chains x 1000 warmup + 1000 draws, MAP
starts, dense mass, ``pointwise=False``), seed 0, in this process, after one discarded fit of each dataset that
compiles the programs the three configurations share (so no row pays compilation). Configurations:

- ``before``: the defaults until 2026-12-01: numpyro's mass adaptation as it comes, i.e. Stan's shrinkage of every
  window's estimate toward ``1e-3 * I`` (``regularize_mass=True``) and warmup from the identity matrix;
- ``no shrinkage``: bayescale's rule (no shrinkage for these 7 parameters), warmup still from the identity;
- ``default``: today's, the rule and warmup from the Laplace matrix of the MAP the chains start around.

Columns: wall seconds of the fit, of which ``sampling_s`` the NUTS run (warmup and draws, ``run_nuts``), leapfrog
steps per draw while sampling, the smallest bulk ESS over the parameters and the largest R-hat, ESS per wall second,
and the ratio of that to ``before``'s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import numpy as np

import bayescale as bs
import bayescale.infer.fit as inference
import bayescale.infer.starts as starts

sys.path.insert(0, os.path.dirname(__file__))
from _table import markdown, timed_phases  # noqa: E402
from scale import final_losses  # noqa: E402

CONFIGS = {"before": (True, False), "no shrinkage": (None, False), "default": (None, True)}


def fit_once(ds, regularize: bool | None, laplace: bool) -> dict:
    original = inference.find_start

    def without_matrix(*args, **kwargs):  # the start as before: Laplace draws, no initial matrix handed on
        start = original(*args, **kwargs)
        return starts.Start(init_params=start.init_params, record=start.record, covariance=None)

    inference.find_start = original if laplace else without_matrix
    try:
        with timed_phases(inference, {"run_nuts": "sampling_s"}) as phases:
            t = time.perf_counter()
            result = bs.fit("hoffmann2022", ds, sampler=bs.NUTS(regularize_mass=regularize, progress_bar=False),
                            pointwise=False)
            wall = time.perf_counter() - t
    finally:
        inference.find_start = original
    table = bs.summary(result)
    ess = float(table["ess_bulk"].min())
    return dict(wall_s=wall, **phases, steps_per_draw=float(result["sample_stats"]["n_steps"].mean()), min_ess=ess,
                max_rhat=float(table["rhat"].max()), ess_per_s=ess / wall)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=float, nargs="*", default=[1e4], help="final-loss table sizes besides Chinchilla")
    p.add_argument("--no-chinchilla", action="store_true")
    args = p.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; jax "
          f"{jax.__version__} ({jax.devices()[0].platform}, {jax.local_device_count()} devices)\n", flush=True)
    from bayescale.datasets import load_chinchilla

    datasets = ([] if args.no_chinchilla else [("chinchilla (240)", load_chinchilla())]) + [
        (f"table ({int(n):.0e} rows)", bs.load_runs(final_losses(int(n)))) for n in args.rows]
    rows = []
    for name, ds in datasets:
        base = None
        fit_once(ds, None, True)  # compiles
        for config, (regularize, laplace) in CONFIGS.items():
            row = dict(data=name, config=config, **fit_once(ds, regularize, laplace))
            base = base or row["ess_per_s"]
            row["vs_before"] = row["ess_per_s"] / base
            rows.append(row)
            print(markdown(rows), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
