"""Which runs to train next: expected shrinkage of a target's posterior variance, per FLOP and within a budget.

The estimator is the Bayes-linear adjusted variance (Goldstein & Wooff 2007, ch. 3), computed from the posterior draws
without refitting. Let q be the target (log of the loss at given inputs, or log N* / log L* at a budget) and y_S the
log-losses that a set S of new runs would return, y_c = μ_c(θ) + e_c. Over the current draws, (q, μ_1..μ_K) have a
joint covariance C. The best *linear* predictor of q from y_S leaves the error variance

    V(S) = C_qq − C_qS (C_SS + R_S)⁻¹ C_Sq,          R_S = diag(r_c),

where r_c is the noise variance of a new run's log-loss. V(S) is exact for a linear-Gaussian model. With the true
noise variance it is also, in general, an upper bound on the expected posterior variance E_y[Var(q | y_S)] (the
posterior mean is the best predictor of all, linear or not). It is joint over sets: two runs that measure the same
thing do not count twice, which is what makes budgeted selection non-myopic.

Student-t noise enters through its information-equivalent Normal variance r = s²(ν+3)/(ν+1) (the inverse Fisher
information of a t location; r = s² as ν → ∞), plus the run-effect variance τ² of a fresh run when the fit has one. That
makes V(S) a **heuristic**, not a bound: r is smaller than the t's actual variance s²ν/(ν−2) (infinite for ν ≤ 2), and
for heavy tails V(S) then falls below the expected posterior variance. In a one-parameter problem (θ ~ N(0, 1),
y = θ + s·t_ν) V is 41% below E_y[Var(θ | y)] at ν = 2.5, s = 0.3, 16% below at ν = 5, and within 1% at ν = 30 or
s = 3 (``tests/test_design.py``). With the actual variance the bound would hold (ν > 2) but would count a heavy-tailed
run as nearly worthless; the forecast is used to rank sets, and docs/planning.md measures how well it does.

Selection within a budget scores every affordable set of candidates when there are at most 50,000 such sets (the
study in docs/planning.md has 28,632 at its largest budget, scored in 0.4 s), so the chosen set is the best one under
the estimator. Larger pools fall back to the cost-benefit greedy rule for budgeted maximisation (add the affordable
run with the largest variance reduction per FLOP given those already chosen), taking the better of its set and the
best single affordable run (Khuller, Moss & Naor 1999; Krause & Guestrin 2005): the guard against spending the budget
on cheap runs when one larger run does more. On 200 random 7-candidate linear problems the greedy rule alone reached
the best set's variance reduction in 47% of them, with a median of 99.8% and a worst case of 57% of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from bayescale.infer.diagnostics import convergence_gate
from bayescale.results.extrapolation import EXTRAPOLATION_THRESHOLD, extrapolation, warn_extrapolation
from bayescale.laws.catalogue import Law
from bayescale.results.io import law_of

__all__ = ["rank_next_experiments", "adjusted_variance", "select_within_budget", "TARGET_QUANTITIES"]

#: Quantities of the target prediction that :func:`rank_next_experiments` can reduce the uncertainty of.
TARGET_QUANTITIES = ("loss", "N_opt", "loss_opt")


def adjusted_variance(cov: np.ndarray, noise_var: np.ndarray, chosen) -> float:
    """Bayes-linear variance of the target (index 0 of ``cov``) after observing candidates ``chosen``.

    ``cov``: (K+1, K+1) joint covariance of the target and the K candidates' log-means over the posterior draws.
    ``noise_var``: (K,) noise variance of each candidate's observation. ``chosen``: candidate indices (0-based; a
    candidate listed twice is two independent runs at the same inputs).
    """
    idx = np.asarray(list(chosen), dtype=int)
    if idx.size == 0:
        return float(cov[0, 0])
    c_qs = cov[0, 1 + idx]
    c_ss = cov[np.ix_(1 + idx, 1 + idx)] + np.diag(noise_var[idx])
    return float(cov[0, 0] - c_qs @ np.linalg.solve(c_ss, c_qs))


def _affordable_subsets(cost: np.ndarray, budget: float, limit: int) -> list[tuple[int, ...]] | None:
    """Every non-empty subset of candidates with total cost within ``budget``, or None when there are more than
    ``limit`` of them (depth-first, cheapest candidates first, so a hopeless enumeration stops early)."""
    order = [int(c) for c in np.argsort(cost, kind="stable")]
    out: list[tuple[int, ...]] = []

    def extend(start: int, chosen: tuple[int, ...], spent: float) -> bool:
        for i in range(start, len(order)):
            c = order[i]
            if spent + cost[c] > budget:
                break  # the rest cost more still
            out.append(chosen + (c,))
            if len(out) > limit or not extend(i + 1, chosen + (c,), spent + cost[c]):
                return False
        return True

    return out if extend(0, (), 0.0) else None


def select_within_budget(cov: np.ndarray, noise_var: np.ndarray, cost: np.ndarray, budget: float,
                         max_subsets: int = 50_000) -> list[int]:
    """Candidates to run within ``budget`` (sum of ``cost``) that minimise :func:`adjusted_variance`.

    Exact when there are at most ``max_subsets`` affordable subsets (all are scored; a few ms per thousand);
    otherwise the cost-benefit greedy rule with the single-run guard (module docstring). Returns indices, in the
    order picked by the greedy rule or by increasing cost; empty when nothing is affordable.
    """
    cost = np.asarray(cost, dtype=float)
    subsets = _affordable_subsets(cost, budget, max_subsets)
    if subsets is not None:
        best = min(subsets, key=lambda s: adjusted_variance(cov, noise_var, s), default=())
        return list(best) if best and adjusted_variance(cov, noise_var, best) < cov[0, 0] else []
    chosen: list[int] = []
    spent, current = 0.0, adjusted_variance(cov, noise_var, chosen)
    while True:
        best_c, best_ratio, best_var = None, 0.0, current
        for c in range(cost.size):
            if c in chosen or spent + cost[c] > budget:
                continue
            var = adjusted_variance(cov, noise_var, chosen + [c])
            if (current - var) / cost[c] > best_ratio:
                best_c, best_ratio, best_var = c, (current - var) / cost[c], var
        if best_c is None:
            break
        chosen.append(best_c)
        spent, current = spent + cost[best_c], best_var
    singles = [(adjusted_variance(cov, noise_var, [c]), c) for c in range(cost.size) if cost[c] <= budget]
    if singles and min(singles)[0] < current:
        return [min(singles)[1]]
    return chosen


def _target_draws(result, law, params, target, quantity, flops_per_param_token):
    """The target per draw, and the inputs it sits at (the median compute-optimal allocation for a budget target)."""
    from bayescale.planning.optimum import compute_optimal
    from bayescale.results.predict import draws_log_law

    if quantity == "loss":
        inputs = {n: np.atleast_1d(np.asarray(target[n], dtype=float)) for n in law.input_names}
        return draws_log_law(law, params, inputs)[:, 0], inputs
    opt = compute_optimal(result, float(target), flops_per_param_token=flops_per_param_token, law=law)
    where = {n: np.atleast_1d(float(opt[f"{n}_opt"].median())) for n in ("N", "D")}
    return np.log(opt[quantity].values.reshape(-1)), where


@convergence_gate("next (rank_next_experiments)")
def rank_next_experiments(
    result: xr.DataTree,
    candidates: Any,
    *,
    target: Mapping[str, float] | float,
    quantity: str | None = None,
    budget: float | None = None,
    flops_per_param_token: float = 6.0,
    law: Law | None = None,
    extrapolation_threshold: float = EXTRAPOLATION_THRESHOLD,
    allow_unconverged: bool = False,
) -> "pd.DataFrame":
    """Rank candidate runs by expected reduction of the target's posterior variance per FLOP; with ``budget``, also
    choose the set of runs to train within it.

    Pre-posterior analysis from the current draws, no refit: the Bayes-linear adjusted variance (module docstring).
    It assumes a new run's noise is independent of the fitted runs' (true for a new model; optimistic for one more
    checkpoint of a fitted run).

    Parameters
    ----------
    candidates
        A DataFrame (or mapping of arrays) with a column per law input and optionally ``cost`` (FLOP; default k·N·D).
    target
        Inputs ``{"N": ..., "D": ...}`` of the prediction to pin down (``quantity="loss"``, the log of the law's
        loss there), or a budget C in FLOP (``quantity="N_opt"``, default, or ``"loss_opt"``; log scale).
    quantity
        One of :data:`TARGET_QUANTITIES`.
    budget
        FLOP to spend on new runs. The returned table then marks the chosen set (``selected``, ``pick`` order) and
        its attrs hold the set's expected variance (``set_variance``), ``set_cost`` and ``set_interval_shrink``.

    Returns
    -------
    pandas.DataFrame
        The candidates sorted by ``score`` (variance reduction per FLOP, descending), with ``variance_reduction``
        (absolute and ``relative`` to the current variance) and ``interval_shrink`` (expected ratio of the posterior
        sd after / before), each for that run alone, and ``extrapolation_<input>``: decades beyond the fitted data.
        ``attrs["target_extrapolation"]`` gives the target's (at the median N*, D* for a budget target); past
        ``extrapolation_threshold`` decades an :class:`~bayescale.ExtrapolationWarning` is raised.

    References
    ----------
    Chaloner & Verdinelli 1995, "Bayesian experimental design: a review", Statistical Science 10(3);
    Goldstein & Wooff 2007, "Bayes Linear Statistics", Wiley; Krause & Guestrin 2005, "A note on the budgeted
    maximization of submodular functions", CMU-CALD-05-103.
    """
    import pandas as pd

    from bayescale.planning.optimum import flat_params, planning_law
    from bayescale.results.predict import draws_log_law, noise_terms

    law = law_of(result, law, "plan")
    table = pd.DataFrame(dict(candidates)) if not isinstance(candidates, pd.DataFrame) else candidates.copy()
    if law.optimum and not set(law.tuned_inputs) & set(table.columns):
        law = law.at_optimum()  # candidates without tuning inputs are runs at the optimal ones
    missing = [c for c in law.input_names if c not in table.columns]
    if missing:
        raise ValueError(f"candidates need columns {list(law.input_names)} (and optionally 'cost'); missing {missing}")
    if len(table) == 0:
        raise ValueError("candidates: no rows")
    for n in law.input_names:
        values = table[n].to_numpy(dtype=float)
        if np.any(~np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"candidates: column {n!r} must be positive and finite")
    if "cost" not in table.columns:
        if not {"N", "D"} <= set(law.input_names):
            raise ValueError(f"candidates need a 'cost' column: law {law.id!r} has no inputs N and D for 6ND")
        table["cost"] = flops_per_param_token * table["N"] * table["D"]
    if np.any(~np.isfinite(table["cost"])) or np.any(table["cost"] <= 0):
        raise ValueError("candidates: cost must be positive and finite (FLOP)")
    if budget is not None and not (np.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be positive and finite FLOP, got {budget!r}")

    if isinstance(target, Mapping):
        quantity = quantity or "loss"
        absent = [n for n in law.input_names if n not in target]
        if absent:
            raise ValueError(f"target inputs: missing {absent}; law {law.id!r} needs {list(law.input_names)}")
        if quantity != "loss":
            raise ValueError(f"quantity {quantity!r} with target inputs: must be 'loss' (a budget target takes "
                             f"{list(TARGET_QUANTITIES[1:])})")
    else:
        planning_law(law, "a budget target")
        quantity = quantity or "N_opt"
        if quantity not in TARGET_QUANTITIES[1:]:
            raise ValueError(f"quantity {quantity!r} with a budget target: must be one of {list(TARGET_QUANTITIES[1:])}")

    params = flat_params(result, law)
    q, where = _target_draws(result, law, params, target, quantity, flops_per_param_token)
    cand_inputs = {n: table[n].to_numpy(dtype=float) for n in law.input_names}
    mu = draws_log_law(law, params, cand_inputs)  # (draws, K) log-mean of each candidate
    terms = noise_terms(result, law, mu, cand_inputs)
    info_factor = 1.0 if terms.nu is None else (terms.nu + 3.0) / (terms.nu + 1.0)
    noise_var = np.mean(terms.scale**2 * info_factor + terms.run_sd**2, axis=0)
    ok = np.isfinite(q) & np.all(np.isfinite(mu), axis=1)
    if ok.sum() < 10:
        raise ValueError(f"the target is finite in only {int(ok.sum())} of {q.size} posterior draws")
    cov = np.cov(np.column_stack([q[ok], mu[ok]]), rowvar=False).reshape(1 + mu.shape[1], 1 + mu.shape[1])
    prior_var = float(cov[0, 0])

    rows = []
    for j in range(len(table)):
        var = adjusted_variance(cov, noise_var, [j])
        rows.append(dict(variance_reduction=prior_var - var, relative_reduction=1 - var / prior_var,
                         interval_shrink=float(np.sqrt(var / prior_var))))
    out = pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    out["score"] = out["variance_reduction"] / out["cost"]
    target_decades = {}
    if "constant_data" in result.children:  # how far candidates and target lie beyond the fitted data
        for n, d in extrapolation(result, **cand_inputs).items():
            out[f"extrapolation_{n}"] = d
        target_decades = {n: float(d[0]) for n, d in extrapolation(result, **where).items()}
        warn_extrapolation({n: np.array([d]) for n, d in target_decades.items()}, extrapolation_threshold,
                           what="the target of rank_next_experiments", stacklevel=4)  # 4: past the convergence gate
    attrs = dict(quantity=quantity, target=target if not isinstance(target, Mapping) else dict(target),
                 target_extrapolation=target_decades or "unknown: the result holds no fitted data",
                 prior_variance=prior_var, draws=int(ok.sum()), estimator="Bayes-linear adjusted variance")
    if budget is not None:
        picks = select_within_budget(cov, noise_var, out["cost"].to_numpy(float), float(budget))
        out["selected"] = False
        out["pick"] = pd.array([pd.NA] * len(out), dtype="Int64")
        for order, j in enumerate(picks):
            out.loc[j, "selected"], out.loc[j, "pick"] = True, order + 1
        set_var = adjusted_variance(cov, noise_var, picks)
        attrs.update(budget=float(budget), set_variance=set_var, set_cost=float(out["cost"].iloc[picks].sum()),
                     set_interval_shrink=float(np.sqrt(set_var / prior_var)))
    out = out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    out.attrs.update(attrs)
    return out
