"""Model comparison across laws: PSIS-LOO grouped by run, stacking weights, predictions averaged over laws.

Stacking weights come from two sources: :func:`compare_laws` (PSIS-LOO on the fitted runs, in-sample) and
:func:`stacking_weights` on any pointwise log predictive densities, such as those of held-out larger runs
(:func:`bayescale.validation.holdout.validate_laws`, which chooses laws by how well they extrapolate).

Checkpoints of one run are not independent (LAWS.md, "practice"), so leaving one *point* out understates how hard it
is to predict a new run: the unit left out is the run. :func:`loo` sums the pointwise log-likelihood over the points of
each run, ``log p(y_run | θ) = Σ_{i ∈ run} log p(y_i | θ)`` (the points are conditionally independent given θ in the
model), and runs PSIS-LOO (arviz-stats) on those per-run terms. When every point is its own run (final losses only, as
in the Chinchilla data) this is ordinary PSIS-LOO.

References
----------
Vehtari, Gelman, Gabry 2017, "Practical Bayesian model evaluation using leave-one-out cross-validation and WAIC",
Statistics and Computing 27. Yao, Vehtari, Simpson, Gelman 2018, "Using Stacking to Average Bayesian Predictive
Distributions", Bayesian Analysis 13.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.special
import xarray as xr

from bayescale.results.contract import observed_name, require, require_group, run_labels

__all__ = ["GROUPS", "log_likelihood_by_run", "loo", "compare_laws", "stacking_weights", "mixture_counts",
           "predict_averaged"]

#: ``run``: leave one run out (its checkpoints together); ``point``: leave one point out.
GROUPS = ("run", "point")


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise ValueError(f"group {group!r}: must be one of {list(GROUPS)}")


def log_likelihood_by_run(result: xr.DataTree) -> xr.DataTree:
    """A DataTree whose ``log_likelihood`` holds the observed variable over ``(chain, draw, run)``: the sum over each
    run's points (each point is its own run when the result records no runs)."""
    name = observed_name(result)
    ll = require_group(result, "log_likelihood", "loo")[name]
    runs = run_labels(result)
    runs = np.arange(ll.sizes["point"]) if runs is None else runs
    grouped = ll.assign_coords(run=("point", runs)).groupby("run").sum()
    return xr.DataTree.from_dict(
        {
            "/": xr.Dataset(attrs=dict(result.attrs)),
            "posterior": result["posterior"].to_dataset(),
            "log_likelihood": xr.Dataset({name: grouped}),
        }
    )


def loo(result: xr.DataTree, *, group: str = "run", pointwise: bool = True):
    """PSIS-LOO of a fit, leaving out one run (default) or one point at a time.

    Returns arviz-stats' ``ELPDData`` (``elpd``, ``se``, ``p``, Pareto ``k`` per left-out unit when ``pointwise``).
    Pareto k above 0.7 flags units whose removal the importance weights cannot represent; for whole runs with many
    checkpoints that is common, and exact refits (:mod:`bayescale.validation.holdout`) are the honest alternative.
    """
    import arviz_stats

    _check_group(group)
    require(result, "loo", ("observed_data", "log_likelihood"))
    tree = log_likelihood_by_run(result) if group == "run" else result
    return arviz_stats.loo(tree, var_name=observed_name(result), pointwise=pointwise)


def compare_laws(results: Mapping[str, xr.DataTree], *, group: str = "run", method: str = "stacking") -> pd.DataFrame:
    """Rank fits of different laws to the same runs by PSIS-LOO, with stacking (default) weights.

    Parameters
    ----------
    results
        Name → fit (each from :func:`bayescale.fit` on the same run table).
    group
        One of :data:`GROUPS`.
    method
        ``"stacking"``, ``"BB-pseudo-BMA"`` or ``"pseudo-BMA"`` (arviz-stats ``compare``).

    Returns
    -------
    pandas.DataFrame
        arviz-stats' comparison table (``rank``, ``elpd``, ``elpd_diff``, ``weight``, ``se``, ``dse``, ``warning``...),
        best first; pass it as ``weights`` to :func:`predict_averaged`.
    """
    import arviz_stats

    _check_group(group)
    if len(results) < 2:
        raise ValueError(f"compare_laws needs at least 2 fits, got {len(results)}")
    hashes = {name: r.attrs.get("data_hash", "") for name, r in results.items()}
    if len(set(hashes.values())) > 1:
        raise ValueError(f"the fits were made on different data (data hashes {hashes}); LOO compares fits of the same runs")
    allowed = ("stacking", "BB-pseudo-BMA", "pseudo-BMA")
    if method not in allowed:
        raise ValueError(f"method {method!r}: must be one of {list(allowed)}")
    elpd = {name: loo(r, group=group) for name, r in results.items()}
    table = arviz_stats.compare(elpd, method=method)
    table.attrs["group"] = group
    return table


def stacking_weights(lpd: np.ndarray) -> np.ndarray:
    """Stacking weights from pointwise log predictive densities: ``argmax_w Σ_i log Σ_k w_k p_k(y_i)`` on the simplex.

    Parameters
    ----------
    lpd
        ``(points, models)``: ``log p_k(y_i)``, the log predictive density of point i under model k (held-out or
        leave-one-out).

    Returns
    -------
    numpy.ndarray
        One weight per model, non-negative, summing to 1.

    Notes
    -----
    The objective is concave in w, so the optimum found is the global one (Yao et al. 2018, Eq. 4). arviz-stats'
    ``compare`` solves the same problem but only inside its LOO table and on ``exp(lpd)`` unshifted, which underflows
    to 0 for a held-out point that every candidate misses by ~40 predictive sds (log density below −745), as a
    misspecified law extrapolating two decades does; here the weights are a softmax of free logits and every sum is a
    ``logsumexp``, so such points keep their (tiny but ordered) contribution.
    """
    lpd = np.asarray(lpd, dtype=float)
    if lpd.ndim != 2 or lpd.shape[0] < 1 or lpd.shape[1] < 1:
        raise ValueError(f"lpd must be a (points, models) array with at least one of each, got shape {lpd.shape}")
    if not np.isfinite(lpd).all():
        rows = np.flatnonzero(~np.isfinite(lpd).all(axis=1))[:5].tolist()
        raise ValueError(f"lpd must be finite; points {rows} are not (a model gives them zero density)")
    n, k = lpd.shape
    if k == 1:
        return np.ones(1)

    def negative_score(z: np.ndarray) -> tuple[float, np.ndarray]:
        log_w = z - scipy.special.logsumexp(z)
        mixed = scipy.special.logsumexp(lpd + log_w, axis=1)
        share = np.exp(lpd + log_w - mixed[:, None])  # each point's posterior share of each model; rows sum to 1
        return -float(mixed.sum()), -(share.sum(axis=0) - n * np.exp(log_w))

    found = scipy.optimize.minimize(negative_score, np.zeros(k), jac=True, method="L-BFGS-B")
    return scipy.special.softmax(found.x)


def mixture_counts(weights: np.ndarray, total: int) -> np.ndarray:
    """How many of ``total`` draws each component of a mixture contributes: ``round(w·total)`` by largest
    remainders, so the counts sum to ``total`` exactly."""
    exact = np.asarray(weights, dtype=float) * total
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts))[: total - counts.sum()]] += 1
    return counts


def predict_averaged(
    results: Mapping[str, xr.DataTree],
    weights: Mapping[str, float] | pd.DataFrame,
    *,
    kind: str = "law",
    num_draws: int | None = None,
    rng_key: int = 0,
    allow_unconverged: bool = False,
    **inputs: Any,
) -> xr.Dataset:
    """Predictions averaged over laws: a mixture of each fit's posterior (predictive) draws in proportion to ``weights``.

    Parameters
    ----------
    results
        Name → fit.
    weights
        Name → weight (normalised here), or the table of :func:`compare_laws` (its ``weight`` column).
    kind
        ``"law"`` or ``"predictive"``, as in :func:`bayescale.results.predict`.
    num_draws
        Draws in the mixture (default: the fewest draws of any fit). Each law contributes ``round(weight·num_draws)``
        draws (largest remainders), taken without replacement when it has enough.
    allow_unconverged
        Passed to :func:`bayescale.results.predict`: predict from fits that did not converge (refused by default).
    **inputs
        Inputs of the prediction; each law receives the ones it takes.

    Returns
    -------
    xarray.Dataset
        ``loss`` over ``(chain=1, draw, prediction)``, the law of each draw in the coordinate ``model``, the weights in
        ``attrs``.
    """
    from bayescale.results.predict import predict
    from bayescale.results.io import law_of

    if isinstance(weights, pd.DataFrame):
        if "weight" not in weights.columns:
            raise ValueError("weights table has no 'weight' column (pass the table of compare_laws)")
        weights = weights["weight"].to_dict()
    unknown = sorted(set(weights) - set(results))
    missing = sorted(set(results) - set(weights))
    if unknown or missing:
        raise ValueError(f"weights must name exactly the fits {sorted(results)}; missing {missing}, unknown {unknown}")
    w = np.array([float(weights[k]) for k in results])
    if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {dict(zip(results, w))}")
    w = w / w.sum()
    sizes = [r["posterior"].sizes["chain"] * r["posterior"].sizes["draw"] for r in results.values()]
    total = int(num_draws or min(sizes))
    counts = mixture_counts(w, total)
    rng = np.random.default_rng(rng_key)
    parts, labels, coords = [], [], None
    for (name, result), n, size in zip(results.items(), counts, sizes):
        if n == 0:
            continue
        law = law_of(result)
        mine = {k: v for k, v in inputs.items() if k in law.input_names}
        pred = predict(result, kind=kind, rng_key=rng_key, allow_unconverged=allow_unconverged, **mine)
        flat = pred["loss"].values.reshape(size, -1)
        idx = rng.choice(size, n, replace=n > size)
        parts.append(flat[idx])
        labels += [name] * n
        if coords is None:
            coords = {k: ("prediction", np.broadcast_to(np.asarray(v, dtype=float), flat.shape[1:]).ravel())
                      for k, v in inputs.items()}
    loss = np.concatenate(parts)[None]
    return xr.Dataset(
        {"loss": (("chain", "draw", "prediction"), loss)},
        coords={"chain": [0], "draw": np.arange(loss.shape[1]), "model": ("draw", labels), **(coords or {})},
        attrs={"kind": kind, "weights": str(dict(zip(results, np.round(w, 6).tolist())))},
    )
