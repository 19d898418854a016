"""Sampler and identification diagnostics, recorded in the result and raised on ``strict=True``.

Thresholds: R-hat > 1.01 and bulk/tail ESS < 100 per chain·4 (=400 total) follow Vehtari et al. 2021, "Rank-normalization,
folding, and localization: an improved R-hat", Bayesian Analysis 16(2); any divergent transition is reported
(Betancourt 2017, arXiv:1701.02434).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr
from numpyro.distributions.transforms import biject_to

__all__ = ["SamplingWarning", "SamplingError", "diagnose", "RHAT_MAX", "ESS_MIN"]

RHAT_MAX = 1.01
ESS_MIN = 400  # Vehtari et al. 2021 recommend ESS > 100 per chain for 4 chains
# A parameter is "on its bound" when over 10% of its draws lie in the outer 1% of a bounded prior's range: enough
# mass piled against the wall that the bound, not the data, shapes the posterior.
BOUND_EDGE, BOUND_SHARE = 0.01, 0.10
# "Barely moved": posterior sd above 90% of the prior sd (contraction 1 - var_post/var_prior < 0.19) means the
# data carry almost no information about the parameter (Schad, Betancourt, Vasishth 2021, Fig. 2 uses the same
# posterior-contraction measure).
CONTRACTION_MIN = 0.19


class SamplingWarning(UserWarning):
    """Sampler or identification trouble: divergences, R-hat, ESS, prior bound, no learning."""


class SamplingError(RuntimeError):
    """Raised by ``fit(..., strict=True)`` on sampler trouble; ``.result`` holds the (complete) result anyway."""

    def __init__(self, message: str, result: xr.DataTree | None = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class _Bounds:
    low: float
    high: float


def _bounds(distribution) -> _Bounds | None:
    support = distribution.support
    low = getattr(support, "lower_bound", None)
    high = getattr(support, "upper_bound", None)
    if low is None or high is None:
        return None
    low, high = float(np.asarray(low)), float(np.asarray(high))
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    return _Bounds(low, high)


def diagnose(dt: xr.DataTree, names: tuple[str, ...], distributions: dict) -> tuple[pd.DataFrame, list[str]]:
    """Compute per-parameter diagnostics and the list of warnings.

    Returns
    -------
    table
        One row per parameter: ``rhat``, ``ess_bulk``, ``ess_tail``, ``contraction``.
    messages
        Human-readable warnings (empty when all is well).
    """
    post = dt["posterior"].to_dataset()[list(names)]
    rhat = azs.rhat(post)
    ess_bulk = azs.ess(post, method="bulk")
    ess_tail = azs.ess(post, method="tail")
    prior = dt["prior"].to_dataset() if "prior" in dt.children else None
    rows, messages = [], []
    n_chains = post.sizes["chain"]
    for name in names:
        draws = post[name].values.reshape(-1)
        contraction = np.nan
        if prior is not None and name in prior:
            # compare spreads in the unconstrained space NUTS samples in (log A, logit E, ...), where the
            # variance of a heavy-tailed prior such as LogNormal(6, 2.5) is finite and meaningful
            to_free = biject_to(distributions[name].support).inv
            var_prior = float(np.var(np.asarray(to_free(prior[name].values.reshape(-1)))))
            if var_prior > 0:
                contraction = 1.0 - float(np.var(np.asarray(to_free(draws)))) / var_prior
        row = dict(
            parameter=name,
            rhat=float(rhat[name]),
            ess_bulk=float(ess_bulk[name]),
            ess_tail=float(ess_tail[name]),
            contraction=contraction,
        )
        rows.append(row)
        if n_chains > 1 and not row["rhat"] <= RHAT_MAX:
            messages.append(f"{name}: R-hat {row['rhat']:.3f} > {RHAT_MAX} (chains disagree; run longer or reparameterise)")
        ess_min = min(ESS_MIN, 100 * n_chains)
        if min(row["ess_bulk"], row["ess_tail"]) < ess_min:
            messages.append(
                f"{name}: effective sample size bulk {row['ess_bulk']:.0f} / tail {row['ess_tail']:.0f} < {ess_min}"
            )
        bounds = _bounds(distributions[name])
        if bounds is not None:
            width = bounds.high - bounds.low
            for side, edge in (("upper", bounds.high), ("lower", bounds.low)):
                share = float(np.mean(np.abs(draws - edge) < BOUND_EDGE * width))
                if share > BOUND_SHARE:
                    messages.append(
                        f"{name}: {share:.0%} of draws sit on the {side} prior bound {edge:.4g}; the prior, not the "
                        f"data, limits it (widen the prior or check the law)"
                    )
        if np.isfinite(contraction) and contraction < CONTRACTION_MIN:
            messages.append(
                f"{name}: posterior barely moved from the prior (contraction {contraction:.2f} < {CONTRACTION_MIN}); "
                f"the data hardly inform it"
            )
    divergences = int(dt["sample_stats"]["diverging"].values.sum()) if "sample_stats" in dt.children else 0
    if divergences:
        total = dt["sample_stats"]["diverging"].size
        messages.insert(0, f"{divergences} of {total} transitions diverged (results may be biased)")
    table = pd.DataFrame(rows).set_index("parameter")
    table.attrs["divergences"] = divergences
    return table, messages


def record(dt: xr.DataTree, table: pd.DataFrame, messages: list[str], strict: bool) -> None:
    """Store diagnostics in the result attrs, warn, and raise :class:`SamplingError` when ``strict``."""
    dt.attrs["diagnostics"] = json.dumps(
        {"divergences": table.attrs["divergences"], "parameters": table.reset_index().to_dict(orient="records")}
    )
    dt.attrs["warnings"] = json.dumps(messages)
    if messages:
        text = "sampler diagnostics for law " + repr(dt.attrs.get("law_id")) + ":\n  " + "\n  ".join(messages)
        if strict:
            raise SamplingError(text, result=dt)
        warnings.warn(text, SamplingWarning, stacklevel=3)
