"""Chinchilla fit timing on this machine: mass matrix, chain layout, centred amplitudes and chain starts, measured side
by side in one run.

    python benchmarks/chinchilla.py            # prints a Markdown table (about 5 minutes on 2 idle CPU cores)
    python benchmarks/chinchilla.py --issue15  # only: centred amplitudes x MAP starts vs the default before them

Data: the 240 Chinchilla points (bundled). Every configuration fits hoffmann2022 with 4 chains x 1000 warmup + 1000
draws twice in a fresh process: ``cold_s`` is the first fit (tracing and compiling included, from an empty
persistent compilation cache), ``warm_s`` the same fit again in that process, and ``sampling_s`` that second fit's
NUTS run alone (warmup and draws: ``run_nuts``, waited for). ESS/s divides the smallest bulk ESS over the parameters
by ``warm_s``. "auto" (today's default) runs one chain per CPU host device (set up by ``import bayescale``);
"vectorized" and "sequential" run the chains in lockstep or one after another on one device. "centred" samples
power-law amplitudes at the data's centre (:mod:`bayescale.infer.reparam`), "init" is where chains start (``map``:
multi-start MAP and Laplace draws, :mod:`bayescale.infer.starts`; ``median``: the prior median). The "warm" row's
``cold_s`` is a second process after an identical first one (the persistent cache filled), i.e. what a refit of the
same law and data shape costs in a new process. The baseline for the ratios is the default before the speed work
(dense, vectorized, cold). The last row is the classic method (`bayescale.validation.baseline.fit_baseline`: summed
Huber on log residuals, L-BFGS-B from 243 starts, then 1,000 bootstrap resamples of runs), called twice the same way.

    python benchmarks/chinchilla.py --bootstrap 200     # fewer bootstrap resamples for the baseline row
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _table import markdown, timed_phases  # noqa: E402

CONFIGS = [
    # the default before the speed work: the baseline of the time ratios
    dict(dense_mass=True, chain_method="vectorized", cache="cold", centre=False, init="median"),
    dict(dense_mass=False, chain_method="vectorized", cache="cold", centre=False, init="median"),
    dict(dense_mass=True, chain_method="sequential", cache="cold", centre=False, init="median"),
    # the default before issue 15 (one chain per CPU host device): the reference of the issue-15 rows
    dict(dense_mass=True, chain_method="auto", cache="cold", centre=False, init="median"),
    dict(dense_mass=True, chain_method="auto", cache="cold", centre=True, init="median"),
    dict(dense_mass=True, chain_method="auto", cache="cold", centre=False, init="map"),
    dict(dense_mass=True, chain_method="auto", cache="cold", centre=True, init="map"),  # today's default
    dict(dense_mass=True, chain_method="auto", cache="warm", centre=True, init="map"),  # ... with compiled programs
]
#: Rows of ``--issue15``: centred amplitudes and robust initialisation against the default before them, same run.
ISSUE15 = CONFIGS[3:7]


def measure(dense_mass: bool, chain_method: str, cache: str, centre: bool = True, init: str = "map") -> dict:
    import bayescale as bs
    import bayescale.infer.fit as inference
    from bayescale.datasets import load_chinchilla

    ds = load_chinchilla()
    kw = dict(num_chains=4, num_warmup=1000, num_samples=1000, dense_mass=dense_mass, chain_method=chain_method,
              progress_bar=False, centre_amplitudes=centre, init=init)
    t0 = time.perf_counter()
    bs.fit("hoffmann2022", ds, **kw)
    cold = time.perf_counter() - t0
    with timed_phases(inference, {"run_nuts": "sampling_s"}) as phases:
        t0 = time.perf_counter()
        result = bs.fit("hoffmann2022", ds, **kw)
        warm = time.perf_counter() - t0
    diag = json.loads(result.attrs["diagnostics"])
    ess = min(row["ess_bulk"] for row in diag["parameters"])
    return dict(
        mass="dense" if dense_mass else "diagonal", chains=chain_method, cache=cache,
        centred="yes" if centre else "no", init=init, cold_s=cold, warm_s=warm, sampling_s=phases["sampling_s"],
        steps_per_draw=float(result.sample_stats["n_steps"].mean()),
        min_ess_bulk=ess, ess_per_s=ess / warm, divergences=diag["divergences"],
    )


def measure_baseline(num_bootstrap: int) -> dict:
    from bayescale.validation.baseline import fit_baseline
    from bayescale.datasets import load_chinchilla

    ds = load_chinchilla()
    walls = []
    for _ in range(2):
        t0 = time.perf_counter()
        fit_baseline("hoffmann2022", ds, num_bootstrap=num_bootstrap, bootstrap_starts=1)
        walls.append(time.perf_counter() - t0)
    nan = float("nan")
    return dict(
        mass="-", chains=f"Huber+L-BFGS, {num_bootstrap} bootstrap", cache="-", centred="-", init="-", cold_s=walls[0],
        warm_s=walls[1], sampling_s=nan, steps_per_draw=nan, min_ess_bulk=nan, ess_per_s=nan, divergences=0,
    )


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the baseline row (0: skip it)")
    p.add_argument("--issue15", action="store_true",
                   help="only the centring x initialisation rows (chains one per device, cold cache), no baseline")
    args = p.parse_args()
    rows = []
    if args.issue15:
        configs = ISSUE15
    else:
        configs = CONFIGS + ([dict(baseline=args.bootstrap)] if args.bootstrap else [])
    for cfg in configs:
        env = dict(os.environ, BAYESCALE_CACHE_DIR=tempfile.mkdtemp(prefix="bayescale-bench-"))
        command = [sys.executable, __file__, "--one", json.dumps(cfg)]
        if cfg.get("cache") == "warm":  # a first identical process fills the persistent compilation cache
            subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    import jax

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} ({jax.devices()[0].platform})\n")
    base = rows[0]["cold_s"]
    for r in rows:
        r["time_ratio"] = r["cold_s"] / base
    print(markdown(rows))
    if not args.issue15:
        print(f"\ndense vs diagonal mass: {rows[1]['steps_per_draw'] / rows[0]['steps_per_draw']:.1f}x fewer leapfrog "
              f"steps per draw, {rows[0]['ess_per_s'] / rows[1]['ess_per_s']:.1f}x ESS/s")
    ref = next(r for r in rows if r["chains"] == "auto" and r["centred"] == "no" and r["init"] == "median")
    for r in rows:
        if r["chains"] == "auto" and r is not ref:
            print(f"centred={r['centred']}, init={r['init']}, cache={r['cache']} vs the default before issue 15: "
                  f"{ref['steps_per_draw'] / r['steps_per_draw']:.2f}x fewer steps per draw, "
                  f"{r['ess_per_s'] / ref['ess_per_s']:.2f}x ESS/s, cold wall {r['cold_s'] / ref['cold_s']:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        cfg = json.loads(sys.argv[2])
        print(json.dumps(measure_baseline(cfg["baseline"]) if "baseline" in cfg else measure(**cfg)))
    else:
        main()
