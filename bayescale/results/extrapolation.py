"""How far a prediction extrapolates beyond the data a result was fitted on, in decades of each input.

A scaling law fitted on runs with N in [N_min, N_max] is a claim about that range; a prediction at N = 10·N_max
extrapolates one decade, and its interval only covers the parameter uncertainty, not the chance that the law's form
changes out there. Every prediction and plan records the distance, and warns past a threshold.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["ExtrapolationWarning", "EXTRAPOLATION_THRESHOLD", "extrapolation", "observed_range", "warn_extrapolation"]

#: Decades beyond the observed range of an input past which predictions warn. A convention, not a law of nature:
#: published held-out checks of scaling laws extrapolate about one decade per axis (Hoffmann et al. 2022's 70B
#: Chinchilla is 0.6 decades in N beyond their largest fitted run, 16B), and at 1.5 decades an exponent error of
#: 0.02 (Besiroglu et al. 2024's bootstrap SE of α and β) already moves the reducible term A/N^α by
#: 10^(0.02·1.5) - 1 ≈ 7%, while changes of the law's form (a bend, a new regime) are invisible to the fit.
EXTRAPOLATION_THRESHOLD = 1.5


class ExtrapolationWarning(UserWarning):
    """A prediction lies more than the threshold (decades) beyond the observed range of an input."""


def observed_range(result: xr.DataTree, name: str) -> tuple[float, float]:
    """(min, max) of the positive observed values of input ``name`` in the result's ``constant_data``."""
    if "constant_data" not in result.children:
        raise ValueError("the result has no constant_data group (the fitted inputs)")
    const = result["constant_data"].to_dataset()
    if name not in const:
        raise ValueError(f"input {name!r}: must be one of {[str(v) for v in const.data_vars]}")
    values = np.asarray(const[name].values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.min()), float(values.max())


def extrapolation(result: xr.DataTree, **inputs: Any) -> dict[str, np.ndarray]:
    """Decades beyond the observed range of each input: ``max(0, log10(x/x_max), log10(x_min/x))``.

    0 inside the range; NaN where the value or the whole observed input is not positive (no log scale, e.g. an
    offset input observed at 0). Inputs broadcast together like :func:`bayescale.results.predict`'s.

    >>> extrapolation(result, N=7e10, D=1.4e12)   # doctest: +SKIP
    {'N': array([0.64]), 'D': array([0.64])}
    """
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in inputs.values()))
    out = {}
    for name, x in zip(inputs, arrays):
        lo, hi = observed_range(result, name)
        x = x.reshape(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            above, below = np.log10(x / hi), np.log10(lo / x)
        d = np.maximum(0.0, np.maximum(above, below))
        d = np.where((x > 0) & np.isfinite(x) & np.isfinite(lo), d, np.nan)
        out[name] = d
    return out


def warn_extrapolation(
    decades: Mapping[str, np.ndarray], threshold: float = EXTRAPOLATION_THRESHOLD, *, what: str = "prediction",
    stacklevel: int = 3,
) -> bool:
    """Warn with :class:`ExtrapolationWarning` if any input extrapolates more than ``threshold`` decades."""
    worst = {n: float(np.nanmax(d)) for n, d in decades.items() if np.any(np.isfinite(d))}
    over = {n: d for n, d in worst.items() if d > threshold}
    if over:
        detail = ", ".join(f"{n} by {d:.2f}" for n, d in over.items())
        warnings.warn(
            f"{what} extrapolates beyond the fitted data ({detail} decades; threshold {threshold:g}): its interval "
            "covers the parameter uncertainty only, not a change of the law's form out there",
            ExtrapolationWarning,
            stacklevel=stacklevel,
        )
    return bool(over)
