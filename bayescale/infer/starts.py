"""Where NUTS chains start: a fast multi-start MAP, then draws around the best mode found.

Chains that start at the prior median (numpyro's ``init_to_median``) all begin at one point that may lie far from the
posterior, and for a law with several basins (the 9-parameter Farseer law) warmup can take different chains to
different basins: R-hat then reports the trouble but not its cause. Here the posterior mode in NUTS's unconstrained
space is found from a few starts (the prior median and prior draws) with scipy's L-BFGS-B on the model's jit-compiled
potential and gradient (:func:`bayescale.validation.baseline.minimise`, shared with the classic fit), and every chain starts at
an independent draw from the Laplace approximation around the best optimum (the inverse Hessian by central differences
of the compiled gradient). Optima farther apart than :data:`MODE_SEPARATION` Laplace standard deviations count as
distinct modes: the result records them (``attrs["init"]``) and :func:`bayescale.results.summary` reports them, because the
chains, all started in the best basin, would not show them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.distributions.distribution import validation_enabled
from numpyro.infer import init_to_median, init_to_sample
from numpyro.infer.util import initialize_model, potential_energy

__all__ = ["INITS", "Start", "find_start", "describe_modes", "median_starts"]

from bayescale.infer.settings import INITS  # noqa: E402  (the initialisation methods, a field of bayescale.NUTS)

#: Two optima are one mode when every coordinate differs by less than this many Laplace standard deviations (of the
#: best mode): farther than 3 sd in some direction is outside the Laplace approximation's 99.7% range of that
#: coordinate. Log densities are not compared: along a flat direction (a Student-t's nu) L-BFGS-B stops at different
#: points of one mode whose log densities differ by a nat or two.
MODE_SEPARATION = 3.0

#: A mode counts for the multimodality report when its log density is within this many nats of the best: at equal
#: curvature a mode 10 nats lower holds e^-10 (5e-5) of the best's posterior mass, below what 4,000 draws resolve.
#: Lower optima are still listed in the record.
MODE_RELEVANCE = 10.0

#: L-BFGS-B settings of the start search: looser than the classic fit's (a start only has to be near the mode), with
#: an iteration cap that bounds its cost on a bad start.
_OPTIONS = {"maxiter": 300, "maxfun": 600, "ftol": 1e-10, "gtol": 1e-5}

#: Above this many unconstrained dimensions (curve models with many run effects) the dense inverse Hessian is not
#: formed; chains start at the mode plus a small isotropic jitter instead.
_DENSE_LIMIT = 400
_FALLBACK_JITTER = 0.05


@dataclass(frozen=True)
class Start:
    """Chain starting points (unconstrained, leading chain axis) and what the search found; ``covariance``: the
    Laplace covariance at the best optimum over the unconstrained parameters, flattened in the order of
    ``jax.flatten_util.ravel_pytree`` (sites sorted by name), or ``None`` where it was not computed."""

    init_params: Any
    record: dict
    covariance: np.ndarray | None = None


def find_start(
    model,
    model_args: tuple,
    model_kwargs: Mapping[str, Any],
    *,
    rng_key: jax.Array,
    num_chains: int,
    num_starts: int = 4,
    labels: Mapping[str, str] | None = None,
    traced_args: bool = True,
) -> Start:
    """Multi-start MAP in the unconstrained space, then ``num_chains`` Laplace draws around the best optimum.

    The starts are found with the potential's value checked and its gradient not (as in :func:`median_starts`); the
    optimiser's objective rejects points whose gradient is not finite.

    Parameters
    ----------
    model, model_args, model_kwargs
        The numpyro model and its arguments (observed data included), as NUTS will run it.
    num_starts
        Optimiser starts: the prior median and ``num_starts - 1`` prior draws.
    labels
        Sampled site → the parameter it stands for (a centred amplitude's auxiliary site → ``A``); such sites are left
        out of the recorded optima, which hold the parameter itself.
    traced_args
        The model's arguments are arguments of the compiled objective (data of the same shapes reuse it), as for
        :func:`bayescale.infer.fit.nuts_mcmc`; ``False`` for a model that reads an argument in Python (a count, a
        flag), whose objective keeps them built in.
    """
    from bayescale.validation.baseline import minimise

    k_med, k_prior, k_jit = jax.random.split(rng_key, 3)
    info = initialize_model(k_med, model, model_args=model_args, model_kwargs=dict(model_kwargs),
                            init_strategy=init_to_median, validate_grad=False)
    flat0, unravel = ravel_pytree(info.param_info.z)
    starts = [np.asarray(flat0)]
    kwargs = dict(model_kwargs)
    if traced_args:  # the arguments enter the compiled objective as arguments: data of the same shapes reuse it
        traced = jax.jit(jax.value_and_grad(lambda x, args, kw: potential_energy(model, args, kw, unravel(x))))

        def value_and_grad(x):
            return traced(x, model_args, kwargs)
    else:
        value_and_grad = jax.jit(jax.value_and_grad(lambda x: potential_energy(model, model_args, kwargs, unravel(x))))

    def fun(x: np.ndarray, _w: Any) -> tuple[float, np.ndarray]:
        v, g = value_and_grad(jnp.asarray(x))
        v, g = float(v), np.asarray(g, dtype=float)
        if not np.isfinite(v) or not np.all(np.isfinite(g)):
            return 1e300, np.zeros_like(g)  # outside the support or overflow: L-BFGS-B backs off
        return v, g

    if num_starts > 1:
        # prior draws one key at a time, eagerly: the model's operations were compiled by the call above (same
        # shapes), whereas one vmapped call over the keys compiles a program of its own (seconds per law and shape,
        # more than the eager draws take). Eagerly, numpyro checks distribution arguments as they are made and raises
        # on an extreme draw (a loss mean of exactly 0 or 1 under a logit link); with the check off such a draw has
        # a non-finite potential and numpyro draws again, as it does in the vmapped call.
        with validation_enabled(False):
            for k in jax.random.split(k_prior, num_starts - 1):
                z = initialize_model(k, model, model_args=model_args, model_kwargs=kwargs,
                                     init_strategy=init_to_sample, validate_grad=False).param_info.z
                starts.append(np.asarray(ravel_pytree(z)[0]))

    sols, vals = minimise(fun, np.asarray(starts), None, options=_OPTIONS)
    order = np.argsort(vals)
    best = order[0]
    dim = flat0.size
    cov = _laplace_covariance(fun, sols[best]) if dim <= _DENSE_LIMIT else None
    sd = np.sqrt(np.clip(np.diag(cov), 1e-12, None)) if cov is not None else np.full(dim, _FALLBACK_JITTER)

    modes: list[int] = []
    for i in order:
        if not np.isfinite(vals[i]) or vals[i] >= 1e299:
            continue
        if not any(np.all(np.abs(sols[i] - sols[j]) < MODE_SEPARATION * sd) for j in modes):
            modes.append(int(i))

    eps = np.asarray(jax.random.normal(k_jit, (num_chains, dim)))
    if cov is not None:
        lam, vec = np.linalg.eigh(cov)
        draws = sols[best] + (eps * np.sqrt(np.maximum(lam, 0.0))) @ vec.T
    else:
        draws = sols[best] + eps * _FALLBACK_JITTER
    # a Laplace draw may land where the potential is not finite (a bound of the prior): those chains start at the mode
    ok = np.array([fun(d, None)[0] < 1e299 for d in draws])  # fun returns 1e300 where the potential is not finite
    draws[~ok] = sols[best]
    init_params = jax.vmap(unravel)(jnp.asarray(draws))

    postprocess = info.postprocess_fn
    skip = set(labels or {})  # sampled stand-ins (centred amplitudes): their parameters are deterministic sites

    def constrained(x: np.ndarray) -> dict[str, float]:
        values = postprocess(unravel(jnp.asarray(x)))
        return {name: float(v) for name, v in values.items() if np.ndim(v) == 0 and name not in skip}

    record = dict(
        method="map",
        num_starts=len(starts),
        optimizer="L-BFGS-B",
        options=_OPTIONS,
        laplace="dense" if cov is not None else f"isotropic {_FALLBACK_JITTER}",
        starts_at_best=int(np.sum(np.all(np.abs(sols - sols[best]) < MODE_SEPARATION * sd, axis=1))),
        modes=[dict(log_density=-float(vals[i]), values=constrained(sols[i])) for i in modes],
        multimodal=bool(sum(vals[i] - vals[best] <= MODE_RELEVANCE for i in modes) > 1),
    )
    return Start(init_params=init_params, record=record, covariance=cov)


def median_starts(model, model_args: tuple, model_kwargs: Mapping[str, Any], *, rng_key: jax.Array,
                  num_chains: int) -> Any:
    """The unconstrained start of each chain (leading chain axis) that numpyro's NUTS would find inside the sampler
    for ``init_strategy=init_to_median``: the same keys (``rng_key`` split per chain as ``MCMC.run`` splits it, then
    as ``HMC.init`` splits each chain's), the same search (:func:`numpyro.infer.util.initialize_model`: the median of
    prior draws, other points where the potential is not finite), run here, outside the compiled sampler. Unlike
    numpyro's, the search checks the potential's value and not its gradient (``validate_grad=False``): the gradient
    costs an eager reverse pass, traced, lowered and compiled for every new model (about 0.05-0.5 s a chain), and a
    start whose potential is finite but whose gradient is not (an exact boundary of a prior) shows as a stuck chain
    in the fit's diagnostics. The starts are numpyro's wherever its gradient is finite.

    Given its starts, the sampler's program leaves the search out: XLA compiles it in about 2 s instead of 6 s for a
    five-parameter law on CPU (docs/performance.md), and it is the program of an ``init="map"`` fit of the same model
    and shapes, so the two share it. The search itself runs eagerly, about 0.1 s a chain."""
    chain_keys = jax.random.split(rng_key, num_chains) if num_chains > 1 else rng_key[None]
    starts = [initialize_model(jax.random.split(k)[1], model, model_args=model_args,
                               model_kwargs=dict(model_kwargs), dynamic_args=True,
                               init_strategy=init_to_median, validate_grad=False).param_info.z for k in chain_keys]
    return jax.tree_util.tree_map(lambda *z: jnp.stack(z), *starts)


def _laplace_covariance(fun, x: np.ndarray, step: float = 1e-5) -> np.ndarray | None:
    """Inverse of the potential's Hessian at ``x`` by central differences of the (already compiled) gradient: 2·dim
    gradient calls and no new compilation. Eigenvalues below 1e-8 (flat or non-convex directions) are raised to it, so
    the covariance is always positive definite; ``None`` if the gradient is not finite around ``x``. L-BFGS-B's own
    inverse-Hessian estimate is not used: after a few updates it can be off by orders of magnitude."""
    dim = x.size
    hess = np.empty((dim, dim))
    for j in range(dim):
        e = np.zeros(dim)
        e[j] = step * max(1.0, abs(x[j]))
        hess[:, j] = (fun(x + e, None)[1] - fun(x - e, None)[1]) / (2 * e[j])
    if not np.all(np.isfinite(hess)):
        return None
    lam, vec = np.linalg.eigh(0.5 * (hess + hess.T))
    return (vec / np.maximum(lam, 1e-8)) @ vec.T


def describe_modes(record: Mapping[str, Any] | None) -> str | None:
    """One line on multimodality for :func:`bayescale.results.summary`: ``None`` unless the start search found more than one
    mode within :data:`MODE_RELEVANCE` nats of the best."""
    if not record or not record.get("multimodal"):
        return None
    modes = [m for m in record["modes"] if record["modes"][0]["log_density"] - m["log_density"] <= MODE_RELEVANCE]
    gaps = ", ".join(f"{modes[0]['log_density'] - m['log_density']:.3g}" for m in modes[1:])
    return (f"multimodal: {record['num_starts']} optimiser starts reached {len(modes)} distinct modes within "
            f"{MODE_RELEVANCE:g} nats (log density below the best by {gaps}); chains started around the best, so "
            "R-hat cannot show the others (attrs['init'] lists every optimum found)")
