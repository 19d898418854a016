"""How close to the gradient floor does NUTS run on a large hierarchical curve model?

    PYTHONPATH=. python benchmarks/scale.py                       # 1e4, 1e5, 1e6 points (about 15 min on 2 CPU cores)
    PYTHONPATH=. python benchmarks/scale.py --points 1e4 1e5 --samples 200
    PYTHONPATH=. python benchmarks/scale.py --points 1e4 1e5 1e6 --samples 0     # gradient time only
    PYTHONPATH=. python benchmarks/scale.py --tables 1e4 1e5      # final-loss tables fitted with bs.fit defaults
    PYTHONPATH=. python benchmarks/scale.py --points 1e4 --regularize auto on    # fit's mass-matrix rule vs Stan's
    PYTHONPATH=. python benchmarks/scale.py --points 1e6 --init map              # fit's start (MAP + Laplace matrix)

``--regularize``: the mass-matrix adaptation, one row each: ``auto`` is fit's rule (no shrinkage of the adapted matrix
for these few global parameters, :func:`bayescale.infer.fit.regularizes_mass`), ``on`` Stan's shrinkage toward
``1e-3 * I`` (numpyro's default, and bayescale's before 2026-12-01), ``off`` none.

``--tables``: one final loss per run (no curves), N and D log-uniform over 1e7-1e10 and 1e9-1e12, hoffmann2022 with
1% log-normal noise, fitted with ``bayescale.fit`` at its defaults (4 chains of 1000 + 1000, centred amplitudes, MAP
starts, per-point groups thinned to float32 above 5e6 values) and saved with ``bayescale.save``; the row gives the
wall and CPU time of fit and save together, the time of the NUTS run and of the per-point groups, the file size,
leapfrog steps per draw, and the same fit with ``pointwise=False`` (``--no-compare`` skips it).

Data: synthetic training curves of hoffmann2022 (bayescale.validation.simulate.simulate_curves: run effects 0.5%, residuals
1% correlated along log-tokens), 100 checkpoints per run, so 1e6 points are 10,000 runs. The model is the one
``bayescale.fit(..., noise="run+ou")`` builds (law + 10,000 partially pooled run effects + the exact OU likelihood),
with fit's sampler settings (dense mass over the global parameters, diagonal over run effects), one chain, started
at the prior median (``--init median``, warmup from the identity matrix) or as ``bayescale.fit`` starts it (``--init
map``: a multi-start MAP, ``start_s``, and warmup from its Laplace matrix). For each size the table gives:

- ``grad_ms``: one evaluation of the potential (negative log density) and its gradient, jitted, median of 20;
- ``warmup_s`` and ``sampling_s``: wall time of each phase (compilation excluded: a 2-iteration run compiles first);
- ``steps``: leapfrog steps taken while sampling (sum of ``num_steps``);
- ``floor_s`` = grad_ms × steps: the time the sampling phase would take if every step cost one gradient and nothing
  else; ``vs_floor`` = sampling_s / floor_s (1 is the floor; the goal is within 3x at 1e6 points);
- ``min_ess`` over the law and noise parameters and ``ess_per_s`` (sampling phase).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.infer.fit import (StartWithMass, data_statistics, laplace_inverse_mass, log_inputs_of, nuts_mcmc,
                                 regularizes_mass)
from bayescale.infer.model import ModelSpec, build_model, mass_structure, resolve_priors
from bayescale.infer.noise import Noise, curve_structure
from bayescale.infer.starts import find_start
from bayescale.validation.simulate import simulate_curves

sys.path.insert(0, os.path.dirname(__file__))
from _table import markdown, timed_phases  # noqa: E402

TRUTH = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)


def curves(n_points: int, checkpoints: int = 100, seed: int = 0) -> pd.DataFrame:
    n_runs = max(n_points // checkpoints, 2)
    runs = pd.DataFrame({"run": [f"r{k}" for k in range(n_runs)], "N": np.geomspace(5e7, 5e9, n_runs)})
    return simulate_curves("hoffmann2022", TRUTH, runs, np.geomspace(1e8, 1e11, checkpoints), seed=seed,
                           sigma=0.01, tau=0.005, ell=0.5)


#: ``--regularize`` choices as :attr:`bayescale.NUTS.regularize_mass` values.
REGULARIZE = {"auto": None, "on": True, "off": False}


def measure(n_points: int, num_warmup: int, num_samples: int, spec: str = "run+ou", regularize: str = "auto",
            init: str = "median") -> dict:
    from numpyro.infer import MCMC, NUTS, init_to_median
    from numpyro.infer.util import initialize_model

    t0 = time.perf_counter()
    ds = bs.load_runs(curves(n_points))
    t_data = time.perf_counter() - t0
    law, noise = bs.load_law("hoffmann2022"), Noise.parse(spec)  # "run+ou": collapsed run effects (the default)
    spec = ModelSpec(law, resolve_priors(law, "student_t", None, noise), data_statistics(ds), noise=noise)
    model = build_model(spec, curve_structure(ds, noise))
    args, loss = (log_inputs_of(ds, law),), jax.numpy.asarray(ds["loss"].values)

    info = initialize_model(jax.random.PRNGKey(0), model, model_args=args, model_kwargs={"loss": loss},
                            init_strategy=init_to_median)
    grad = jax.jit(jax.value_and_grad(info.potential_fn))
    jax.block_until_ready(grad(info.param_info.z))
    times = []
    for _ in range(20):
        t = time.perf_counter()
        jax.block_until_ready(grad(info.param_info.z))
        times.append(time.perf_counter() - t)
    grad_s = float(np.median(times))
    if num_samples == 0:  # --samples 0: the gradient floor alone
        return dict(points=n_points, runs=ds.sizes["point"] // 100, data_s=t_data, grad_ms=1e3 * grad_s)

    start_s = 0.0
    if init == "map":  # fit's default: a multi-start MAP, the chain around it, warmup from its Laplace matrix
        t = time.perf_counter()
        start = find_start(model, args, {"loss": loss}, rng_key=jax.random.PRNGKey(2), num_chains=1)
        start_s = time.perf_counter() - t
        one_chain = jax.tree_util.tree_map(lambda x: x[0], start.init_params)

    def run(warmup: int, samples: int) -> tuple[MCMC, float, float]:
        mass = mass_structure(True, spec)
        settings = bs.NUTS(num_warmup=warmup, num_samples=samples, num_chains=1, progress_bar=False,
                           regularize_mass=REGULARIZE[regularize])
        if init == "map":
            mcmc = nuts_mcmc(model, settings, mass=mass, platform="cpu",
                             regularize=regularizes_mass(settings.regularize_mass, mass, one_chain, warmup))
            start_at = StartWithMass(one_chain, laplace_inverse_mass(start.covariance, mcmc.mass, one_chain))
        else:
            kernel = NUTS(model, dense_mass=mass, target_accept_prob=0.9, init_strategy=init_to_median,
                          regularize_mass_matrix=regularizes_mass(settings.regularize_mass, mass, info.param_info.z,
                                                                  warmup))
            mcmc, start_at = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=1, progress_bar=False), None
        t = time.perf_counter()
        mcmc.warmup(jax.random.PRNGKey(1), *args, loss=loss, extra_fields=("num_steps",), init_params=start_at)
        jax.block_until_ready(mcmc.last_state)
        t_warm = time.perf_counter() - t
        t = time.perf_counter()
        mcmc.run(mcmc.post_warmup_state.rng_key, *args, loss=loss, extra_fields=("num_steps",))
        jax.block_until_ready(mcmc.get_samples())
        return mcmc, t_warm, time.perf_counter() - t

    t = time.perf_counter()
    run(2, 2)  # compiles the warmup and sampling programs
    compile_s = time.perf_counter() - t
    mcmc, warm_s, samp_s = run(num_warmup, num_samples)
    steps = int(np.sum(mcmc.get_extra_fields()["num_steps"]))
    import arviz_stats as azs
    import xarray as xr

    post = mcmc.get_samples(group_by_chain=True)
    ds_post = xr.Dataset({k: (("chain", "draw"), np.asarray(v)) for k, v in post.items() if k in spec.sampled_names})
    ess = float(min(azs.ess(ds_post, method="bulk")[k] for k in ds_post.data_vars))
    return dict(noise=noise.spec, points=n_points, runs=ds.sizes["point"] // 100, regularize=regularize, init=init,
                data_s=t_data, start_s=start_s, grad_ms=1e3 * grad_s, compile_s=compile_s, warmup=num_warmup,
                warmup_s=warm_s, samples=num_samples, sampling_s=samp_s,
                steps=steps, steps_per_draw=steps / num_samples, floor_s=grad_s * steps,
                vs_floor=samp_s / (grad_s * steps), min_ess=ess, ess_per_s=ess / samp_s)


def final_losses(n_rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 10 ** rng.uniform(7, 10, n_rows)
    d = 10 ** rng.uniform(9, 12, n_rows)
    truth = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)
    loss = np.asarray(bs.load_law("hoffmann2022").predict(truth, N=n, D=d)) * np.exp(0.01 * rng.standard_normal(n_rows))
    return pd.DataFrame({"N": n, "D": d, "loss": loss})


def measure_table(n_rows: int, compare: bool = True, regularize: str = "auto") -> list[dict]:
    """``bs.fit`` at defaults on a final-loss table, saved; and the same with ``pointwise=False`` (``compare``).

    Besides the wall time, ``cpu_s`` is the process's CPU time (all threads): on a shared machine it moves less with
    the load than the wall time; ``sampling_s`` and ``groups_s`` time the NUTS run and the per-point groups alone."""
    import tempfile

    import bayescale.infer.fit as inference

    ds = bs.load_runs(final_losses(n_rows))
    rows = []
    for pointwise in (True, False) if compare else (True,):
        with timed_phases(inference, {"run_nuts": "sampling_s", "draw_groups": "groups_s"}) as phases:
            t0, c0 = time.perf_counter(), time.process_time()
            result = bs.fit("hoffmann2022", ds, pointwise=pointwise, progress_bar=False,
                            regularize_mass=REGULARIZE[regularize])
            with tempfile.TemporaryDirectory() as tmp:
                path = bs.save(result, os.path.join(tmp, "fit.nc"))
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                size = os.path.getsize(path) / 1e6
        rows.append(dict(rows=n_rows, pointwise=pointwise, regularize=regularize, wall_s=wall, cpu_s=cpu, **phases,
                         file_mb=size,
                         steps_per_draw=float(result["sample_stats"]["n_steps"].mean()),
                         max_rhat=max(r["rhat"] for r in bs.summary(result).to_dict("records")),
                         load_avg=os.getloadavg()[0]))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=float, nargs="*", default=[1e4, 1e5, 1e6])
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--tables", type=float, nargs="*", default=None, help="final-loss table sizes (replaces --points)")
    p.add_argument("--no-compare", action="store_true", help="--tables: skip the pointwise=False row")
    p.add_argument("--regularize", nargs="+", choices=list(REGULARIZE), default=["auto"],
                   help="mass-matrix regularisation, one row each (default: auto, fit's rule)")
    p.add_argument("--init", nargs="+", choices=["median", "map"], default=["median"],
                   help="where the chain starts, one row each: median (prior median, identity matrix) or map (fit's "
                        "default: a multi-start MAP and warmup from its Laplace matrix)")
    args = p.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; jax "
          f"{jax.__version__} ({jax.devices()[0].platform}, {jax.local_device_count()} devices)\n", flush=True)
    if args.tables:
        rows = []
        for n in args.tables:
            for regularize in args.regularize:
                rows += measure_table(int(n), compare=not args.no_compare, regularize=regularize)
                print(markdown(rows), flush=True)
        return 0
    rows = []
    for n in args.points:
        for regularize in args.regularize:
            for init in args.init:
                rows.append(measure(int(n), args.warmup, args.samples, regularize=regularize, init=init))
                print(markdown(rows), flush=True)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
