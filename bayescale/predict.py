"""Predictions from a fitted result: the law's curve or the posterior predictive, at new inputs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayescale.extrapolation import EXTRAPOLATION_THRESHOLD, extrapolation, warn_extrapolation
from bayescale.inference import as_key
from bayescale.laws import Law
from bayescale.results import attr_json, law_of

__all__ = ["predict", "KINDS"]

#: ``law``: the law's value per posterior draw (the median loss of a new run at those inputs, since the noise is
#: symmetric in log-loss); ``predictive``: a new observed loss, with the fitted observation noise.
KINDS = ("law", "predictive")


def _broadcast_inputs(law: Law, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    missing = [n for n in law.input_names if n not in inputs]
    extra = [n for n in inputs if n not in law.input_names]
    if missing or extra:
        raise ValueError(
            f"law {law.id!r} takes inputs {list(law.input_names)}; "
            + (f"missing {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unknown {extra}" if extra else "")
        )
    arrays = np.broadcast_arrays(*(np.asarray(inputs[n], dtype=float) for n in law.input_names))
    out = {n: a.reshape(-1) for n, a in zip(law.input_names, arrays)}
    for n, a in out.items():
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"input {n!r} must be finite and >= 0, got {a[~(np.isfinite(a) & (a >= 0))][:3]}")
    return out


def draws_log_law(law: Law, params: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> np.ndarray:
    """log of the law at ``inputs`` for each draw: array (draws, points)."""
    with np.errstate(divide="ignore"):
        log_inputs = {n: jnp.asarray(np.log(v)) for n, v in inputs.items()}
    one = jax.jit(jax.vmap(lambda p: law.log_fn(p, log_inputs)))
    return np.asarray(one({k: jnp.asarray(v) for k, v in params.items()}))


def predict(
    result: xr.DataTree,
    *,
    kind: str = "law",
    law: Law | None = None,
    rng_key: int | jax.Array = 0,
    extrapolation_threshold: float = EXTRAPOLATION_THRESHOLD,
    **inputs: Any,
) -> xr.Dataset:
    """Posterior predictions at new inputs.

    Parameters
    ----------
    result
        A fit from :func:`bayescale.fit` or :func:`bayescale.load`.
    kind
        One of :data:`KINDS`: ``"law"`` (the fitted curve) or ``"predictive"`` (adds observation noise).
    law
        Only for results of Python-function laws; catalogue and file laws are rebuilt from the result.
    rng_key
        Seed for the noise draws of ``kind="predictive"``.
    extrapolation_threshold
        Decades beyond the observed range of any input past which an
        :class:`~bayescale.extrapolation.ExtrapolationWarning` is issued.
    **inputs
        Values of every law input (scalars or arrays; broadcast together), e.g. ``N=7e10, D=1.4e12``.

    Returns
    -------
    xarray.Dataset
        ``loss`` over ``(chain, draw, prediction)`` with the inputs as coordinates along ``prediction``, and
        ``extrapolation_<input>`` coordinates: decades beyond the fitted range of each input (0 inside it).
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: must be one of {list(KINDS)}")
    law = law_of(result, law)
    x = _broadcast_inputs(law, inputs)
    post = result["posterior"].to_dataset()
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    params = {n: post[n].values.reshape(-1) for n in law.parameter_names}
    log_mu = draws_log_law(law, params, x)
    if kind == "predictive":
        key, _ = as_key(rng_key)
        sigma = post["sigma"].values.reshape(-1, 1)
        z = np.asarray(jax.random.normal(key, log_mu.shape))
        if "nu" in attr_json(result, "noise_parameters", []):
            nu = post["nu"].values.reshape(-1, 1)
            z = np.asarray(jax.random.t(key, jnp.asarray(nu), log_mu.shape))
        log_mu = log_mu + sigma * z
    loss = np.exp(log_mu).reshape(chains, draws, -1)
    decades = extrapolation(result, **x) if "constant_data" in result.children else {}
    warn_extrapolation(decades, extrapolation_threshold)
    return xr.Dataset(
        {"loss": (("chain", "draw", "prediction"), loss)},
        coords={
            "chain": post["chain"].values,
            "draw": post["draw"].values,
            **{n: ("prediction", v) for n, v in x.items()},
            **{f"extrapolation_{n}": ("prediction", d) for n, d in decades.items()},
        },
        attrs={"kind": kind, "law_id": law.id, "extrapolation_threshold": extrapolation_threshold},
    )
