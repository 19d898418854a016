"""Collapsed curve noise against sampled run effects, side by side in one run.

    PYTHONPATH=. python benchmarks/curves.py gemstones      # the real Gemstones hot curves, default noise
    PYTHONPATH=. python benchmarks/curves.py synthetic      # 1e4 simulated points (100 runs x 100 checkpoints)
    PYTHONPATH=. python benchmarks/curves.py gemstones --num-warmup 500 --num-samples 500
    PYTHONPATH=. python benchmarks/curves.py synthetic-fit --noise run+ou   # 1e4 simulated points with bs.fit's defaults

Both tables compare ``noise="run+ou"`` (the default: run effects and the OU path integrated out, NUTS samples only the
law and noise parameters; bayescale.infer.noise) with ``noise="run+ou+latent"`` (the earlier model: non-centred run effects
``z_run`` sampled by NUTS, Student-t innovations per checkpoint), and give the ratio latent / collapsed.

- ``gemstones``: hoffmann2022 on the 220 checkpoints of Gemstones' 22 `hot` runs (McLeish et al. 2025; the bundled
  copy, as in examples/real_curves.py) with ``bs.fit``'s defaults (Student-t, 4 chains x 1000 warmup + 1000 draws):
  max R-hat and min bulk ESS over the law and noise parameters, leapfrog steps per draw, divergences, wall time.
- ``synthetic``: benchmarks/scale.py's measurement (one chain, ``--num-warmup`` + ``--num-samples``, gradient time,
  steps per draw, min bulk ESS) at ``--points`` simulated points.
- ``synthetic-fit``: the same simulated points fitted as ``gemstones`` is (``bs.fit``: MAP starts and the Laplace
  matrix, ``--num-chains`` chains), for R-hat.
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
from _table import markdown  # noqa: E402

SPECS = ("run+ou+latent", "run+ou")


def gemstones(num_chains: int, num_warmup: int, num_samples: int, seed: int, specs: tuple[str, ...] = SPECS) -> list[dict]:
    import pandas as pd

    from bayescale.datasets import gemstones_dir

    df = pd.read_json(gemstones_dir() / "wandb_dfs" / "wandb_df_for_fitting_hot.jsonl", lines=True)
    columns = {"N": "params_active_precise", "D": "tokens", "loss": "final_loss", "run": "run_name"}
    return fitted(bs.load_runs(df, columns=columns, inputs=("N", "D")), num_chains, num_warmup, num_samples, seed, specs)


def fitted(ds, num_chains: int, num_warmup: int, num_samples: int, seed: int, specs: tuple[str, ...]) -> list[dict]:
    """``bs.fit("hoffmann2022", ds)`` for each noise spec: R-hat, bulk ESS, steps per draw, divergences, wall time."""
    rows = []
    for spec in specs:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = bs.fit("hoffmann2022", ds, noise=spec, rng_key=seed, num_chains=num_chains, num_warmup=num_warmup,
                            num_samples=num_samples, progress_bar=False)
        wall = time.perf_counter() - t
        diag = bs.summary(result)
        names = list(diag.index)  # the law and noise parameters
        stats = result["sample_stats"]
        rows.append(dict(noise=spec, points=ds.sizes["point"], max_rhat=f"{float(diag.loc[names, 'rhat'].max()):.3f}",
                         min_ess_bulk=float(diag.loc[names, "ess_bulk"].min()),
                         steps_per_draw=float(stats["n_steps"].mean()),
                         divergences=int(stats["diverging"].sum()), wall_s=wall,
                         **{f"{n}_median": float(result["posterior"][n].median()) for n in ("E", "beta", "tau", "ell")}))
        print(markdown(rows), flush=True)
    return rows


def synthetic_fit(points: float, num_chains: int, num_warmup: int, num_samples: int, seed: int,
                  specs: tuple[str, ...]) -> list[dict]:
    """``bs.fit`` (MAP starts, ``num_chains`` chains) on benchmarks/scale.py's simulated curves: R-hat needs chains."""
    from scale import curves

    return fitted(bs.load_runs(curves(int(points))), num_chains, num_warmup, num_samples, seed, specs)


def synthetic(points: float, num_warmup: int, num_samples: int, specs: tuple[str, ...] = SPECS) -> list[dict]:
    from scale import measure

    rows = []
    for spec in specs:
        rows.append(measure(int(points), num_warmup, num_samples, spec=spec))
        print(markdown(rows), flush=True)
    return rows


def ratios(rows: list[dict], keys: tuple[str, ...]) -> dict:
    old, new = rows
    return {k: ("latent / collapsed" if k == "noise" else old[k] / new[k] if k in keys and new[k] else "")
            for k in old}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=["gemstones", "synthetic", "synthetic-fit"])
    p.add_argument("--num-chains", type=int, default=4)
    p.add_argument("--num-warmup", type=int, default=None, help="default 1000 (gemstones), 200 (synthetic)")
    p.add_argument("--num-samples", type=int, default=None, help="default 1000 (gemstones), 200 (synthetic)")
    p.add_argument("--points", type=float, default=1e4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", nargs="+", default=list(SPECS), help="the noise specs to run (default both)")
    args = p.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} "
          f"({jax.devices()[0].platform}, {jax.local_device_count()} devices)\n", flush=True)
    if args.table != "synthetic":
        fit_of = gemstones if args.table == "gemstones" else lambda *a: synthetic_fit(args.points, *a)
        rows = fit_of(args.num_chains, args.num_warmup or 1000, args.num_samples or 1000, args.seed, tuple(args.noise))
        keys = ("steps_per_draw", "wall_s", "min_ess_bulk")
    else:
        rows = synthetic(args.points, args.num_warmup or 200, args.num_samples or 200, tuple(args.noise))
        keys = ("grad_ms", "steps_per_draw", "sampling_s", "min_ess", "ess_per_s")
    if len(rows) == 2:
        print("\n" + markdown([*rows, ratios(rows, keys)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
