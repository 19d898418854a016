"""Compute planning under the posterior of a fitted law of (N, D), with C = k·N·D.

- :func:`compute_optimal`: N*, D*, D/N and L* per draw; :func:`near_optimal_region`: allocations within ε of it.
- :func:`loss_at`: a proposed run's loss and its regret, in loss and in compute-equivalent FLOP.
- :func:`prob_below`, :func:`budget_for_target`: P(loss < target) and the budget reaching a target with probability p.
- :func:`plan`: all of the above for given budgets, as one DataTree; :func:`format_plan` prints it.
- :func:`compare_fits`: P(B beats A) and B's compute multiplier over A, with scale, extrapolation and
  snapshot checks; :func:`comparison_summary`, :func:`format_comparison` read it (infinite multipliers kept).

Everything reads the posterior draws of a result and never refits.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayescale.infer.diagnostics import convergence_gate
from bayescale.errors import ArgumentError
from bayescale.results.extrapolation import (
    EXTRAPOLATION_THRESHOLD,
    ExtrapolationWarning,
    extrapolation,
    observed_range,
    warn_extrapolation,
)
from bayescale.laws.catalogue import Law, law_program, require_loss_target
from bayescale.results.io import law_of

__all__ = [
    "compute_optimal",
    "plan",
    "plan_summary",
    "format_plan",
    "near_optimal_region",
    "loss_at",
    "prob_below",
    "budget_for_target",
    "compare_fits",
    "comparison_summary",
    "format_comparison",
]

# Search window for log N around the balanced split N = D = sqrt(C/k): ±15 nats (6.5 decades) each side covers
# every published law (Kaplan's a = 0.73 puts N* 3-4 decades above the balanced split at 1e24 FLOP).
_HALF_WIDTH = 15.0
_GRID = 1536
_NEWTON_STEPS = 4


def _log_loss_on_budget(law: Law, params, log_c_over_k):
    def f(u):  # u = log N, D = C/(k N)
        return law.log_fn(params, {"N": u, "D": log_c_over_k - u})

    return f


def optimum_per_draw(law: Law, p, log_c, grid_size: int = _GRID):
    """min over log N of log L(N, C/(kN)) for one draw and one log(C/k): (log N*, log L*, interior optimum?)."""
    f = _log_loss_on_budget(law, p, log_c)
    center = 0.5 * log_c
    lo, hi = jnp.maximum(center - _HALF_WIDTH, 0.0), jnp.minimum(center + _HALF_WIDTH, log_c)
    grid = jnp.linspace(lo, hi, grid_size)
    values = jax.vmap(f)(grid)
    i = jnp.argmin(values)
    u = grid[i]
    df, d2f = jax.grad(f), jax.grad(jax.grad(f))
    h = grid[1] - grid[0]
    for _ in range(_NEWTON_STEPS):
        step = df(u) / d2f(u)
        u = jnp.clip(u - jnp.clip(step, -h, h), lo, hi)  # stay within the bracketing grid cell's neighbourhood
    value = f(u)
    u, value = jnp.where(value <= values[i], u, grid[i]), jnp.minimum(value, values[i])  # never worse than the grid
    interior = (i > 0) & (i < grid_size - 1)
    return u, value, interior


@convergence_gate("compute_optimal")
def compute_optimal(
    result: xr.DataTree,
    compute: float | np.ndarray,
    *,
    flops_per_param_token: float = 6.0,
    law: Law | None = None,
    allow_unconverged: bool = False,
) -> xr.Dataset:
    """Posterior of the compute-optimal allocation for budgets ``compute`` (FLOP), with C = k·N·D.

    For each posterior draw, minimise L(N, C/(kN)) over N: a grid over log N, then Newton steps on the exact
    derivative (JAX autodiff). For the Chinchilla form this reproduces the closed form
    N* = G (C/k)^(β/(α+β)), G = (αA/(βB))^(1/(α+β)) (Hoffmann et al. 2022, Eq. 4) to ~1e-6 relative.

    Parameters
    ----------
    result
        A fit of a law with inputs ``N`` and ``D``.
    compute
        Budget(s) in FLOP.
    flops_per_param_token
        k in C = k·N·D (6 for a dense transformer, forward + backward; Kaplan et al. 2020, Sec. 2.1).

    Returns
    -------
    xarray.Dataset
        ``N_opt``, ``D_opt``, ``tokens_per_param`` (D*/N*) and ``loss_opt`` over ``(chain, draw, compute)``; for a
        law with an [optimum] (``steplaw2025``), also each tuning input there, e.g. ``lr_opt``, ``batch_size_opt``.
        The optimum is then over (N, D) with the tuning inputs at their optima.
    """
    flops_per_param_token = _flops_per_param_token(flops_per_param_token)
    full = law_of(result, law, "plan")
    law = planning_law(full, "compute_optimal")
    budgets = _budgets(compute)
    post = result["posterior"].to_dataset()
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    params = {n: jnp.asarray(post[n].values.reshape(-1)) for n in law.parameter_names}

    solve = law_program(law, "compute_optimal", lambda: _optimum_solver(law))
    log_c = jnp.log(budgets / flops_per_param_token)
    u, log_l = (np.asarray(a) for a in solve(params, log_c))  # (draws, budgets)
    n_bad = int(np.isnan(u).sum())
    if n_bad:
        warnings.warn(
            f"{n_bad} of {u.size} draws have no interior optimum within ±6.5 decades of N = sqrt(C/{flops_per_param_token:g}); "
            "they are NaN (the law keeps improving toward one edge)",
            stacklevel=3,  # the caller of the gated compute_optimal
        )
    n_opt = np.exp(u)
    d_opt = budgets / (flops_per_param_token * n_opt)
    dims = ("chain", "draw", "compute")
    shape = (chains, draws, budgets.size)
    tuned = {}
    if full.optimum:  # the tuning inputs at the optimum allocation, per draw and budget
        at = law_program(full, "optimal_inputs", lambda: jax.jit(
            jax.vmap(jax.vmap(full.optimal_inputs, in_axes=(None, 0)), in_axes=(0, 0))))
        log_values = at(params, {"N": jnp.asarray(u), "D": jnp.log(jnp.asarray(d_opt))})
        tuned = {f"{n}_opt": (dims, np.exp(np.asarray(v)).reshape(shape)) for n, v in log_values.items()}
    return xr.Dataset(
        {
            "N_opt": (dims, n_opt.reshape(shape)),
            "D_opt": (dims, d_opt.reshape(shape)),
            "tokens_per_param": (dims, (d_opt / n_opt).reshape(shape)),
            "loss_opt": (dims, np.exp(log_l).reshape(shape)),
            **tuned,
        },
        coords={"chain": post["chain"].values, "draw": post["draw"].values, "compute": budgets},
        attrs={"flops_per_param_token": flops_per_param_token, "law_id": law.id},
    )


# ---------------------------------------------------------------------------------------------------------
# Inverse of the compute-optimal frontier: the budget at which L*(C) reaches a given loss, per draw.

# Search window for log(C/k) in the inverse: C/k from 1e6 (N = D = 1e3) to 1e40 FLOP/k covers every budget a
# language model has been or will soon be trained with, with decades to spare at both ends.
_LOG_CK_RANGE = (np.log(1e6), np.log(1e40))
_BISECTION_STEPS = 48  # halves a 78-nat bracket to 3e-13 nats
_INVERSE_GRID = 512  # the grid only brackets the optimum; Newton steps then converge (see optimum_per_draw)


def _optimum_solver(law: Law):
    """jit(vmap over draws, vmap over budgets) of (params, log(C/k)) → (log N*, log L*), NaN without an interior
    optimum."""

    def one_draw(p, log_c):
        u, log_l, interior = optimum_per_draw(law, p, log_c)
        u = jnp.where(interior, u, jnp.nan)
        return u, jnp.where(interior, log_l, jnp.nan)

    return jax.jit(jax.vmap(jax.vmap(one_draw, in_axes=(None, 0)), in_axes=(0, None)))


def _inverse_solver(law: Law):
    """jit(vmap) of (params per draw, log target per draw) → log(C/k) with min_N L(N, C/(kN)) = target.

    L*(C) decreases in C, so bisection on log(C/k) converges. Targets at or below the law's floor (e.g. E) give +inf;
    targets above L* at the smallest budget of the window give its lower end (a bound, not an estimate).
    """

    def one(p, log_target):
        lo, hi = _LOG_CK_RANGE

        def best(v):
            return optimum_per_draw(law, p, v, _INVERSE_GRID)[1]

        reachable = best(hi) < log_target

        def body(_, bracket):
            a, b = bracket
            m = 0.5 * (a + b)
            above = best(m) > log_target  # not reached yet at budget m: the answer is larger
            return jnp.where(above, m, a), jnp.where(above, b, m)

        a, b = jax.lax.fori_loop(0, _BISECTION_STEPS, body, (jnp.asarray(lo), jnp.asarray(hi)))
        return jnp.where(reachable, 0.5 * (a + b), jnp.inf)

    return jax.jit(jax.vmap(one))


def flat_params(result: xr.DataTree, law: Law) -> dict[str, np.ndarray]:
    post = result["posterior"].to_dataset()
    return {n: post[n].values.reshape(-1) for n in law.parameter_names}


def _compute_for_loss(law: Law, params: dict[str, np.ndarray], loss: np.ndarray, k: float) -> np.ndarray:
    """Per draw, the budget C (FLOP) at which the draw's compute-optimal loss equals ``loss`` (same length)."""
    solve = law_program(law, "inverse_solver", lambda: _inverse_solver(law))
    v = np.asarray(solve({n: jnp.asarray(a) for n, a in params.items()}, jnp.log(jnp.asarray(loss, dtype=float))))
    return k * np.exp(v)


def planning_law(law: Law, what: str) -> Law:
    """The law of (N, D) that planning works with: ``law`` itself, or, for a law with tuning inputs that its file
    gives an [optimum] for (learning rate, batch size), the law at those optima (:meth:`Law.at_optimum`).
    Planning minimises a positive loss in log space: a law of another target kind is refused."""
    require_loss_target(law, what)
    if law.optimum:
        # one law at its optimum per law text, so that its solvers (law_program) are traced once per process
        law = law_program(law, "at_optimum", law.at_optimum)
    if set(law.input_names) != {"N", "D"}:
        raise ValueError(f"{what} needs a law of exactly (N, D), or one whose other inputs have an [optimum] in the "
                         f"law file; law {law.id!r} has {list(law.input_names)}")
    return law


def _flops_per_param_token(k) -> float:
    """k in C = k·N·D: a positive finite number (6 for a dense transformer)."""
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)) or not (np.isfinite(k) and k > 0):
        raise ArgumentError(f"flops_per_param_token must be a positive finite number (6 for a dense transformer), "
                            f"got {k!r}")
    return float(k)


def _budgets(compute) -> np.ndarray:
    budgets = np.atleast_1d(np.asarray(compute, dtype=float))
    if budgets.ndim != 1 or np.any(~np.isfinite(budgets)) or np.any(budgets <= 0):
        raise ValueError(f"compute must be positive and finite FLOP, got {budgets}")
    return budgets


def _sample_coords(result: xr.DataTree) -> dict[str, np.ndarray]:
    post = result["posterior"]
    return {"chain": post["chain"].values, "draw": post["draw"].values}


def _shape(result: xr.DataTree) -> tuple[int, int]:
    post = result["posterior"]
    return post.sizes["chain"], post.sizes["draw"]


@convergence_gate("loss_at")
def loss_at(
    result: xr.DataTree,
    N: float | np.ndarray,
    D: float | np.ndarray,
    *,
    flops_per_param_token: float = 6.0,
    rng_key: int | jax.Array = 0,
    law: Law | None = None,
    extrapolation_threshold: float = EXTRAPOLATION_THRESHOLD,
    allow_unconverged: bool = False,
) -> xr.Dataset:
    """Loss of proposed runs (N, D) and their regret against the compute-optimal run of the same budget C = k·N·D.

    Per posterior draw θ: ``loss`` = L(N, D; θ) (the law, i.e. the median loss of such a run), ``loss_predictive``
    (one realised run: the law plus the fitted observation noise), ``loss_opt`` = min over N' of L(N', C/(kN'); θ),
    ``regret`` = loss − loss_opt (≥ 0), ``compute_equivalent`` C' with L*(C'; θ) = L(N, D; θ): the budget that,
    spent optimally, reaches the same loss, ``regret_flops`` = C − C' (the compute the allocation wastes) and
    ``compute_efficiency`` = C'/C.

    Returns
    -------
    xarray.Dataset
        Variables over ``(chain, draw, proposal)``; coordinates ``N``, ``D``, ``compute`` and
        ``extrapolation_N``, ``extrapolation_D`` (decades beyond the fitted range) along ``proposal``.
    """
    from bayescale.results.predict import predict

    law = planning_law(law_of(result, law, "plan"), "loss_at")
    n, d = (a.reshape(-1) for a in np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float)))
    if np.any(~np.isfinite(n)) or np.any(n <= 0) or np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise ValueError(f"N and D must be positive and finite, got N={n}, D={d}")
    budgets = flops_per_param_token * n * d
    with warnings.catch_warnings():  # warned once below, with the plan's wording
        warnings.simplefilter("ignore", ExtrapolationWarning)
        law_pred = predict(result, law=law, N=n, D=d)["loss"].values
        noisy = predict(result, law=law, kind="predictive", rng_key=rng_key, N=n, D=d)["loss"].values
    decades = extrapolation(result, N=n, D=d)
    warn_extrapolation(decades, extrapolation_threshold, what="proposed run", stacklevel=4)  # + the gate's frame
    chains, draws = _shape(result)
    opt = compute_optimal(result, budgets, flops_per_param_token=flops_per_param_token, law=law)
    loss_opt = opt["loss_opt"].values  # (chain, draw, proposal)
    params = flat_params(result, law)
    c_equiv = np.stack(
        [_compute_for_loss(law, params, law_pred[..., j].reshape(-1), flops_per_param_token) for j in range(n.size)],
        axis=-1,
    ).reshape(chains, draws, n.size)
    c_equiv = np.minimum(c_equiv, budgets)  # bisection tolerance can put C' a hair above C for an optimal run
    dims = ("chain", "draw", "proposal")
    return xr.Dataset(
        {
            "loss": (dims, law_pred),
            "loss_predictive": (dims, noisy),
            "loss_opt": (dims, loss_opt),
            "regret": (dims, law_pred - loss_opt),
            "compute_equivalent": (dims, c_equiv),
            "regret_flops": (dims, budgets - c_equiv),
            "compute_efficiency": (dims, c_equiv / budgets),
        },
        coords={
            **_sample_coords(result),
            "N": ("proposal", n),
            "D": ("proposal", d),
            "compute": ("proposal", budgets),
            **{f"extrapolation_{k}": ("proposal", v) for k, v in decades.items()},
        },
        attrs={"flops_per_param_token": flops_per_param_token, "law_id": law.id,
               "extrapolation_threshold": extrapolation_threshold},
    )


@convergence_gate("prob_below")
def prob_below(
    result: xr.DataTree, target: float, *, kind: str = "law", law: Law | None = None, rng_key: int | jax.Array = 0,
    allow_unconverged: bool = False, **inputs: Any,
) -> xr.DataArray:
    """P(loss < ``target``) at ``inputs`` under the posterior, per prediction point.

    ``kind="law"``: the probability that the law's value (the median loss of a run there) is below target;
    ``kind="predictive"``: that one realised run is (adds the fitted observation noise).
    """
    from bayescale.results.predict import predict

    if not np.isfinite(target) or target <= 0:
        raise ValueError(f"target loss must be positive and finite, got {target}")
    loss = predict(result, kind=kind, law=law, rng_key=rng_key, **inputs)["loss"]
    p = (loss < target).mean(("chain", "draw"))
    p.name = "prob_below"
    p.attrs.update(target=target, kind=kind)
    return p


@convergence_gate("budget_for_target")
def budget_for_target(
    result: xr.DataTree,
    target: float,
    *,
    prob: float = 0.9,
    flops_per_param_token: float = 6.0,
    law: Law | None = None,
    allow_unconverged: bool = False,
) -> xr.Dataset:
    """The smallest budget C whose compute-optimal run reaches loss ``target`` with probability ``prob``.

    Per draw, ``compute_needed`` solves L*(C; θ) = target (+inf where the target is at or below the draw's floor,
    e.g. E ≤ target). Since L* decreases in C, P(L*(C) ≤ target) = P(compute_needed ≤ C), so the answer is the
    ``prob`` quantile of ``compute_needed`` (``budget``; +inf if more than 1 − prob of the draws never reach it).
    The probability is over the law's value (the median run), not one noisy run.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    if not np.isfinite(target) or target <= 0:
        raise ValueError(f"target loss must be positive and finite, got {target}")
    law = planning_law(law_of(result, law, "plan"), "budget_for_target")
    params = flat_params(result, law)
    size = next(iter(params.values())).size
    needed = _compute_for_loss(law, params, np.full(size, float(target)), flops_per_param_token)
    budget = float(np.quantile(needed, prob, method="inverted_cdf")) if np.mean(np.isinf(needed)) <= 1 - prob else np.inf
    return xr.Dataset(
        {"compute_needed": (("chain", "draw"), needed.reshape(_shape(result))), "budget": ((), budget)},
        coords=_sample_coords(result),
        attrs={"target": float(target), "prob": prob, "flops_per_param_token": flops_per_param_token,
               "prob_unreachable": float(np.mean(np.isinf(needed)))},
    )


@convergence_gate("near_optimal_region")
def near_optimal_region(
    result: xr.DataTree,
    compute: float,
    *,
    epsilon: float = 0.01,
    flops_per_param_token: float = 6.0,
    half_width_decades: float = 1.5,
    num_points: int = 121,
    law: Law | None = None,
    allow_unconverged: bool = False,
) -> xr.Dataset:
    """Allocations on the budget C = k·N·D whose loss is within ``epsilon`` of the optimum, with probability.

    On a grid of N around the posterior median N* (± ``half_width_decades``), with D = C/(kN): ``loss`` and
    ``regret`` = L(N, D) − L*(C) per draw, and ``prob_near`` = P(regret ≤ ε). ``epsilon`` defaults to 0.01 nats, the
    lower end of seed-to-seed loss variation (0.01-0.02 nats, LAWS.md "practice"): allocations within it cannot be
    told apart from the optimum by one run. The attrs ``N_range_<p>`` give the N range where ``prob_near`` ≥ p
    (p = 0.5, 0.9).
    """
    law = planning_law(law_of(result, law, "plan"), "near_optimal_region")
    if not np.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a positive loss difference (nats), got {epsilon}")
    budget = float(_budgets(compute)[0]) if np.ndim(compute) == 0 else None
    if budget is None:
        raise ValueError(f"near_optimal_region takes one budget, got {compute}")
    opt = compute_optimal(result, budget, flops_per_param_token=flops_per_param_token, law=law)
    center = float(np.nanmedian(opt["N_opt"].values))
    grid_n = center * np.logspace(-half_width_decades, half_width_decades, num_points)
    params = flat_params(result, law)
    from bayescale.results.predict import draws_log_law

    grid_d = budget / (flops_per_param_token * grid_n)
    loss = np.exp(draws_log_law(law, params, {"N": grid_n, "D": grid_d}))
    chains, draws = _shape(result)
    loss = loss.reshape(chains, draws, num_points)
    regret = loss - opt["loss_opt"].values[..., :1]
    prob_near = np.mean(regret <= epsilon, axis=(0, 1))
    attrs = {"compute": budget, "epsilon": epsilon, "flops_per_param_token": flops_per_param_token}
    for p in (0.5, 0.9):
        inside = grid_n[prob_near >= p]
        attrs[f"N_range_{p:g}"] = [float(inside.min()), float(inside.max())] if inside.size else [np.nan, np.nan]
    return xr.Dataset(
        {"loss": (("chain", "draw", "N"), loss), "regret": (("chain", "draw", "N"), regret),
         "prob_near": ("N", prob_near)},
        coords={**_sample_coords(result), "N": grid_n, "D": ("N", grid_d)},
        attrs=attrs,
    )


@convergence_gate("plan")
def plan(
    result: xr.DataTree,
    compute: float | np.ndarray,
    *,
    epsilon: float = 0.01,
    target: float | None = None,
    at: Mapping[str, float] | None = None,
    prob: float = 0.9,
    flops_per_param_token: float = 6.0,
    rng_key: int | jax.Array = 0,
    law: Law | None = None,
    extrapolation_threshold: float = EXTRAPOLATION_THRESHOLD,
    allow_unconverged: bool = False,
) -> xr.DataTree:
    """A compute plan under the posterior: optimum, near-optimal region, a proposed run, a target loss.

    Parameters
    ----------
    result
        A fit of a law of (N, D).
    compute
        Budget(s) C in FLOP, with C = k·N·D (k = ``flops_per_param_token``).
    epsilon
        Loss tolerance (nats) of the near-optimal region (:func:`near_optimal_region`).
    target
        A target loss: adds P(L*(C) < target) per budget and the smallest budget reaching it with probability
        ``prob`` (:func:`budget_for_target`), and P(loss < target) of the proposed run.
    at
        A proposed run ``{"N": ..., "D": ...}``: its loss, 90% predictive interval and regret (:func:`loss_at`).

    Returns
    -------
    xarray.DataTree
        Children ``optimum`` (:func:`compute_optimal`, with ``extrapolation_N``/``extrapolation_D`` of the median
        allocation along ``compute``), ``near_optimal`` (over ``compute`` and ``offset`` = log10(N / median N*)),
        and, when asked, ``proposal`` and ``target``. :func:`format_plan` prints it.
    """
    full = law_of(result, law, "plan")  # with its tuning inputs, if any: compute_optimal reports their optima
    law = planning_law(full, "plan")
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    budgets = _budgets(compute)
    opt = compute_optimal(result, budgets, flops_per_param_token=flops_per_param_token, law=full)
    med_n = opt["N_opt"].median(("chain", "draw")).values
    med_d = opt["D_opt"].median(("chain", "draw")).values
    decades = extrapolation(result, N=med_n, D=med_d)
    warn_extrapolation(decades, extrapolation_threshold, what="compute-optimal allocation", stacklevel=4)
    opt = opt.assign_coords({f"extrapolation_{k}": ("compute", v) for k, v in decades.items()})

    regions = []
    for c in budgets:
        reg = near_optimal_region(result, float(c), epsilon=epsilon, flops_per_param_token=flops_per_param_token, law=law)
        center = float(np.nanmedian(opt["N_opt"].sel(compute=c).values))
        levels = [0.5, 0.9]
        bounds = np.array([reg.attrs[f"N_range_{p:g}"] for p in levels])
        reg = reg.rename({"N": "offset"}).assign_coords(
            offset=np.round(np.log10(reg["N"].values / center), 6), N=("offset", reg["N"].values)
        )
        reg = reg.drop_attrs().assign(
            N_low=("level", bounds[:, 0]), N_high=("level", bounds[:, 1])
        ).assign_coords(level=levels)
        regions.append(reg)
    near = xr.concat(regions, dim=xr.DataArray(budgets, dims="compute", name="compute"), coords="different",
                     compat="equals", join="override")
    near.attrs.update(epsilon=epsilon)
    tree = {"optimum": opt, "near_optimal": near}

    if at is not None:
        unknown = sorted(set(at) - {"N", "D"})
        if unknown or set(at) != {"N", "D"}:
            raise ValueError(f"at: a proposed run needs exactly N and D, got {sorted(at)}")
        tree["proposal"] = loss_at(
            result, at["N"], at["D"], flops_per_param_token=flops_per_param_token, rng_key=rng_key, law=law,
            extrapolation_threshold=extrapolation_threshold,
        )
    if target is not None:
        bt = budget_for_target(result, target, prob=prob, flops_per_param_token=flops_per_param_token, law=law)
        tgt = bt.assign(prob_optimum_below=("compute", (opt["loss_opt"] < target).mean(("chain", "draw")).values))
        tgt = tgt.assign_coords(compute=budgets)
        if "proposal" in tree:
            prop = tree["proposal"]
            tgt["prob_proposal_below"] = ("proposal", (prop["loss"] < target).mean(("chain", "draw")).values)
            tgt["prob_proposal_below_predictive"] = (
                "proposal", (prop["loss_predictive"] < target).mean(("chain", "draw")).values)
        tree["target"] = tgt
    out = xr.DataTree.from_dict({f"/{k}": v for k, v in tree.items()})
    out.attrs.update(
        law_id=law.id, prob=prob, epsilon=epsilon, flops_per_param_token=flops_per_param_token,
        extrapolation_threshold=extrapolation_threshold, **({"target": float(target)} if target is not None else {}),
    )
    return out


def _interval(values: np.ndarray, prob: float) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float).reshape(-1)
    v = v[~np.isnan(v)]
    lo, med, hi = np.quantile(v, [(1 - prob) / 2, 0.5, (1 + prob) / 2])
    return float(med), float(lo), float(hi)


_OPTIMUM_VARS = ("N_opt", "D_opt", "tokens_per_param", "loss_opt")


def plan_summary(plan_tree: xr.DataTree, prob: float | None = None) -> "pd.DataFrame":
    """The numbers of a :func:`plan` as one table: quantity, budget or run, median and central ``prob`` interval."""
    import pandas as pd

    prob = float(plan_tree.attrs["prob"]) if prob is None else prob
    rows = []
    opt = plan_tree["optimum"].to_dataset()
    for c in opt["compute"].values:
        o = opt.sel(compute=c)
        tuned = [(v, f"optimal {v[:-4]} at (N*, D*)") for v in o.data_vars if v not in _OPTIMUM_VARS]
        for var, label in [("N_opt", "N*"), ("D_opt", "D*"), ("tokens_per_param", "D*/N*"), ("loss_opt", "L*")] + tuned:
            rows.append(dict(quantity=f"{label} ({var})", at=f"C={c:.3g}", **dict(zip(("median", "low", "high"), _interval(o[var].values, prob)))))
        for inp in ("N", "D"):
            rows.append(dict(quantity=f"extrapolation {inp} (decades)", at=f"C={c:.3g}", median=float(o[f"extrapolation_{inp}"])))
        near = plan_tree["near_optimal"].to_dataset().sel(compute=c)
        for lvl in near["level"].values:
            lo_n, hi_n = float(near["N_low"].sel(level=lvl)), float(near["N_high"].sel(level=lvl))
            k = float(plan_tree.attrs["flops_per_param_token"])
            rows.append(dict(quantity=f"near-optimal N (P≥{lvl:g} within ε={plan_tree.attrs['epsilon']:g})",
                             at=f"C={c:.3g}", low=lo_n, high=hi_n))
            rows.append(dict(quantity=f"near-optimal D (P≥{lvl:g} within ε={plan_tree.attrs['epsilon']:g})",
                             at=f"C={c:.3g}", low=c / (k * hi_n) if hi_n else np.nan, high=c / (k * lo_n) if lo_n else np.nan))
    if "proposal" in plan_tree.children:
        prop = plan_tree["proposal"].to_dataset()
        for j in range(prop.sizes["proposal"]):
            p = prop.isel(proposal=j)
            where = f"N={float(p['N']):.3g}, D={float(p['D']):.3g}"
            for var, label in [("loss", "loss (law)"), ("loss_predictive", "loss (one run, predictive)"),
                               ("regret", "regret (loss)"), ("regret_flops", "regret (FLOP)"),
                               ("compute_efficiency", "compute efficiency C'/C")]:
                med, lo, hi = _interval(p[var].values, prob)
                rows.append(dict(quantity=label, at=where, median=med, low=lo, high=hi,
                                 mean=float(np.nanmean(p[var].values)) if var.startswith("regret") else np.nan))
            for inp in ("N", "D"):
                rows.append(dict(quantity=f"extrapolation {inp} (decades)", at=where, median=float(p[f"extrapolation_{inp}"])))
    if "target" in plan_tree.children:
        t = plan_tree["target"].to_dataset()
        tv = plan_tree.attrs["target"]
        for c in t["compute"].values:
            rows.append(dict(quantity=f"P(L* < {tv:g})", at=f"C={c:.3g}", median=float(t["prob_optimum_below"].sel(compute=c))))
        rows.append(dict(quantity=f"smallest C with P(L* < {tv:g}) ≥ {t.attrs['prob']:g}", at="", median=float(t["budget"])))
        if "prob_proposal_below" in t:
            for j in range(t.sizes["proposal"]):
                where = f"N={float(prop['N'][j]):.3g}, D={float(prop['D'][j]):.3g}"
                rows.append(dict(quantity=f"P(loss < {tv:g}), law", at=where, median=float(t["prob_proposal_below"][j])))
                rows.append(dict(quantity=f"P(loss < {tv:g}), one run", at=where,
                                 median=float(t["prob_proposal_below_predictive"][j])))
    table = pd.DataFrame(rows, columns=["quantity", "at", "median", "low", "high", "mean"])
    table.attrs["prob"] = prob
    return table


def format_plan(plan_tree: xr.DataTree, prob: float | None = None) -> str:
    """A plain-text rendering of :func:`plan_summary`, with the interval level in the header."""
    table = plan_summary(plan_tree, prob)
    p = table.attrs["prob"]
    header = (f"plan for {plan_tree.attrs['law_id']} (C = {plan_tree.attrs['flops_per_param_token']:g}·N·D); "
              f"median and central {p:.0%} interval; mean where given (regret: expected regret)")
    text = header + "\n" + table.rename(columns={"low": f"q{(1 - p) / 2:.3g}", "high": f"q{(1 + p) / 2:.3g}"}).to_string(
        index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
    empty = table["quantity"].str.startswith("near-optimal") & table["low"].isna()
    if empty.any():  # a blank region is an answer, not a missing number: say what it means
        text += ("\nblank near-optimal rows: no N keeps the loss within ε of the optimum with that probability; the "
                 "posterior of the optimum is too wide at this budget for a region at that level (a larger ε, "
                 "--epsilon, or more runs near the optimum narrows it)")
    return text


# ---------------------------------------------------------------------------------------------------------
#: compare_fits refuses two fits whose median law losses, at a point inside (or central to) both fits' data, differ by
#: more than this factor: their losses are then not on one scale. Bits vs nats differ by 1/ln 2 = 1.44; per-byte vs
#: per-token losses by the tokenizer's bytes per token (3-4). Recipes on one evaluation set differ by less: among the 15
#: configurations of Porian et al. 2024 (derived_isoflop_points.csv), the median loss ratio at matched N and C is at
#: most 1.09 within RefinedWeb or within OpenWebText2. Two evaluation sets of similar text are NOT told apart by this
#: rule (RefinedWeb vs OpenWebText2 differ by 1.06-1.17 there): for that, record ``attrs["evaluation"]`` in both
#: results, and compare_fits refuses a mismatch.
SCALE_RATIO_LIMIT = 1.25


def _run_counts(result: xr.DataTree) -> tuple[int, int] | None:
    """(points, distinct runs) of the fitted data, or None when the result carries no run labels."""
    for group in ("constant_data", "observed_data"):
        if group in result.children:
            ds = result[group].to_dataset()
            if "run" in ds.coords and ds["run"].dims == ("point",):
                return int(ds.sizes["point"]), int(np.unique(ds["run"].values).size)
    return None


def _median_law_loss(result: xr.DataTree, law: Law, log_n: float, log_d: float) -> float:
    params = {k: jnp.asarray(v) for k, v in flat_params(result, law).items()}
    at = {"N": jnp.asarray(log_n), "D": jnp.asarray(log_d)}
    return float(np.exp(np.median(np.asarray(jax.vmap(lambda p: law.log_fn(p, at))(params)))))


def _check_scale(result_a, result_b, law_a, law_b, limit: float) -> dict[str, float]:
    """Raise when the two fits' losses are not on one scale (see :data:`SCALE_RATIO_LIMIT`); return what was compared."""
    ev_a, ev_b = result_a.attrs.get("evaluation"), result_b.attrs.get("evaluation")
    if ev_a and ev_b and ev_a != ev_b:
        raise ValueError(f"fit A's losses are on evaluation {ev_a!r} and fit B's on {ev_b!r} (attrs['evaluation']): "
                         "a compute multiplier between different evaluations means nothing")
    ranges = {}
    for name in ("N", "D"):
        (lo_a, hi_a), (lo_b, hi_b) = (observed_range(r, name) for r in (result_a, result_b))
        lo, hi = max(lo_a, lo_b), min(hi_a, hi_b)
        # The centre of the overlap of the two data ranges, or of their union when they do not overlap.
        ranges[name] = np.sqrt(lo * hi) if lo <= hi else np.sqrt(min(lo_a, lo_b) * max(hi_a, hi_b))
    log_n, log_d = np.log(ranges["N"]), np.log(ranges["D"])
    la, lb = _median_law_loss(result_a, law_a, log_n, log_d), _median_law_loss(result_b, law_b, log_n, log_d)
    ratio = max(la, lb) / min(la, lb)
    if not ratio <= limit:
        raise ValueError(
            f"the two fits' losses differ by {ratio:.2f}x at N={ranges['N']:.3g}, D={ranges['D']:.3g} (A {la:.4g}, "
            f"B {lb:.4g}), more than {limit:g}x: are both in nats/token on the same evaluation data and tokenizer? "
            "(pass check_scale=False to compare anyway)")
    return {"N": float(ranges["N"]), "D": float(ranges["D"]), "loss_a": la, "loss_b": lb, "ratio": ratio}


@convergence_gate("compare", results=("result_a", "result_b"))
def compare_fits(
    result_a: xr.DataTree,
    result_b: xr.DataTree,
    compute: float | np.ndarray,
    *,
    flops_per_param_token: float = 6.0,
    rng_key: int = 0,
    law_a: Law | None = None,
    law_b: Law | None = None,
    allow_unconverged: bool = False,
    check_scale: bool = True,
    extrapolation_threshold: float = EXTRAPOLATION_THRESHOLD,
) -> xr.Dataset:
    """Compare two fits (recipes, architectures) at budgets C: does B beat A, and by how much compute?

    The two posteriors are independent, so draws are paired at random (a permutation of each, truncated to the
    smaller one). Per pair: ``loss_opt_a``, ``loss_opt_b`` (compute-optimal loss at C), ``b_better`` (L*_B < L*_A),
    and ``compute_multiplier`` = C_A / C, where C_A is the budget A needs, spent optimally, to reach L*_B(C): B is
    worth ``compute_multiplier`` times its compute in A's recipe (> 1: B is better; +inf: A never gets there, its
    floor is above L*_B(C)).

    A pair where either draw has no interior optimum (NaN, :func:`compute_optimal` warns) is left out of every
    probability and quantile, not counted for either side; ``valid`` marks the pairs used. Over the valid pairs:
    ``prob_b_better`` = P(B beats A at C) and ``prob_a_never`` = P(B reaches a loss A never reaches), the share of
    infinite multipliers. :func:`comparison_summary` gives quantiles that treat +inf as +inf and quantiles of the
    finite part.

    Checks (each also recorded in ``attrs["warnings"]``):

    - **Scale** (``check_scale``): a ``ValueError`` when the results' ``attrs["evaluation"]`` differ, or when the
      two fits' median law losses at the centre of the overlap of their data differ by more than
      :data:`SCALE_RATIO_LIMIT` (different units, tokenizer or evaluation set).
    - **Extrapolation**: ``extrapolation_{a,b}_{N,D}`` over ``compute``, the decades from each fit's data to the
      median optimal allocation, and ``extrapolation_{a,b}_C``, the decades from each fit's largest k·N·D to the
      budget; an :class:`~bayescale.results.extrapolation.ExtrapolationWarning` past
      ``extrapolation_threshold``.
    - **Snapshots**: a warning when a fit has several points per run (checkpoints, or isoFLOP points cut from one
      long run) but iid noise: its intervals are too narrow (docs/noise.md), and so are the comparison's.

    Results without fitted data (:func:`bayescale.infer.batch.select_fit`) skip the scale and extrapolation checks, with a
    warning.

    References
    ----------
    The compute-equivalent gain of a recipe is the usual way of stating algorithmic progress, e.g.
    Ho et al. 2024, "Algorithmic progress in language models", arXiv:2403.05812.
    """
    from bayescale.infer.noise import Noise

    law_a = planning_law(law_of(result_a, law_a, "plan"), "compare_fits")
    law_b = planning_law(law_of(result_b, law_b, "plan"), "compare_fits")
    budgets = _budgets(compute)
    notes: list[str] = []
    has_data = all("constant_data" in r.children for r in (result_a, result_b))
    scale = _check_scale(result_a, result_b, law_a, law_b, SCALE_RATIO_LIMIT) if check_scale and has_data else {}
    if not has_data:
        notes.append("a result carries no fitted data (constant_data): scale and extrapolation were not checked")
    for label, r in (("A", result_a), ("B", result_b)):
        counts = _run_counts(r)
        noise = Noise.from_attrs(r.attrs)
        if counts and counts[1] < counts[0] and not (noise.run_effect or noise.correlation):
            notes.append(f"fit {label} has {counts[0]} points from {counts[1]} runs but noise {noise.spec!r}: points "
                         "of one run are counted as independent measurements, so its intervals (and this comparison's) "
                         "are too narrow; refit with noise='run+ou' (docs/noise.md)")
    optima = []
    for label, r, law in (("A", result_a, law_a), ("B", result_b, law_b)):
        with warnings.catch_warnings(record=True) as caught:  # NaN optima: reported once, below, per budget
            warnings.simplefilter("always")
            optima.append(compute_optimal(r, budgets, flops_per_param_token=flops_per_param_token, law=law))
        notes += [f"fit {label}: {w.message}" for w in caught]
    opt_a, opt_b = optima
    la = opt_a["loss_opt"].values.reshape(-1, budgets.size)
    lb = opt_b["loss_opt"].values.reshape(-1, budgets.size)
    rng = np.random.default_rng(rng_key)
    n = min(la.shape[0], lb.shape[0])
    ia, ib = rng.permutation(la.shape[0])[:n], rng.permutation(lb.shape[0])[:n]
    la, lb = la[ia], lb[ib]
    valid = np.isfinite(la) & np.isfinite(lb)
    params_a = {k: v[ia] for k, v in flat_params(result_a, law_a).items()}
    # A NaN target would read as "never reached" (+inf) in the inverse: solve for valid pairs only.
    target = np.where(valid, lb, np.nanmedian(lb) if np.isfinite(lb).any() else 1.0)
    mult = np.stack(
        [_compute_for_loss(law_a, params_a, target[:, j], flops_per_param_token) / c for j, c in enumerate(budgets)],
        axis=1,
    )
    mult = np.where(valid, mult, np.nan)
    better = np.where(valid, lb < la, False)
    n_valid = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prob_better = np.where(n_valid > 0, better.sum(axis=0) / n_valid, np.nan)
        prob_never = np.where(n_valid > 0, (valid & np.isinf(mult)).sum(axis=0) / n_valid, np.nan)
    for j, c in enumerate(budgets):
        if n_valid[j] < n:
            notes.append(f"C = {c:.3g}: {n - n_valid[j]} of {n} pairs have no interior optimum in A or B and are left "
                         "out of every probability and quantile")
    extra = {}
    if has_data:
        for label, r, opt in (("a", result_a, opt_a), ("b", result_b, opt_b)):
            med_n = opt["N_opt"].median(("chain", "draw")).values
            med_d = opt["D_opt"].median(("chain", "draw")).values
            decades = extrapolation(r, N=med_n, D=med_d)
            # and the budget itself beyond the largest fitted run's k·N·D
            const = r["constant_data"].to_dataset()
            c_max = float(np.max(flops_per_param_token * const["N"].values * const["D"].values))
            decades["C"] = np.maximum(0.0, np.log10(budgets / c_max))
            for k, v in decades.items():
                extra[f"extrapolation_{label}_{k}"] = ("compute", v)
                worst = float(np.nanmax(v)) if np.isfinite(v).any() else np.nan
                if worst > extrapolation_threshold:
                    what = "budget C" if k == "C" else f"optimal {k}"
                    notes.append(f"fit {label.upper()}'s {what} lies {worst:.2f} decades beyond its data "
                                 f"(threshold {extrapolation_threshold:g}): the comparison covers the parameter "
                                 "uncertainty only, not a change of the law's form out there")
            warn_extrapolation(decades, extrapolation_threshold, what=f"compare_fits: fit {label.upper()}'s optimum")
    for note in notes:
        if "decades beyond" not in note:  # extrapolation warned above, as an ExtrapolationWarning
            warnings.warn(note, stacklevel=2)
    return xr.Dataset(
        {
            "loss_opt_a": (("pair", "compute"), la),
            "loss_opt_b": (("pair", "compute"), lb),
            "valid": (("pair", "compute"), valid),
            "b_better": (("pair", "compute"), better),
            "compute_multiplier": (("pair", "compute"), mult),
            "prob_b_better": ("compute", prob_better),
            "prob_a_never": ("compute", prob_never),
            "n_valid": ("compute", n_valid),
            **extra,
        },
        coords={"compute": budgets, "pair": np.arange(n)},
        attrs={"law_a": law_a.id, "law_b": law_b.id, "flops_per_param_token": flops_per_param_token,
               "pairing": f"independent random permutation, seed {rng_key}", "warnings": notes,
               "scale_check": scale},
    )


def _quantiles_with_inf(values: np.ndarray, qs: list[float]) -> list[float]:
    """Quantiles of the empirical distribution (the inverted CDF: the smallest value with at least a share q at or
    below it), by sorting; +inf sorts last and stays +inf (np.quantile interpolates inf - inf into NaN)."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0:
        return [np.nan] * len(qs)
    return [float(v[min(v.size - 1, max(0, int(np.ceil(q * v.size)) - 1))]) for q in qs]


def comparison_summary(cmp: xr.Dataset, prob: float = 0.9) -> "pd.DataFrame":
    """Per budget: P(B beats A), P(B reaches a loss A never reaches), and the compute multiplier's median and central
    ``prob`` interval twice: over all valid pairs with +inf kept as +inf (quantiles of the empirical distribution,
    no interpolation, so a quantile in the infinite tail is inf, never NaN), and over the finite pairs only."""
    import pandas as pd

    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    qs = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
    rows = []
    for c in cmp["compute"].values:
        sel = cmp.sel(compute=c)
        m = sel["compute_multiplier"].values[sel["valid"].values]
        finite = m[np.isfinite(m)]
        row = {"compute": float(c), "n_valid": int(sel["n_valid"]), "prob_b_better": float(sel["prob_b_better"]),
               "prob_a_never": float(sel["prob_a_never"])}
        row.update(zip(("low", "median", "high"), _quantiles_with_inf(m, qs)))
        row.update(zip(("finite_low", "finite_median", "finite_high"),
                       np.quantile(finite, qs) if finite.size else [np.nan] * 3))
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["prob"] = prob
    return table


def format_comparison(cmp: xr.Dataset, prob: float = 0.9, names: tuple[str, str] = ("A", "B")) -> str:
    """A plain-text rendering of a :func:`compare_fits` result: per budget, the probabilities and multiplier quantiles
    of :func:`comparison_summary`, the extrapolation distances, then every warning of the comparison."""
    table = comparison_summary(cmp, prob)
    lines = [f"A = {names[0]} ({cmp.attrs['law_a']}), B = {names[1]} ({cmp.attrs['law_b']}); draws paired at random; "
             f"compute multiplier = C_A / C, the budget A needs to reach B's optimal loss at C (> 1: B is better)"]
    for _, r in table.iterrows():
        c = r["compute"]
        lines.append(f"C = {c:.3g}: P(B beats A) = {r['prob_b_better']:.3f}; "
                     f"P(B reaches a loss A never reaches) = {r['prob_a_never']:.3f}")
        lines.append(f"  compute multiplier, all pairs (inf = never): median {r['median']:.3g} "
                     f"[{r['low']:.3g}, {r['high']:.3g}] ({prob:.0%})")
        if r["prob_a_never"] == 1:
            lines.append("  A never gets there in any pair: no finite multiplier")
        elif r["prob_a_never"] > 0:
            lines.append(f"  compute multiplier, the {1 - r['prob_a_never']:.0%} of pairs where A gets there: median "
                         f"{r['finite_median']:.3g} [{r['finite_low']:.3g}, {r['finite_high']:.3g}]")
        if "extrapolation_a_N" in cmp:
            e = {k: float(cmp[f"extrapolation_{k}"].sel(compute=c)) for k in ("a_N", "a_D", "a_C", "b_N", "b_D", "b_C")}
            lines.append(f"  beyond the data (decades): A: C {e['a_C']:.2f}, optimal N {e['a_N']:.2f}, D {e['a_D']:.2f}; "
                         f"B: C {e['b_C']:.2f}, optimal N {e['b_N']:.2f}, D {e['b_D']:.2f}")
        if int(r["n_valid"]) < cmp.sizes["pair"]:
            lines.append(f"  {cmp.sizes['pair'] - int(r['n_valid'])} of {cmp.sizes['pair']} pairs without an "
                         "interior optimum are left out")
    lines += [f"warning: {w}" for w in cmp.attrs.get("warnings", [])]
    return "\n".join(lines)
