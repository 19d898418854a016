"""Posterior predictive checks that read a result and never refit."""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayescale.results.contract import observed_name, require

__all__ = ["check_coverage", "check_reference"]


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
