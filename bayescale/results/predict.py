"""Predictions from a fitted result: the law's curve or the posterior predictive, at new inputs."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
import xarray as xr

from bayescale.infer.diagnostics import convergence_gate
from bayescale.errors import ArgumentError
from bayescale.results.extrapolation import EXTRAPOLATION_THRESHOLD, extrapolation, warn_extrapolation
from bayescale.infer.fit import as_key
from bayescale.laws.catalogue import Law, Target, law_program
from bayescale.infer.noise import Noise, noise_scale
from bayescale.results.contract import require
from bayescale.results.io import attr_json, law_of

__all__ = ["predict", "KINDS", "noise_terms", "log_density", "draw_noise", "numpy_rng",
           "standard_noise"]

#: ``law``: the law's value per posterior draw (the median loss of a new run at those inputs, since the noise is
#: symmetric in log-loss, and likewise on the link scale of other target kinds); ``predictive``: a new observed loss,
#: with the fitted observation noise.
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
    """The law at ``inputs`` for each draw on its likelihood's scale (:meth:`~bayescale.laws.catalogue.Law.link_fn`: the log
    of a loss, a real target itself, the logit of a unit-interval one): array (draws, points)."""
    with np.errstate(divide="ignore"):
        log_inputs = {n: jnp.asarray(np.log(v)) for n, v in inputs.items()}
    # the inputs are an argument, not constants: one compiled program per law and shapes (laws.catalogue.law_program)
    one = law_program(law, "draws_log_law", lambda: jax.jit(jax.vmap(law.link_fn, in_axes=(0, None))))
    return np.asarray(one({k: jnp.asarray(v) for k, v in params.items()}, log_inputs))


class NoiseTerms(NamedTuple):
    """The predictive of a log-loss at new inputs, per draw and point: ``shift + u + scale·ε``, with ``u ~ N(0,
    run_sd)`` a fresh run effect (``run_sd`` = 0 for a run of the fit) and ε Student-t(``nu``) or Normal (``nu`` None)."""

    shift: np.ndarray
    run_sd: np.ndarray
    scale: np.ndarray
    nu: np.ndarray | None


def noise_terms(result: xr.DataTree, law: Law, log_mu: np.ndarray, x: dict[str, np.ndarray], run: Any = None) -> NoiseTerms:
    """The fit's noise model (:mod:`bayescale.infer.noise`) at new inputs: known runs get their posterior run effect and,
    for ``"ou"``, are conditioned on their last observed checkpoint at or before the prediction."""
    post = result["posterior"].to_dataset()
    noise = Noise.from_attrs(result.attrs)
    par = {n: post[n].values.reshape(-1, 1) for n in attr_json(result, "noise_parameters", [])}
    stats = attr_json(result, "data_statistics", {})
    shape = log_mu.shape
    scale = np.broadcast_to(noise_scale(par["sigma"], log_mu, noise, par.get("kappa"), stats), shape).copy()
    shift = np.zeros(shape)
    run_sd = np.broadcast_to(par["tau"], shape).copy() if noise.run_effect else np.zeros(shape)
    nu = par.get("nu")
    if run is None:
        return _multivariate_t(NoiseTerms(shift, run_sd, scale, nu), noise)
    labels = np.broadcast_to(np.asarray(run, dtype=str), (shape[1],))
    obs = result["observed_data"].to_dataset()
    seen = set(obs["run"].values)
    known = [j for j, r in enumerate(labels) if r in seen]
    if noise.run_effect and known:
        effects = post["run_effect"].values.reshape(shape[0], -1)
        index = {r: i for i, r in enumerate(post["run_effect"]["run"].values)}
        for j in known:
            shift[:, j], run_sd[:, j] = effects[:, index[labels[j]]], 0.0
    if noise.correlation and known:
        const = result["constant_data"].to_dataset()
        t_obs, runs_obs = const[noise.axis].values, obs["run"].values
        cond = []
        for j in known:  # the run's last observed checkpoint at or before the prediction
            mine = np.flatnonzero((runs_obs == labels[j]) & (t_obs <= x[noise.axis][j]))
            if mine.size:
                cond.append((j, mine[np.argmax(t_obs[mine])]))
        if cond:
            js, idx = np.array([c[0] for c in cond]), np.array([c[1] for c in cond])
            at = {n: const[n].values[idx] for n in law.input_names}
            mu_last = draws_log_law(law, {n: post[n].values.reshape(-1) for n in law.parameter_names}, at)
            s_last = noise_scale(par["sigma"], mu_last, noise, par.get("kappa"), stats)
            w_last = (law.target.link(obs["loss"].values[idx])[None, :] - mu_last - shift[:, js]) / s_last
            gap = (np.log(x[noise.axis][js]) - np.log(t_obs[idx]))[None, :]
            shift[:, js] += scale[:, js] * np.exp(-gap / par["ell"]) * w_last
            scale[:, js] *= np.sqrt(-np.expm1(-2 * gap / par["ell"]))
    return _multivariate_t(NoiseTerms(shift, run_sd, scale, nu), noise)


def _multivariate_t(terms: NoiseTerms, noise: Noise) -> NoiseTerms:
    """Collapsed Student-t noise is a multivariate t per run: one latent precision scales the run effect and the
    residual together, so a new run's log-loss residual is t_nu(0, sqrt(tau² + s²)), not Normal(0, tau) + t_nu(0, s).
    A run of the fit keeps its drawn effect and a t_nu innovation (an approximation: given the run's data the exact
    conditional has nu + n degrees of freedom and a run-specific scale)."""
    if not noise.collapses or terms.nu is None:
        return terms
    new = terms.run_sd > 0
    return terms._replace(scale=np.where(new, np.hypot(terms.scale, terms.run_sd), terms.scale),
                          run_sd=np.where(new, 0.0, terms.run_sd))


def numpy_rng(key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded by a JAX key (the same key, the same draws).

    Predictive noise is drawn with NumPy: ``jax.random.t`` runs eagerly here, and JAX compiles its gamma rejection
    sampler again for every new array shape (1-5 s each on a 2-core CPU), while NumPy's needs no compilation."""
    data = key if jnp.issubdtype(jnp.asarray(key).dtype, jnp.unsignedinteger) else jax.random.key_data(key)
    return np.random.default_rng(np.asarray(data, dtype=np.uint32).ravel().tolist())


def standard_noise(rng: np.random.Generator, nu: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-scale residuals of ``shape``: Student-t with ``nu`` (broadcast to ``shape``), or standard normal."""
    return rng.standard_normal(shape) if nu is None else rng.standard_t(np.broadcast_to(nu, shape))


def draw_noise(terms: NoiseTerms, key: jax.Array) -> np.ndarray:
    """One draw of the log-loss residual per (draw, point) from :func:`noise_terms` (NumPy draws: :func:`numpy_rng`)."""
    shape = terms.scale.shape
    rng = numpy_rng(key)
    out = terms.shift + terms.scale * standard_noise(rng, terms.nu, shape)
    if np.any(terms.run_sd > 0):
        out = out + terms.run_sd * rng.standard_normal(shape)
    return out


def log_density(terms: NoiseTerms, log_mu: np.ndarray, y: np.ndarray, target: Target = Target()) -> np.ndarray:
    """log p(y | θ_s) per draw and point, a density of the value itself (the link's Jacobian, 1/y for a loss,
    included); ``log_mu`` and ``terms`` are on the link scale of ``target``. A fresh run effect is integrated out by
    32-node Gauss-Hermite quadrature (exact for Normal noise up to rounding)."""
    import scipy.stats

    log_y = target.link(np.asarray(y, dtype=float))[None, :]
    jacobian = target.log_jacobian(y)[None, :]
    resid = log_y - log_mu - terms.shift

    def base(r):
        z = np.where(terms.scale > 0, r, 0.0)
        if terms.nu is not None:
            return scipy.stats.t.logpdf(z, terms.nu, scale=terms.scale)
        return scipy.stats.norm.logpdf(z, scale=terms.scale)

    if not np.any(terms.run_sd > 0):
        return base(resid) + jacobian
    nodes, weights = np.polynomial.hermite_e.hermegauss(32)  # ∫ f(u) N(u; 0, 1) du ≈ Σ w f(node) / sqrt(2π)
    parts = np.stack([base(resid - terms.run_sd * t) for t in nodes])
    return scipy.special.logsumexp(parts, axis=0, b=(weights / np.sqrt(2 * np.pi))[:, None, None]) + jacobian


@convergence_gate("predict")
def predict(
    result: xr.DataTree,
    *,
    kind: str = "law",
    law: Law | None = None,
    rng_key: int | jax.Array = 0,
    extrapolation_threshold: float = EXTRAPOLATION_THRESHOLD,
    run: Any = None,
    allow_unconverged: bool = False,
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
    run
        ``kind="predictive"`` only: run label(s) of the predictions (scalar or one per prediction). A label of a run
        in the fit uses that run's posterior run effect and, for ``"ou"`` noise, conditions on its last observed
        checkpoint at or before the prediction (the continuation of a partly seen curve). Other labels, and the
        default ``None``, predict new runs: a fresh run effect and the marginal residual.
    extrapolation_threshold
        Decades beyond the observed range of any input past which an
        :class:`~bayescale.results.extrapolation.ExtrapolationWarning` is issued.
    allow_unconverged
        Predict from a fit that did not converge (:func:`bayescale.convergence`), with a
        :class:`~bayescale.infer.diagnostics.ConvergenceWarning`; without it such a fit raises
        :class:`~bayescale.errors.ConvergenceError`.
    **inputs
        Values of every law input (scalars or arrays; broadcast together), e.g. ``N=7e10, D=1.4e12``.

    Returns
    -------
    xarray.Dataset
        ``loss`` over ``(chain, draw, prediction)`` with the inputs as coordinates along ``prediction``, and
        ``extrapolation_<input>`` coordinates: decades beyond the fitted range of each input (0 inside it).
    """
    require(result, "predict", ("posterior",))
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: must be one of {list(KINDS)}")
    law = law_of(result, law)
    x = _broadcast_inputs(law, inputs)
    post = result["posterior"].to_dataset()
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    params = {n: post[n].values.reshape(-1) for n in law.parameter_names}
    log_mu = draws_log_law(law, params, x)
    if not np.all(np.isfinite(log_mu)):
        bad = np.flatnonzero(~np.all(np.isfinite(log_mu), axis=0))
        at = ", ".join(f"{n}={x[n][bad[0]]:g}" for n in law.input_names)
        raise ArgumentError(f"law {law.id!r} has no finite loss at {at} ({bad.size} of {log_mu.shape[1]} inputs): an "
                            "input of 0 or one far outside the fitted range; inputs must be > 0 for this law")
    if kind == "predictive":
        log_mu = log_mu + draw_noise(noise_terms(result, law, log_mu, x, run), as_key(rng_key)[0])
    elif run is not None:
        raise ValueError("run= applies to kind='predictive' (the law curve is the same for every run)")
    # a predictive draw from heavy Student-t tails (nu near 1) can lie hundreds of e-folds out: its loss is +inf, the
    # honest value of such a draw (quantiles and bands are unaffected), not a numerical accident to warn about
    with np.errstate(over="ignore"):
        loss = law.target.inverse(log_mu).reshape(chains, draws, -1)
    decades = extrapolation(result, **x) if "constant_data" in result.children else {}
    warn_extrapolation(decades, extrapolation_threshold, stacklevel=4)  # 4: the convergence gate adds a frame
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
