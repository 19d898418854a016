"""Critical batch size (Kaplan et al. 2020, Sec. 5.1, Fig. 10 / Fig. 18) and L(N, S_min) as Bayesian fits.

Two models, both run with :func:`bayescale.infer.fit.run_nuts`:

1. :func:`fit_critical_batch`: a batch-size scan. For each target loss L, the steps S and tokens E = B·S each run
   needed (:func:`steps_to_loss`, interpolated along its curve) lie on the hyperbola

       (S/S_min − 1)(E/E_min − 1) = 1,   i.e.  S(B) = S_min(L)·(1 + B_crit(L)/B),   E_min = B_crit·S_min,

   with one critical batch B_crit(L) = B*/L^(1/α_B) shared by every loss level and model size, and a free S_min per
   (model, loss level). Noise on log S: a run effect (a run that is fast at one level is fast at the next) plus
   independent scatter.
2. :func:`fit_loss_steps`: L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S with S_min = S/(1 + B_crit(L)/B), where the
   loss L appears on both sides; :func:`solve_loss` solves it by bisection in log L with a fixed iteration count and
   an implicit-function Newton step for the gradient. :func:`compute_frontier` gives the compute-efficient frontier
   (the model size that minimises C_min = 6·N·E_min at each loss) with posterior intervals.

:func:`simulate_batch_scan` draws loss curves from Kaplan's constants (:data:`KAPLAN_BATCH`).

References
----------
Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361, Sec. 5.1 (Eq. 5.1-5.4), Sec. 6
(Eq. 6.1-6.8 and Table 6). McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", arXiv:1812.06162.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import xarray as xr
from scipy.optimize import isotonic_regression

from bayescale.results.contract import result_kind
from bayescale.errors import ResultError
from bayescale.data import DataError
from bayescale.infer.declared import DeclaredModel, check_table
from bayescale.infer.fit import as_key, draw_groups, run_nuts, sample_stats_of
from bayescale.infer.starts import median_starts
from bayescale.infer.settings import NUTS, start_settings

__all__ = [
    "CRITICAL_BATCH_MODEL",
    "KAPLAN_BATCH",
    "LOSS_STEPS_MODEL",
    "critical_batch",
    "kaplan_steps",
    "simulate_batch_scan",
    "steps_to_loss",
    "fit_critical_batch",
    "solve_loss",
    "fit_loss_steps",
    "compute_frontier",
    "plot_hyperbolae",
    "plot_critical_batch",
    "plot_frontier",
]

#: Kaplan et al. 2020: B_crit(L) = B*/L^(1/α_B) (Eq. 5.3, B* ≈ 2.1e8 tokens, α_B ≈ 0.21) and the L(N, S_min) fit
#: (Eq. 5.6 / Table 3: α_N = 0.077, α_S = 0.76, N_c = 6.5e13, S_c = 2.1e3); LAWS.md.
KAPLAN_BATCH = {"B_star": 2.1e8, "alpha_B": 0.21, "N_c": 6.5e13, "alpha_N": 0.077, "S_c": 2.1e3, "alpha_S": 0.76}
#: 1 PF-day in FLOP (Kaplan et al. 2020, Sec. 1.3).
PF_DAY = 8.64e19
_CURVE_COLUMNS = ("run", "N", "B", "step", "loss")
_MAX_DRAWS = 400  # posterior draws used for figure bands: 5%/95% quantiles of 400 draws move by < 1% of the band


def critical_batch(loss, B_star: float, alpha_B: float):
    """B_crit(L) = B*/L^(1/α_B) in tokens (Kaplan et al. 2020, Eq. 5.3)."""
    return B_star * np.asarray(loss, dtype=float) ** (-1.0 / alpha_B)


def kaplan_steps(loss, N, B, params: dict[str, float] | None = None):
    """Steps a model of N parameters at batch B (tokens) needs to reach ``loss`` under the L(N, S_min) law:
    S_min = S_c·(L − (N_c/N)^α_N)^(−1/α_S) and S = S_min·(1 + B_crit(L)/B); ``inf`` where L is at or below the
    model's limit (N_c/N)^α_N. The explicit inverse of :func:`solve_loss`."""
    p = KAPLAN_BATCH | dict(params or {})
    loss, N, B = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (loss, N, B)))
    gap = loss - (p["N_c"] / N) ** p["alpha_N"]
    with np.errstate(divide="ignore", invalid="ignore"):
        s_min = np.where(gap > 0, p["S_c"] * np.abs(gap) ** (-1.0 / p["alpha_S"]), np.inf)
    return s_min * (1.0 + critical_batch(loss, p["B_star"], p["alpha_B"]) / B)


def simulate_batch_scan(
    model_sizes=(3e6, 8.5e7),
    batch_sizes=tuple(2.0 ** np.arange(14, 22)),
    *,
    params: dict[str, float] | None = None,
    steps=None,
    sigma: float = 0.002,
    run_sd: float = 0.003,
    rng_key: int = 0,
) -> pd.DataFrame:
    """Loss curves of a batch-size scan drawn from Kaplan's constants.

    Each (model size N, batch size B) run follows L(S) with S = :func:`kaplan_steps` (L; N, B): the L(N, S_min) law
    with the critical-batch adjustment, which is exactly the family of hyperbolae of :func:`fit_critical_batch`.
    Noise: log loss gets a per-run offset (sd ``run_sd``) and independent per-checkpoint noise (sd ``sigma``).
    The defaults mirror Kaplan's scan: a 3M and an 85M model, batches 2^14-2^21 tokens (Fig. 10).

    Returns
    -------
    pandas.DataFrame
        Columns ``run``, ``N``, ``B`` (tokens per batch), ``step``, ``loss``.
    """
    p = KAPLAN_BATCH | dict(params or {})
    steps = np.geomspace(1e3, 1e6, 40) if steps is None else np.asarray(steps, dtype=float)
    rng = np.random.default_rng(rng_key)
    rows = []
    for N in model_sizes:
        floor = (p["N_c"] / N) ** p["alpha_N"]
        # loss grid from just above the model's limit to high loss; S(L) is monotone, so interpolate L(log S)
        grid = floor * (1.0 + np.geomspace(1e-4, 20.0, 4000))
        for B in batch_sizes:
            log_s = np.log(kaplan_steps(grid, N, B, p))
            loss = np.exp(np.interp(np.log(steps), log_s[::-1], np.log(grid[::-1])))
            noise = run_sd * rng.standard_normal() + sigma * rng.standard_normal(steps.size)
            rows.append(pd.DataFrame({"run": f"N{N:.3g}_B{B:.3g}", "N": N, "B": B, "step": steps,
                                      "loss": loss * np.exp(noise)}))
    return pd.concat(rows, ignore_index=True)


def _check_curves(curves: pd.DataFrame) -> pd.DataFrame:
    return check_table(curves, "curves", labels=["run"], numeric=["N", "B", "step", "loss"],
                       constant_within=("run", ["N", "B"]))


def _monotone(step: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares non-increasing fit to log loss (isotonic regression, pool-adjacent-violators), one point per
    pooled block at the block's mean log step. A running minimum would follow the downward noise spikes and read
    every crossing too early, most where the curve is flat (measured: B* biased 1.8x high on simulated curves)."""
    fitted = isotonic_regression(np.log(loss), increasing=False).x
    block = np.concatenate([[0], np.cumsum(np.diff(fitted) != 0)])
    log_step = np.bincount(block, np.log(step)) / np.bincount(block)
    return np.exp(log_step), np.exp(fitted[np.r_[0, np.flatnonzero(np.diff(block)) + 1]])


def steps_to_loss(curves: pd.DataFrame, levels=None, *, n_levels: int = 6, min_runs: int = 3) -> pd.DataFrame:
    """Steps S and tokens E = B·S each run needed to reach each target loss.

    Along each run a monotone (isotonic) fit of the loss is interpolated linearly in (log loss, log step); a run that never
    reaches a level, or starts below it, gives no point there. Levels are per model size (``N``): ``levels`` (one list
    for every model, or a dict N → list), or by default ``n_levels`` log-spaced losses between the lowest first
    loss and the ``min_runs``-th lowest final loss of that model's runs, so every level is reached by at least
    ``min_runs`` runs. A (model, level) cell with fewer than ``min_runs`` runs is dropped: with fewer batch sizes the
    hyperbola's two scales are not identified.

    Returns
    -------
    pandas.DataFrame
        Columns ``run``, ``N``, ``B``, ``cell`` (index of the (N, level) pair), ``level`` (the target loss),
        ``S``, ``E``, ``slope`` (−d log L/d log S of the curve at the crossing).
    """
    df = _check_curves(curves)
    if not (isinstance(min_runs, (int, np.integer)) and min_runs >= 2):
        raise ValueError(f"min_runs must be an integer >= 2, got {min_runs!r}")
    if not (isinstance(n_levels, (int, np.integer)) and n_levels >= 1):
        raise ValueError(f"n_levels must be a positive integer, got {n_levels!r}")
    rows = []
    for N, sub in df.groupby("N", sort=True):
        runs = []
        for run, r in sub.groupby("run", sort=False):
            r = r.sort_values("step")
            runs.append((run, float(r["B"].iloc[0]), *_monotone(r["step"].to_numpy(), r["loss"].to_numpy())))
        if isinstance(levels, dict):
            lv = levels.get(N)
            if lv is None:
                raise ValueError(f"levels has no entry for model size N={N:g}; keys {sorted(levels)}")
        elif levels is not None:
            lv = levels
        else:
            if len(runs) < min_runs:
                continue
            top = min(l[0] for _, _, _, l in runs)  # every run starts above the highest level
            ends = np.sort([l[-1] for _, _, _, l in runs])
            low = ends[min_runs - 1]
            if not low < top:
                continue
            # keep the levels strictly inside (low, top): the end points are reached only at a checkpoint
            lv = np.geomspace(low, top, n_levels + 2)[1:-1] if n_levels > 1 else [np.sqrt(low * top)]
        lv = np.asarray(lv, dtype=float)
        if lv.ndim != 1 or not np.all(np.isfinite(lv) & (lv > 0)):
            raise ValueError(f"levels must be a list of positive finite losses, got {lv!r}")
        for level in lv:
            for run, B, step, loss in runs:
                if not (loss[-1] <= level <= loss[0]):
                    continue
                # the monotone fit is strictly decreasing: reverse it so np.interp sees increasing x
                log_l, log_st = np.log(loss), np.log(step)
                log_s = np.interp(np.log(level), log_l[::-1], log_st[::-1])
                # local slope −d log L/d log S of the segment holding the crossing: maps loss noise to step noise
                k = min(max(int(np.searchsorted(-log_l, -np.log(level))), 1), len(log_l) - 1)
                slope = (log_l[k - 1] - log_l[k]) / (log_st[k] - log_st[k - 1]) if len(log_l) > 1 else np.nan
                rows.append(dict(run=run, N=float(N), B=B, level=float(level), S=float(np.exp(log_s)), slope=slope))
    table = pd.DataFrame(rows, columns=["run", "N", "B", "level", "S", "slope"])
    table = table[np.isfinite(table["slope"]) & (table["slope"] > 0)]
    if table.empty:
        raise DataError("no run reaches any target loss; pass levels inside the range the curves span")
    counts = table.groupby(["N", "level"])["run"].transform("size")
    table = table[counts >= min_runs].reset_index(drop=True)
    if table.empty:
        raise DataError(f"no (model, loss level) cell is reached by at least min_runs={min_runs} runs")
    table["cell"] = table.groupby(["N", "level"], sort=True).ngroup()
    table["E"] = table["B"] * table["S"]
    return table[["run", "N", "B", "cell", "level", "S", "E", "slope"]]


# ----------------------------------------------------------------------------------------------------------------
# 1. Critical batch from a batch-size scan


#: The critical-batch model, declared (:mod:`bayescale.infer.declared`). Priors: log B_ref (B_crit at the geometric-mean
#: loss level) around the scan's geometric-mean batch, ±3 e-folds; α_B around Kaplan's 0.21, with an order of
#: magnitude either way in the prior's 90% range; noise of log loss (seed noise ~0.01-0.02 nats on 2-5 nats, LAWS.md)
#: and of a run's offset, in log loss; sigma_S: scatter in log S not explained by loss noise (interpolation between
#: checkpoints, hyperbola misfit). Override with ``fit_critical_batch(..., priors={"alpha_B": "..."})``.
CRITICAL_BATCH_MODEL = DeclaredModel(
    id="kaplan2020_critical_batch",
    result_kind="critical_batch",
    formula="log S = log S_min[cell] + log(1 + B_crit(L)/B) + (tau*z_run + eps)/slope + eta, "
            "B_crit(L) = B_ref*(L/L_ref)**(-1/alpha_B)",
    citation="Kaplan et al. 2020, arXiv:2001.08361, Eq. 5.1-5.4; McCandlish et al. 2018, arXiv:1812.06162",
    priors={"log_B_ref": "Normal(log_B_centre, 3.0)", "alpha_B": "LogNormal(log(0.25), 1.0)",
            "sigma": "HalfNormal(0.05)", "tau": "HalfNormal(0.05)", "sigma_S": "HalfNormal(0.1)",
            "log_S_min": "Normal(log(1e4), 5.0)"},
    statistics={"log_B_centre": "mean of log B over the points"},
)


def _hyperbola_model(cell, run, log_B, inv_slope, level_of_cell, log_S=None, *, n_runs, log_L_ref, priors):
    """log S_i = log S_min[cell] + log(1 + B_crit(L)/B_i) + (run offset + ε_i)/slope_i + η_i.

    Loss noise becomes step noise through the curve's local slope: a run whose loss sits δ above its trend reaches
    a level δ/slope later in log steps, so the same offset moves flat (late) crossings most."""
    p = {k: numpyro.sample(k, d) for k, d in priors.items() if k != "log_S_min"}
    with numpyro.plate("cells", level_of_cell.shape[0]):  # one S_min per cell, each under the declared prior
        log_S_min = numpyro.sample("log_S_min", priors["log_S_min"])
    with numpyro.plate("runs", n_runs):
        z_run = numpyro.sample("z_run", dist.Normal(0.0, 1.0))
    log_B_crit = p["log_B_ref"] - (jnp.log(level_of_cell) - log_L_ref) / p["alpha_B"]
    mean = log_S_min[cell] + jnp.logaddexp(0.0, log_B_crit[cell] - log_B) + p["tau"] * z_run[run] * inv_slope
    scale = jnp.sqrt((p["sigma"] * inv_slope) ** 2 + p["sigma_S"] ** 2)
    with numpyro.plate("points", cell.shape[0]):
        numpyro.sample("log_S", dist.Normal(mean, scale), obs=log_S)


def fit_critical_batch(
    data: pd.DataFrame,
    *,
    levels=None,
    n_levels: int = 6,
    min_runs: int = 3,
    sampler: NUTS | Mapping[str, Any] | None = None,
    rng_key: int | jax.Array = 0,
    priors: Mapping[str, str] | None = None,
    strict: bool = False,
    **sampler_options: Any,
) -> xr.DataTree:
    """Fit Kaplan's batch-size hyperbolae jointly over all loss levels with one critical batch B_crit(L).

    Model, for run r at batch B_r (tokens) reaching loss level L_c in S steps::

        log S = log S_min[c] + log(1 + B_crit(L_c)/B_r) + (τ·z_r + ε)/slope + η,  z_r ~ Normal(0, 1)
        ε ~ Normal(0, σ) (loss noise), η ~ Normal(0, σ_S) (interpolation and misfit), slope = −d log L/d log S
        B_crit(L) = B_ref·(L/L_ref)^(−1/α_B)  ⇔  B_crit(L) = B*/L^(1/α_B),  B* = B_ref·L_ref^(1/α_B)
        E_min[c] = B_crit(L_c)·S_min[c]

    Noise lives in the loss, where it is made: σ (per point) and τ (per run, so successive levels of one run are
    correlated) are in log loss and reach log S through the curve's local slope. So (S/S_min − 1)(E/E_min − 1) = 1 at every level. ``L_ref`` is the geometric mean of the levels (B_ref and
    α_B are then nearly uncorrelated); a cell is one (model size, loss level) pair.

    Parameters
    ----------
    data
        Loss curves (columns ``run``, ``N``, ``B``, ``step``, ``loss``; passed through :func:`steps_to_loss` with
        ``levels``, ``n_levels``, ``min_runs``) or its output table (columns ``run``, ``N``, ``B``, ``cell``,
        ``level``, ``S``, ``slope``).
    sampler, **sampler_options, rng_key
        As in :func:`bayescale.fit`; by default (``init="median"``) chains start at the prior median, with S_min at
        each cell's mean log steps; ``init="map"`` starts them around a multi-start MAP.
    priors
        Overrides of the declared priors (:data:`CRITICAL_BATCH_MODEL`), parameter → prior expression; recorded as
        text in ``attrs["priors"]``.
    strict
        Raise :class:`~bayescale.infer.diagnostics.SamplingError` on sampler trouble instead of warning.

    Returns
    -------
    xarray.DataTree
        ``posterior``: ``B_star``, ``alpha_B``, ``B_ref``, ``sigma``, ``tau``, ``sigma_S`` and, over ``cell``, ``S_min``,
        ``E_min``, ``B_crit``; ``posterior_predictive`` / ``observed_data``: ``log_S`` over ``point``;
        ``constant_data``: the table; ``cells``: N and level of each cell; attrs: provenance.

    References
    ----------
    Kaplan et al. 2020, arXiv:2001.08361, Eq. 5.1-5.4 and Fig. 10, 18. McCandlish et al. 2018, arXiv:1812.06162.
    """
    settings = start_settings(sampler, sampler_options, "this Kaplan fit")
    if isinstance(data, pd.DataFrame) and {"cell", "level", "S"} <= set(data.columns):
        table = data.copy()
        if "slope" not in table:
            raise DataError("the step table lacks column 'slope' (−d log L/d log S at each crossing); make it with "
                            "steps_to_loss")
        for col in ("B", "S", "level", "slope"):
            values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
            if not np.all(np.isfinite(values) & (values > 0)):
                raise DataError(f"column {col!r} of the step table must be finite and > 0")
    else:
        table = steps_to_loss(data, levels, n_levels=n_levels, min_runs=min_runs)
    cells = table.groupby("cell").agg(N=("N", "first"), level=("level", "first"), n=("run", "size"),
                                      log_S=("S", lambda s: float(np.mean(np.log(s)))))
    if (cells["n"] < 2).any():
        raise DataError(f"cells {cells.index[cells['n'] < 2].tolist()} have fewer than 2 runs; S_min and B_crit are "
                        "not identified there")
    if table["B"].nunique() < 3:
        raise DataError(f"the scan has {table['B'].nunique()} batch size(s); at least 3 are needed")
    cell_ids = {c: i for i, c in enumerate(cells.index)}
    run_names, run_idx = np.unique(table["run"].astype(str).to_numpy(), return_inverse=True)
    level_of_cell = cells["level"].to_numpy(float)
    log_L_ref = float(np.mean(np.log(level_of_cell)))
    statistics = {"log_B_centre": float(np.mean(np.log(table["B"])))}
    parsed, dists = CRITICAL_BATCH_MODEL.resolve_priors(priors, statistics)
    args = (jnp.asarray(table["cell"].map(cell_ids).to_numpy()), jnp.asarray(run_idx),
            jnp.asarray(np.log(table["B"].to_numpy(float))), jnp.asarray(1.0 / table["slope"].to_numpy(float)),
            jnp.asarray(level_of_cell))
    log_S = jnp.asarray(np.log(table["S"].to_numpy(float)))
    key, key_record = as_key(rng_key)
    k_fit, k_ppc = jax.random.split(key)
    model = functools.partial(_hyperbola_model, n_runs=len(run_names), log_L_ref=log_L_ref, priors=dists)
    # init="median": chains start at the prior median except S_min, which starts at each cell's mean log steps (the
    # prior of S_min does not read the data, so simulation-based calibration holds; the start does); "map": run_nuts
    start = None
    if settings.init == "median":
        start = median_starts(model, args, {"log_S": log_S}, rng_key=k_fit, num_chains=settings.num_chains)
        start["log_S_min"] = jnp.broadcast_to(jnp.asarray(cells["log_S"].to_numpy(float)), start["log_S_min"].shape)
    mcmc = run_nuts(model, *args, rng_key=k_fit, sampler=settings, init_params=start, log_S=log_S)
    groups = draw_groups(model, args, mcmc, rng_key=(k_ppc, jax.random.fold_in(key, 2)), observed={"log_S": log_S},
                         sampled_names=list(dists), num_prior_samples=500)
    post = groups["posterior"]
    log_B_crit = post["log_B_ref"][..., None] - (np.log(level_of_cell) - log_L_ref) / post["alpha_B"][..., None]
    post |= {
        "B_ref": np.exp(post["log_B_ref"]),
        "B_star": np.exp(post["log_B_ref"] + log_L_ref / post["alpha_B"]),
        "B_crit": np.exp(log_B_crit),
        "S_min": np.exp(post["log_S_min"]),
        "E_min": np.exp(log_B_crit + post["log_S_min"]),
    }
    point = np.arange(len(table))
    columns = ("run", "N", "B", "cell", "level", "S", "E", "slope")
    return CRITICAL_BATCH_MODEL.result(
        groups, mcmc, priors=parsed, checked={k: d for k, d in dists.items() if k != "log_S_min"},
        table=table[list(columns)], statistics=statistics,
        parameters=["B_star", "alpha_B", "B_ref", "sigma", "tau", "sigma_S"],
        dims={k: ["cell"] for k in ("log_S_min", "B_crit", "S_min", "E_min")} | {"z_run": ["run"], "log_S": ["point"]},
        coords={"cell": cells.index.to_numpy(), "run": run_names, "point": point},
        observed=xr.Dataset({"log_S": ("point", np.log(table["S"].to_numpy(float)))}, coords={"point": point}),
        constant=xr.Dataset({c: ("point", table[c].to_numpy()) for c in columns}, coords={"point": point}),
        settings=settings, key_record=key_record, strict=strict, provenance={"L_ref": float(np.exp(log_L_ref))},
        extra_groups={
            "cells": xr.Dataset({"N": ("cell", cells["N"].to_numpy(float)), "level": ("cell", level_of_cell)},
                                coords={"cell": cells.index.to_numpy()}),
            "references": xr.Dataset({"B_star": ("source", [KAPLAN_BATCH["B_star"]]),
                                      "alpha_B": ("source", [KAPLAN_BATCH["alpha_B"]])},
                                     coords={"source": ["kaplan2020"]}),
        },
        vector_names=["log_S_min"],
    )


# ----------------------------------------------------------------------------------------------------------------
# 2. L(N, S_min) with the implicit batch adjustment


def _log_s_term(x, log_S, log_B, alpha_S, log_S_c, log_B_star, alpha_B):
    """log (S_c/S_min)^α_S with S_min = S/(1 + B_crit(e^x)/B); also u = log(B_crit/B)."""
    u = log_B_star - x / alpha_B - log_B
    return alpha_S * (log_S_c - log_S + jnp.logaddexp(0.0, u)), u


def solve_loss(N, S, B, params: dict, *, num_iterations: int = 64):
    """Loss L solving L = (N_c/N)^α_N + (S_c/S_min)^α_S with S_min = S/(1 + B_crit(L)/B), B_crit = B*/L^(1/α_B).

    The right side falls as L rises (a higher loss needs a smaller critical batch, so fewer wasted steps), so
    F(x) = x − log(L_N + T(e^x)) with x = log L is increasing and has one root in [log L_N, log(L_N + T(L_N))].
    ``num_iterations`` bisection steps on that bracket (64 halvings of a bracket of width < 50 leave < 1e-17), then
    one Newton step whose derivative is held fixed: the root's value is unchanged and its gradient is the implicit
    function theorem's −F_θ/F_x, so NUTS can differentiate through it. Inputs broadcast; works under ``jit``/``vmap``.

    Parameters
    ----------
    params
        ``N_c``, ``alpha_N``, ``S_c``, ``alpha_S``, ``B_star``, ``alpha_B`` (as in :data:`KAPLAN_BATCH`).
    """
    log_N, log_S, log_B = (jnp.log(jnp.asarray(v, dtype=float)) for v in (N, S, B))
    log_N_c, log_S_c, log_B_star = (jnp.log(jnp.asarray(params[k], dtype=float)) for k in ("N_c", "S_c", "B_star"))
    alpha_N, alpha_S, alpha_B = (jnp.asarray(params[k], dtype=float) for k in ("alpha_N", "alpha_S", "alpha_B"))
    return _solve_log_loss(log_N, log_S, log_B, log_N_c, alpha_N, log_S_c, alpha_S, log_B_star, alpha_B,
                           num_iterations)


def _solve_log_loss(log_N, log_S, log_B, log_N_c, alpha_N, log_S_c, alpha_S, log_B_star, alpha_B, num_iterations):
    theta = (alpha_S, log_S_c, log_B_star, alpha_B)
    log_L_N = alpha_N * (log_N_c - log_N)

    def F(x, log_L_N, theta):
        log_T, u = _log_s_term(x, log_S, log_B, *theta)
        return x - jnp.logaddexp(log_L_N, log_T), log_T, u

    sg = jax.lax.stop_gradient
    log_L_N0, theta0 = sg(log_L_N), tuple(sg(t) for t in theta)
    lo = jnp.broadcast_to(log_L_N0, jnp.broadcast_shapes(log_L_N0.shape, log_S.shape, log_B.shape))
    hi = jnp.logaddexp(lo, _log_s_term(lo, log_S, log_B, *theta0)[0])

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        up = F(mid, log_L_N0, theta0)[0] > 0
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo, hi = jax.lax.fori_loop(0, num_iterations, bisect, (lo, hi))
    x0 = 0.5 * (lo + hi)
    value, log_T, u = F(x0, log_L_N, theta)
    _, log_T0, u0 = F(x0, log_L_N0, theta0)
    # dF/dx = 1 + (T/(L_N+T))·α_S·sigmoid(u)/α_B > 0
    slope = 1.0 + jnp.exp(log_T0 - jnp.logaddexp(log_L_N0, log_T0)) * theta0[0] * jax.nn.sigmoid(u0) / theta0[3]
    return jnp.exp(x0 - value / slope)


_LOSS_STEP_PARAMS = ("a_N", "alpha_N", "a_S", "alpha_S", "log_B_ref", "alpha_B", "sigma", "tau")


#: The L(N, S_min) model, declared (:mod:`bayescale.infer.declared`), sampled in a centred parameterisation. Priors: a_N =
#: log L_N(N_ref), the model's loss at infinite steps, near the lowest loss seen; a_S, the log of the step term at
#: S_ref; the exponents: Kaplan's 0.077 / 0.76 / 0.21 sit well inside, an order of magnitude either way is in the 90%
#: range; log B_ref around the geometric mean of the batch sizes; sigma, tau: noise of log loss and run offsets (seed
#: noise ~0.01 nats on ~3 nats, LAWS.md). Override with ``fit_loss_steps(..., priors={"alpha_S": "..."})``.
LOSS_STEPS_MODEL = DeclaredModel(
    id="kaplan2020_loss_steps",
    result_kind="loss_steps",
    formula="L = (N_c/N)**alpha_N + (S_c/S_min)**alpha_S, S_min = S/(1 + B_crit(L)/B), B_crit(L) = B_star/L**(1/alpha_B)",
    citation="Kaplan et al. 2020, arXiv:2001.08361, Eq. 5.6 (Table 3) with the adjustment Eq. 5.4",
    priors={
        "a_N": "Normal(log(min_loss), 1.0)",
        "alpha_N": "LogNormal(log(0.1), 1.0)",
        "a_S": "Normal(log(min_loss) - 1.0, 2.0)",
        "alpha_S": "LogNormal(log(0.7), 1.0)",
        "log_B_ref": "Normal(log_B_centre, 3.0)",
        "alpha_B": "LogNormal(log(0.25), 1.0)",
        "sigma": "HalfNormal(0.05)",
        "tau": "HalfNormal(0.05)",
    },
    statistics={"log_B_centre": "mean of log B over the distinct batch sizes"},
)


def _loss_step_model(log_N, log_S, log_B, run, n_runs, center, num_iterations, priors, log_loss=None):
    p = {k: numpyro.sample(k, priors[k]) for k in _LOSS_STEP_PARAMS if k != "tau"}
    mean = 0.0
    if n_runs:
        # centred: a run's 10+ checkpoints pin its offset far tighter than tau, the regime where the non-centred
        # form makes NUTS take ~1000 leapfrog steps per draw (Betancourt & Girolami 2013)
        tau = numpyro.sample("tau", priors["tau"])
        with numpyro.plate("runs", n_runs):
            run_effect = numpyro.sample("run_effect", dist.Normal(0.0, tau))
        mean = run_effect[run]
    # B_crit(L) = B_ref·(L/L_ref)^(−1/α_B) = B*/L^(1/α_B) with log B* = log B_ref + log L_ref/α_B
    log_N_c = center["log_N"] + p["a_N"] / p["alpha_N"]
    log_S_c = center["log_S"] + p["a_S"] / p["alpha_S"]
    log_B_star = p["log_B_ref"] + center["log_L"] / p["alpha_B"]
    loss = _solve_log_loss(log_N, log_S, log_B, log_N_c, p["alpha_N"], log_S_c, p["alpha_S"], log_B_star,
                           p["alpha_B"], num_iterations)
    mean = jnp.log(loss) + mean
    with numpyro.plate("points", log_N.shape[0]):
        numpyro.sample("log_loss", dist.Normal(mean, p["sigma"]), obs=log_loss)


def fit_loss_steps(
    curves: pd.DataFrame,
    *,
    sampler: NUTS | Mapping[str, Any] | None = None,
    rng_key: int | jax.Array = 0,
    num_iterations: int = 64,
    priors: Mapping[str, str] | None = None,
    strict: bool = False,
    **sampler_options: Any,
) -> xr.DataTree:
    """Fit L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S with S_min = S/(1 + B_crit(L)/B), B_crit = B*/L^(1/α_B).

    Every checkpoint (run, N, B, step, loss) is a point: log loss = log L(N, S, B; θ) + run effect + ε, with L from
    :func:`solve_loss`; the run effect ~ Normal(0, τ) is left out when every run has one point (final losses only),
    where it cannot be told from ε. Sampled in a centred parameterisation (``a_N = α_N·log(N_c/N_ref)`` is the log loss limit at
    the geometric-mean model size, ``a_S`` the log step term at the geometric-mean step, B_crit at the geometric-mean
    loss), which removes the amplitude-exponent correlation; ``N_c``, ``S_c``, ``B_star`` are derived. ``priors``
    overrides the declared priors (:data:`LOSS_STEPS_MODEL`), parameter → prior expression; ``sampler``,
    ``**sampler_options``, ``rng_key`` as in :func:`bayescale.fit` (chains start at the prior median by default; ``init="map"`` also works).

    Returns
    -------
    xarray.DataTree
        ``posterior``: ``N_c``, ``alpha_N``, ``S_c``, ``alpha_S``, ``B_star``, ``alpha_B``, ``sigma``, ``tau`` (and
        the sampled ``a_N``, ``a_S``, ``log_B_ref``, ``run_effect``); ``observed_data`` ``log_loss``; ``constant_data``
        the curves; ``references``: Kaplan's constants.

    References
    ----------
    Kaplan et al. 2020, arXiv:2001.08361, Eq. 5.6 (Table 3) with the adjustment Eq. 5.4.
    """
    settings = start_settings(sampler, sampler_options, "this Kaplan fit")
    df = _check_curves(curves)
    if df["N"].nunique() < 2 or df["B"].nunique() < 3:
        raise DataError(f"L(N, S_min) needs >= 2 model sizes and >= 3 batch sizes; the curves have "
                        f"{df['N'].nunique()} and {df['B'].nunique()}")
    if not (isinstance(num_iterations, (int, np.integer)) and num_iterations >= 10):
        raise ValueError(f"num_iterations must be an integer >= 10, got {num_iterations!r}")
    run_names, run_idx = np.unique(df["run"].astype(str).to_numpy(), return_inverse=True)
    logs = {c: np.log(df[c].to_numpy(float)) for c in ("N", "step", "B", "loss")}
    center = {"log_N": float(np.mean(np.unique(logs["N"]))), "log_S": float(np.mean(logs["step"])),
              "log_B": float(np.mean(np.unique(logs["B"]))), "log_L": float(np.mean(logs["loss"])),
              "log_min_loss": float(np.min(logs["loss"]))}
    # a run effect needs runs with several points; with one point per run (final losses) it is the noise itself
    n_runs = len(run_names) if len(run_names) < len(df) else 0
    statistics = {"min_loss": float(df["loss"].min()), "log_B_centre": center["log_B"]}
    parsed, dists = LOSS_STEPS_MODEL.resolve_priors(priors, statistics)
    args = (jnp.asarray(logs["N"]), jnp.asarray(logs["step"]), jnp.asarray(logs["B"]), jnp.asarray(run_idx),
            n_runs, center, int(num_iterations), dists)
    key, key_record = as_key(rng_key)
    mcmc = run_nuts(_loss_step_model, *args, rng_key=key, sampler=settings, log_loss=jnp.asarray(logs["loss"]))
    post = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    post["N_c"] = np.exp(center["log_N"] + post["a_N"] / post["alpha_N"])
    post["S_c"] = np.exp(center["log_S"] + post["a_S"] / post["alpha_S"])
    post["B_star"] = np.exp(post["log_B_ref"] + center["log_L"] / post["alpha_B"])
    point = np.arange(len(df))
    checked = {k: d for k, d in dists.items() if k != "tau" or n_runs}  # no run effects: no tau
    return LOSS_STEPS_MODEL.result(
        # no per-point groups: each needs the implicit solve at every point and draw (docs/batch_size.md)
        {"posterior": post, "sample_stats": sample_stats_of(mcmc)}, mcmc, priors=parsed, checked=checked, table=df,
        statistics=statistics,
        parameters=["N_c", "alpha_N", "S_c", "alpha_S", "B_star", "alpha_B",
                    *(n for n in checked if n in ("sigma", "tau"))],
        dims={"run_effect": ["run"]},
        coords={"run": run_names},
        observed=xr.Dataset({"log_loss": ("point", logs["loss"])}, coords={"point": point}),
        constant=xr.Dataset({c: ("point", df[c].to_numpy()) for c in ("run", "N", "B", "step")},
                            coords={"point": point}),
        settings=settings, key_record=key_record, strict=strict,
        provenance={"center": json.dumps(center), "num_iterations": int(num_iterations)},
        extra_groups={"references": xr.Dataset({k: ("source", [v]) for k, v in KAPLAN_BATCH.items()},
                                               coords={"source": ["kaplan2020"]})},
    )


def _require_kind(result: xr.DataTree, kind: str, what: str, made_by: str) -> None:
    try:
        got = f"a {result_kind(result)!r} result"
    except ResultError as err:
        got = str(err)
    if got != f"a {kind!r} result":
        raise ValueError(f"{what} needs a {made_by} result, got {got}")


def compute_frontier(result: xr.DataTree, compute) -> xr.Dataset:
    """The compute-efficient frontier of an L(N, S_min) fit, per posterior draw.

    Training to loss L with N parameters costs at least C_min = 6·N·E_min = 6·N·B_crit(L)·S_min(N, L), with
    S_min = S_c·(L − (N_c/N)^α_N)^(−1/α_S). Minimising log C_min over log N at fixed L gives
    (N_c/N)^α_N = L/(1 + α_N/α_S) (Kaplan et al. 2020, Sec. 6.1: the optimal model sits where its limit is a fixed
    fraction of the loss), so the frontier is explicit in L; it is interpolated onto ``compute`` (FLOP) per draw.

    Returns
    -------
    xarray.Dataset
        Over (``draw``, ``compute``): ``loss``, ``N_opt``, ``S_min``, ``B_crit``, ``E_min``; NaN outside a draw's
        frontier range. ``compute`` in FLOP (divide by :data:`PF_DAY` for PF-days).
    """
    compute = np.atleast_1d(np.asarray(compute, dtype=float))
    if not np.all(np.isfinite(compute) & (compute > 0)):
        raise ValueError("compute must be positive finite FLOP values")
    _require_kind(result, "loss_steps", "compute_frontier", "fit_loss_steps")
    post = result["posterior"].to_dataset()
    p = {k: post[k].values.reshape(-1)[:, None] for k in ("N_c", "alpha_N", "S_c", "alpha_S", "B_star", "alpha_B")}
    # loss grid per draw, relative to the frontier's scale: L from 1.001x to 50x of a reference loss of 1 nat
    loss = np.geomspace(0.3, 30.0, 2000)[None, :]
    frac = p["alpha_N"] / p["alpha_S"]
    n_opt = p["N_c"] * (loss / (1.0 + frac)) ** (-1.0 / p["alpha_N"])
    s_min = p["S_c"] * (loss * frac / (1.0 + frac)) ** (-1.0 / p["alpha_S"])
    b_crit = p["B_star"] * loss ** (-1.0 / p["alpha_B"])
    log_c = np.log(6.0 * n_opt * b_crit * s_min)  # decreasing in loss
    out = {k: np.empty((log_c.shape[0], compute.size)) for k in ("loss", "N_opt", "S_min", "B_crit")}
    for i in range(log_c.shape[0]):
        xs = log_c[i, ::-1]
        for name, v in (("loss", loss[0]), ("N_opt", n_opt[i]), ("S_min", s_min[i]), ("B_crit", b_crit[i])):
            out[name][i] = np.exp(np.interp(np.log(compute), xs, np.log(v[::-1]), left=np.nan, right=np.nan))
    ds = xr.Dataset({k: (("draw", "compute"), v) for k, v in out.items()}, coords={"compute": compute})
    ds["E_min"] = ds["B_crit"] * ds["S_min"]
    return ds


# ----------------------------------------------------------------------------------------------------------------
# Figures


def _bands(draws: np.ndarray) -> np.ndarray:
    return np.nanquantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def plot_hyperbolae(result: xr.DataTree, *, path: str | os.PathLike | None = None, title: str | None = None):
    """Kaplan's Fig. 18: tokens E vs steps S at each loss level (one colour per level), the runs' points and the
    fitted hyperbola E = E_min·S/(S − S_min) with 50% and 90% bands; one panel per model size."""
    from bayescale.results.plots import pyplot
    plt = pyplot()

    _require_kind(result, "critical_batch", "plot_hyperbolae", "fit_critical_batch")
    pts, cells = result["constant_data"].to_dataset(), result["cells"].to_dataset()
    post = result["posterior"].to_dataset()
    s_min = post["S_min"].values.reshape(-1, cells.sizes["cell"])[:_MAX_DRAWS]
    e_min = post["E_min"].values.reshape(-1, cells.sizes["cell"])[:_MAX_DRAWS]
    models = np.unique(cells["N"].values)
    fig, axes = plt.subplots(1, models.size, figsize=(5.0 * models.size, 4.2), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, N in zip(axes[0], models):
        in_model = np.flatnonzero(cells["N"].values == N)
        for j, c in enumerate(in_model):
            color = cmap(j / max(len(in_model) - 1, 1))
            sel = pts["cell"].values == cells["cell"].values[c]
            S, E = pts["S"].values[sel], pts["E"].values[sel]
            s_grid = np.geomspace(np.median(s_min[:, c]) * 1.02, S.max() * 3, 120)
            with np.errstate(divide="ignore", invalid="ignore"):
                e = np.where(s_grid > s_min[:, c:c + 1], e_min[:, c:c + 1] * s_grid / (s_grid - s_min[:, c:c + 1]), np.nan)
            b = _bands(e)
            ax.fill_between(s_grid, b[0], b[4], color=color, alpha=0.15, lw=0)
            ax.fill_between(s_grid, b[1], b[3], color=color, alpha=0.3, lw=0)
            ax.plot(s_grid, b[2], color=color, lw=1, label=f"L = {cells['level'].values[c]:.3g}")
            ax.plot(S, E, "o", color=color, ms=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("steps S")
        ax.set_ylabel("tokens processed E")
        ax.set_title(f"N = {N:.3g}" + (f" — {title}" if title else ""), fontsize=9)
        ax.legend(fontsize=7, title="median, 50%/90% bands", title_fontsize=7)
    return _finish(fig, path)


def plot_critical_batch(result: xr.DataTree, *, path: str | os.PathLike | None = None, published: bool = True,
                        title: str | None = None):
    """Kaplan's Fig. 10: B_crit(L) vs loss with 50% and 90% bands over the fitted loss range (dotted beyond it),
    the per-cell medians, and Kaplan's published B*/L^(1/α_B) for comparison."""
    from bayescale.results.plots import pyplot
    plt = pyplot()

    _require_kind(result, "critical_batch", "plot_critical_batch", "fit_critical_batch")
    post, cells = result["posterior"].to_dataset(), result["cells"].to_dataset()
    b_star, alpha_b = (post[k].values.reshape(-1)[:_MAX_DRAWS, None] for k in ("B_star", "alpha_B"))
    levels = cells["level"].values
    loss = np.geomspace(levels.min() / 1.15, levels.max() * 1.15, 100)
    b = _bands(b_star * loss[None] ** (-1.0 / alpha_b))
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.fill_between(loss, b[0], b[4], color="C0", alpha=0.15, lw=0, label="90% band")
    ax.fill_between(loss, b[1], b[3], color="C0", alpha=0.3, lw=0, label="50% band")
    ax.plot(loss, b[2], color="C0", lw=1.5, label="posterior median")
    med_star, med_alpha = float(np.median(post["B_star"])), float(np.median(post["alpha_B"]))
    ax.plot([], [], " ", label=f"B* = {med_star:.3g}, α_B = {med_alpha:.3g}")
    ax.plot(levels, np.median(post["B_crit"].values.reshape(-1, levels.size), axis=0), "o", color="C0", ms=3)
    if published:
        ax.plot(loss, critical_batch(loss, KAPLAN_BATCH["B_star"], KAPLAN_BATCH["alpha_B"]), "k--", lw=1,
                label="Kaplan 2020: 2.1e8 / L^(1/0.21)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("loss L (nats/token)")
    ax.set_ylabel("critical batch B_crit (tokens)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _finish(fig, path)


def plot_frontier(frontier: xr.Dataset, *, path: str | os.PathLike | None = None, title: str | None = None):
    """The compute-efficient frontier: loss and optimal model size vs C_min (PF-days), 50% and 90% bands."""
    from bayescale.results.plots import pyplot
    plt = pyplot()

    c = frontier["compute"].values / PF_DAY
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name, label in ((axes[0], "loss", "loss L"), (axes[1], "N_opt", "optimal N (non-embedding)")):
        b = _bands(frontier[name].values)
        ax.fill_between(c, b[0], b[4], color="C1", alpha=0.15, lw=0)
        ax.fill_between(c, b[1], b[3], color="C1", alpha=0.3, lw=0)
        ax.plot(c, b[2], color="C1", label="median, 50%/90% bands")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("C_min (PF-days)")
        ax.set_ylabel(label)
    axes[1].plot(c, 1.3e9 * c ** 0.73, "k--", lw=1, label="Kaplan 2020: 1.3e9·C^0.73")
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _finish(fig, path)
