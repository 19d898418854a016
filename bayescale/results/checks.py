"""Posterior predictive checks that read a result and never refit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.results.contract import observed_name, require

__all__ = ["check_coverage", "check_reference", "check_residuals", "residual_message"]

#: Family-wise level of :func:`check_residuals` (Bonferroni over the covariates tested).
RESIDUAL_ALPHA = 0.01
#: Smallest |Spearman ρ| :func:`check_residuals` flags: with hundreds of points a trend too weak to matter would be
#: significant; 0.3 is a moderate monotone trend of the misses.
RESIDUAL_MIN_RHO = 0.3
#: Fewest points (or runs) a covariate is tested on.
RESIDUAL_MIN_GROUPS = 8


def check_coverage(result: xr.DataTree, prob: float = 0.9) -> float:
    """Share of observed points inside the central ``prob`` interval of their posterior predictive distribution.

    A calibrated model gives about ``prob``; much less means over-confident intervals (e.g. checkpoints treated as
    independent), much more means noise is over-estimated.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    require(result, "check_coverage", ("observed_data", "posterior_predictive"))
    ppc = result["posterior_predictive"].to_dataset()
    name = observed_name(result)
    y = result["observed_data"][name].values
    draws = ppc[name].values.reshape(-1, y.size)
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return float(np.mean((y >= lo) & (y <= hi)))


def _pit_normal(draws: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Probability integral transform of each observed value under its predictive draws, as a standard normal score
    (ties split; clipped half a draw inside (0, 1) so that a point beyond every draw stays finite)."""
    from scipy.special import ndtri

    n = draws.shape[0]
    u = (np.sum(draws < y, axis=0) + 0.5 * np.sum(draws == y, axis=0)) / n
    return ndtri(np.clip(u, 0.5 / n, 1 - 0.5 / n))


def _is_index(values: np.ndarray) -> bool:
    """Integer codes 0, 1, ..., k − 1 (a cell or level index), which are labels, not covariates."""
    return np.issubdtype(values.dtype, np.integer) and set(np.unique(values)) == set(range(int(values.max()) + 1))


def _covariates(result: xr.DataTree, observed: str) -> dict[str, np.ndarray]:
    """The numeric per-point variables of a result's data (log10 where positive; index codes skipped), with D/N and
    C = 6ND when it has N and D."""
    out = {}
    for group in ("constant_data", "observed_data"):
        for name, var in result[group].to_dataset().data_vars.items():
            if (name == observed or var.dims != ("point",) or not np.issubdtype(var.dtype, np.number)
                    or _is_index(var.values)):
                continue
            v = var.values.astype(float)
            out[f"log10 {name}" if np.all(v > 0) else str(name)] = np.log10(v) if np.all(v > 0) else v
    if "log10 N" in out and "log10 D" in out:
        out["log10 D/N"] = out["log10 D"] - out["log10 N"]
        out["log10 C"] = np.log10(6.0) + out["log10 N"] + out["log10 D"]
    return out


def _point_runs(result: xr.DataTree) -> np.ndarray | None:
    """The run of each point (a ``run`` or ``point_run`` coordinate along ``point``), or None."""
    for group in ("constant_data", "observed_data"):
        coords = result[group].to_dataset().coords
        for name in ("run", "point_run"):
            if name in coords and coords[name].dims == ("point",):
                return coords[name].values
    return None


def check_residuals(result: xr.DataTree, *, alpha: float = RESIDUAL_ALPHA,
                    min_rho: float = RESIDUAL_MIN_RHO) -> pd.DataFrame:
    """Whether the fit misses systematically along one of its inputs: the law's shape, not noise, is then wrong there.

    Each observed point gets its probability integral transform under its posterior predictive draws, as a normal
    score z (0 at the predictive median, ±1.64 at the edges of the 90% band); for each input (log10 where positive,
    plus log10 D/N and log10 C = 6ND when the law has N and D), the Spearman rank correlation of z with the input
    is tested (any other numeric per-point variable of the data too; integer index codes are skipped). Points of one
    run are not independent, so when runs hold several points the test is over runs (each
    run's mean z against its mean input). A covariate is flagged when its correlation is at least ``min_rho`` in
    size and significant at ``alpha`` after a Bonferroni correction over the covariates. A calibrated fit's misses
    do not trend; coverage (:func:`check_coverage`) can be near its nominal value while they do.

    Returns
    -------
    pandas.DataFrame
        One row per covariate: ``covariate``, ``rho`` (positive: observed above the prediction where the covariate is
        large), ``p_value``, ``n`` (points or runs tested), ``flagged``. ``attrs``: ``passes``, ``threshold`` (the
        corrected level), ``unit`` ("point" or "run"), ``tested`` (False when no covariate had
        :data:`RESIDUAL_MIN_GROUPS` points or runs: nothing was checked), ``message`` (:func:`residual_message`).
    """
    import scipy.stats

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 <= min_rho < 1:
        raise ValueError(f"min_rho must be in [0, 1), got {min_rho}")
    require(result, "check_residuals", ("observed_data", "posterior_predictive", "constant_data"))
    name = observed_name(result)
    y = result["observed_data"][name].values
    z = _pit_normal(result["posterior_predictive"][name].values.reshape(-1, y.size), y)
    covariates = _covariates(result, name)
    runs = _point_runs(result)
    unit = "point"
    if runs is not None and np.unique(runs).size < y.size:  # curves: one score per run
        unit = "run"
        frame = pd.DataFrame({"run": runs, "z": z, **covariates}).groupby("run", sort=False).mean()
        z, covariates = frame["z"].values, {k: frame[k].values for k in covariates}
    rows = []
    for cov, values in covariates.items():
        if np.unique(values).size < 2 or values.size < RESIDUAL_MIN_GROUPS:
            continue
        rho, p = scipy.stats.spearmanr(values, z)
        rows.append({"covariate": cov, "rho": float(rho), "p_value": float(p), "n": int(values.size)})
    table = pd.DataFrame(rows, columns=["covariate", "rho", "p_value", "n"])
    threshold = alpha / max(1, len(table))
    table["flagged"] = (table["p_value"] < threshold) & (table["rho"].abs() >= min_rho)
    table.attrs.update(passes=not bool(table["flagged"].any()), threshold=threshold, unit=unit, tested=len(table) > 0)
    table.attrs["message"] = residual_message(table)
    return table


def residual_message(table: pd.DataFrame) -> str:
    """One sentence on the flagged trends of :func:`check_residuals` (empty when none is flagged)."""
    flagged = table[table["flagged"]]
    if flagged.empty:
        return ""
    parts = [f"{r.covariate} (Spearman rho {r.rho:+.2f}, p {r.p_value:.1g}: observed "
             f"{'above' if r.rho > 0 else 'below'} the prediction where it is large)" for r in flagged.itertuples()]
    return ("the fit misses systematically along " + "; ".join(parts) + ". The law's shape does not follow the data "
            "there; predictions and plans that extrapolate along it inherit the misfit")


def check_reference(result: xr.DataTree, source: str) -> float:
    """Posterior region level at which a published parameter set sits.

    Each draw and the reference are mapped to the unconstrained space NUTS sampled in (log amplitudes, logit of a
    bounded irreducible loss, …); the level is the share of posterior draws closer to the posterior mean in
    Mahalanobis distance than the reference. A level above 0.99 means the published constants lie outside the 99%
    posterior region (they are rejected by these data); near 0.5, they sit in the bulk.

    Parameters
    ----------
    result
        A fit whose ``references`` group holds ``source`` (the law file's published constants).
    source
        One of ``result["references"]["source"]``.
    """
    import json

    from numpyro.distributions.transforms import biject_to

    from bayescale.laws.priors import parse_prior

    require(result, "check_reference")
    if "references" not in result.children:
        raise ValueError("the result has no references group (its law file publishes no constants)")
    ref = result["references"].to_dataset()
    sources = [str(s) for s in ref["source"].values]
    if source not in sources:
        raise ValueError(f"source {source!r}: must be one of {sources}")
    post = result["posterior"].to_dataset()
    names = [n for n in json.loads(result.attrs["parameters"])
             if n in ref and n in post and np.isfinite(float(ref[n].sel(source=source)))]
    if not names:
        raise ValueError(f"source {source!r} publishes none of the result's parameters")
    priors = json.loads(result.attrs.get("priors", "{}"))
    stats = json.loads(result.attrs.get("data_statistics", "{}"))
    cols, point = [], []
    for n in names:
        try:  # the unconstrained space of the declared prior
            to_free = biject_to(parse_prior(priors[n]).distribution(stats).support).inv
        except (KeyError, ValueError):  # a special model's prior is no text: log for positive draws, else as is
            to_free = np.log if float(post[n].min()) > 0 else (lambda v: v)
        cols.append(np.asarray(to_free(post[n].values.reshape(-1))))
        point.append(float(to_free(float(ref[n].sel(source=source)))))
    draws = np.stack(cols, axis=1)
    mean = draws.mean(axis=0)
    prec = np.linalg.inv(np.atleast_2d(np.cov(draws, rowvar=False)))
    d2_draws = np.einsum("ij,jk,ik->i", draws - mean, prec, draws - mean)
    diff = np.asarray(point) - mean
    d2_ref = float(diff @ prec @ diff)
    return float(np.mean(d2_draws < d2_ref))
