"""Noise models for whole training curves: run effects, correlated residuals along log-tokens, loss-level scaling.

The residual of point i of run r, on log-loss, is

    log y_i = log f(x_i; θ) + u_r + s_i · w_i

- ``u_r ~ Normal(0, tau)``: a **run effect** (seed, launch, data order), shared by every checkpoint of the run and
  partially pooled across runs (non-centred: ``u_r = tau · z_r``). Without it every checkpoint of a run is a fresh
  draw, and 50 checkpoints of one run count as 50 independent runs.
- ``w`` is an **Ornstein-Uhlenbeck process along log-tokens** within each run (``"ou"``): the standardised residuals
  of two checkpoints at tokens t < t' correlate as ``exp(−ln(t'/t) / ell)``, so neighbouring checkpoints share most
  of their deviation from the law. Conditionally on the previous checkpoint of the same run,
  ``w_i = φ_i w_prev + sqrt(1 − φ_i²) ε_i`` with ``φ_i = exp(−Δ ln t / ell)`` (an AR(1) for unequal spacing); the
  first checkpoint of a run has ``w = ε``. Without ``"ou"`` the w are independent.
- ``ε`` is Student-t(``nu``) (default) or Normal: heavy tails come from the innovation.
- ``s_i = sigma · exp(kappa · (log f_i − log min_loss))`` with ``"hetero"``: the noise scale grows (kappa > 0) or
  shrinks with the loss level; ``sigma`` is the scale at the lowest observed loss. Without it ``s_i = sigma``.

A spec is a string of terms joined by ``+``: ``"iid"`` (none of them), ``"run"``, ``"ou"``, ``"hetero"``, e.g.
``"run+ou"``. ``"auto"`` (the default of :func:`bayescale.fit`) is ``"iid"`` when every run has one point (a table of
final losses) and ``"run+ou"`` when some run has several checkpoints.

The likelihood is exact (the conditional chain), so the log-likelihood of a run is the sum of its points' terms and
PSIS-LOO grouped by run (:func:`bayescale.comparison.loo`) leaves whole runs out correctly. For a new run,
:func:`bayescale.predict` draws ``u`` fresh and ``w`` from its marginal (``ε``); for a run of the fit (``run=``) it uses
that run's posterior effect and, with ``"ou"``, conditions on the run's last observed checkpoint at or before the
prediction: this is how the rest of a partly seen curve is predicted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

__all__ = ["Noise", "NOISE_TERMS", "curve_structure", "linear_recurrence"]

#: Terms of a noise spec (joined by "+"), and "auto".
NOISE_TERMS = ("iid", "run", "ou", "hetero")


@dataclass(frozen=True)
class Noise:
    """Which structure the residuals have beyond the likelihood family (see the module docstring)."""

    run_effect: bool = False
    correlation: bool = False
    heteroscedastic: bool = False
    axis: str = "D"

    @property
    def names(self) -> tuple[str, ...]:
        """The extra noise parameters this structure samples (besides ``sigma`` and ``nu``)."""
        return (*(("tau",) if self.run_effect else ()), *(("ell",) if self.correlation else ()),
                *(("kappa",) if self.heteroscedastic else ()))

    @property
    def spec(self) -> str:
        terms = [t for t, on in (("run", self.run_effect), ("ou", self.correlation), ("hetero", self.heteroscedastic)) if on]
        return "+".join(terms) or "iid"

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"spec": self.spec})

    @classmethod
    def from_attrs(cls, attrs: Any) -> Noise:
        raw = attrs.get("noise")
        if not raw:
            return cls()
        d = json.loads(raw)
        return cls(**{k: d[k] for k in ("run_effect", "correlation", "heteroscedastic", "axis")})

    @classmethod
    def parse(cls, spec: str | Noise, ds: xr.Dataset | None = None, axis: str = "D") -> Noise:
        """A :class:`Noise` from a spec string (``"auto"`` needs the dataset ``ds``)."""
        if isinstance(spec, Noise):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"noise must be a string such as 'run+ou' or a Noise, got {spec!r}")
        if spec.strip() == "auto":
            if ds is None:
                raise ValueError("noise='auto' needs the data to decide")
            several = np.unique(ds["run"].values).size < ds.sizes["point"]
            return cls(run_effect=several, correlation=several and axis in ds, axis=axis)
        terms = [t.strip() for t in spec.split("+")]
        unknown = [t for t in terms if t not in NOISE_TERMS]
        if unknown:
            raise ValueError(f"noise {spec!r}: unknown term(s) {unknown}; terms are {list(NOISE_TERMS)} joined by '+', or 'auto'")
        if "iid" in terms and len(terms) > 1:
            raise ValueError(f"noise {spec!r}: 'iid' means no structure and cannot be combined with other terms")
        return cls(run_effect="run" in terms, correlation="ou" in terms, heteroscedastic="hetero" in terms, axis=axis)


def curve_structure(ds: xr.Dataset, noise: Noise) -> dict[str, Any]:
    """Index arrays the model needs: run index per point, and for ``"ou"`` the previous checkpoint of the same run.

    Points are ordered by (run, axis value); ``order`` lists point indices in that order, ``prev`` the index of each
    point's predecessor in its run (itself for the first), ``dlog`` the gap in ln(axis) to it (0 for the first) and
    ``has_prev`` whether there is one.
    """
    from bayescale.data import DataError

    runs, run_idx = np.unique(ds["run"].values, return_inverse=True)
    out: dict[str, Any] = {"run_idx": jnp.asarray(run_idx), "n_runs": int(runs.size), "runs": runs}
    if not noise.correlation:
        return out
    if noise.axis not in ds:
        raise DataError(f"noise 'ou' correlates checkpoints along {noise.axis!r}, which the data do not have "
                        f"(it has {sorted(str(v) for v in ds.data_vars)})")
    t = ds[noise.axis].values.astype(float)
    if np.any(t <= 0):
        raise DataError(f"noise 'ou' needs {noise.axis!r} > 0 at every checkpoint (it works in log {noise.axis})")
    order = np.lexsort((t, run_idx))
    same = np.r_[False, run_idx[order][1:] == run_idx[order][:-1]]
    tied = same & np.r_[False, t[order][1:] == t[order][:-1]]
    if tied.any():
        bad = sorted({str(runs[run_idx[order][k]]) for k in np.flatnonzero(tied)})[:5]
        raise DataError(f"noise 'ou': runs {bad} have two checkpoints at the same {noise.axis}; "
                        "give each run distinct checkpoints (or a run column that separates them)")
    prev = np.arange(t.size)
    prev[order[1:]] = np.where(same[1:], order[:-1], order[1:])
    dlog = np.where(prev != np.arange(t.size), np.log(t) - np.log(t[prev]), 0.0)
    has_prev = prev != np.arange(t.size)
    out.update(order=jnp.asarray(order), inverse=jnp.asarray(np.argsort(order)), prev=jnp.asarray(prev),
               dlog=jnp.asarray(dlog), has_prev=jnp.asarray(has_prev))
    return out


def linear_recurrence(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """x_k = a_k · x_{k−1} + b_k with x_{−1} = 0, by a parallel prefix scan (O(log n) depth on an accelerator)."""

    def combine(left, right):
        return left[0] * right[0], right[0] * left[1] + right[1]

    return jax.lax.associative_scan(combine, (a, b))[1]


def ou_terms(dlog: jnp.ndarray, has_prev: jnp.ndarray, ell: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """φ = exp(−Δ/ell) (0 at a run's first point) and sqrt(1 − φ²), computed without cancellation for small Δ."""
    gap = jnp.where(has_prev, dlog, 1.0)  # a safe value at first points: where() differentiates both branches
    phi = jnp.where(has_prev, jnp.exp(-gap / ell), 0.0)
    root = jnp.where(has_prev, jnp.sqrt(-jnp.expm1(-2.0 * gap / ell)), 1.0)
    return phi, root


def noise_scale(sigma: Any, log_mu: Any, noise: Noise, kappa: Any, statistics: Mapping[str, float]) -> Any:
    """Per-point scale s_i of the standardised residual (numpy or JAX arrays alike): ``sigma``, or under ``"hetero"``
    ``sigma · exp(kappa · (log_mu − log min_loss))`` with ``min_loss`` from the data ``statistics``."""
    if not noise.heteroscedastic:
        return sigma
    xp = np if isinstance(log_mu, np.ndarray) else jnp
    return sigma * xp.exp(kappa * (log_mu - xp.log(statistics["min_loss"])))
