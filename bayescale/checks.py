"""Posterior predictive checks that read a result and never refit."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["check_coverage"]


def check_coverage(result: xr.DataTree, prob: float = 0.9) -> float:
    """Share of observed points inside the central ``prob`` interval of their posterior predictive distribution.

    A calibrated model gives about ``prob``; much less means over-confident intervals (e.g. checkpoints treated as
    independent), much more means noise is over-estimated.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    if "posterior_predictive" not in result.children:
        raise ValueError("the result has no posterior_predictive group")
    draws = result["posterior_predictive"]["loss"].values.reshape(-1, result["observed_data"]["loss"].size)
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    y = result["observed_data"]["loss"].values
    return float(np.mean((y >= lo) & (y <= hi)))
