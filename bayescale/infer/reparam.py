"""Power-law amplitudes sampled at the data's centre: the same prior, a posterior NUTS crosses in few steps.

For a term ``A / N**alpha`` the data fix the term's value near the middle of the observed range of ``log N``, not at
``N = 1`` where ``A`` lives: ``log A`` and ``alpha`` are then tied along a ridge of slope ``mean(log N)`` (about 20 for
model sizes), which NUTS crosses in many small leapfrog steps even with a dense mass matrix (the ridge is straight only
in the limit; its curvature changes with position). Sampling

    a = log A + p · c,   with the term written ``A · base**p`` (``p = -alpha``), ``c = mean(log base)`` over the data,

in place of ``A`` removes the ridge: ``a`` is the log of the term at the data's geometric centre. The change of
variables ``(log A, θ) → (a, θ)`` is a shift of ``log A`` by an amount that depends only on the other parameters θ, so
its Jacobian is 1 and ``a | θ`` has the law of ``log A`` under the declared prior, shifted by ``p · c``: the declared
prior on ``(A, θ)`` is kept exactly, for any prior family with positive support and any fixed centre ``c``
(:func:`centred_distribution`). ``A = exp(a − p · c)`` is recorded as a deterministic site, so results hold ``A`` with
its usual meaning.

The centre only has to be a fixed number per fit: it is ``mean(log base)`` over the (unmasked) points, with any
parameter inside the base (the offset ``t1`` of ``(N + t1)**alpha``) at its prior median, and 0 (no centring) where that
is not finite. In a batched fit each fit's centre is computed from its own points, traced.

References
----------
Papaspiliopoulos, Roberts, Sköld 2007, "A general framework for the parametrization of hierarchical models",
Statistical Science 22(1) (centred vs non-centred parameterisations); the same shift of the intercept to the mean of the
covariate is the classic decorrelation of slope and intercept in regression.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import AffineTransform, ExpTransform

from bayescale.infer.noise import level_centre
from bayescale.laws.formula import PowerTerm, symbols_of, compile_formula, compile_log_formula, power_terms, unparse
from bayescale.laws.priors import Prior

__all__ = ["Centring", "plan_centring", "centres_of", "centred_distribution", "sample_parameters", "auxiliary_name",
           "describe_centring", "log_support"]

#: Suffix of the sampled site that stands for a centred amplitude (kept out of the result's posterior group).
AUXILIARY_SUFFIX = "__centred"

#: Prior families whose support is positive and maps to a log-support numpyro can bound.
_POSITIVE_FAMILIES = {"LogNormal", "HalfNormal", "HalfCauchy", "Exponential", "Gamma", "Beta", "Uniform",
                      "TruncatedNormal"}


def auxiliary_name(parameter: str) -> str:
    """Name of the sampled site of a centred amplitude ``parameter``."""
    return parameter + AUXILIARY_SUFFIX


@dataclass(frozen=True)
class Centring:
    """The power-law terms of a law whose amplitudes are sampled at the data's centre, and how to evaluate them."""

    terms: tuple[PowerTerm, ...]
    positive: frozenset[str]
    inputs: frozenset[str]

    @property
    def amplitudes(self) -> tuple[str, ...]:
        return tuple(t.amplitude for t in self.terms)

    def power(self, term: PowerTerm, params: Mapping[str, Any]) -> Any:
        return compile_formula(term.power, set(self.positive), set())(params, {})

    def log_base(self, term: PowerTerm, params: Mapping[str, Any], log_inputs: Mapping[str, Any]) -> Any:
        return compile_log_formula(term.base, set(self.positive), set(self.inputs))(params, log_inputs)


def _centrable_prior(prior: Prior) -> bool:
    from bayescale.laws.catalogue import positive_support

    return prior.family in _POSITIVE_FAMILIES and positive_support(prior)


def plan_centring(law: Any, priors: Mapping[str, Prior]) -> Centring | None:
    """The terms of ``law`` to centre (``None`` when there are none, or the law has no formula tree).

    One term per amplitude, the first in reading order. A term is left out when its amplitude's prior does not have
    positive support, or when its base or power uses an amplitude already centred (or the other way round): the
    change of variables must shift each amplitude by an amount that depends on parameters sampled before it.
    """
    if getattr(law, "expression", None) is None:
        return None
    names = set(law.parameter_names)
    chosen: list[PowerTerm] = []
    for term in power_terms(law.expression, names, set(law.input_names)):
        used = symbols_of(term.base)[0] | symbols_of(term.power)[0]
        amps = {t.amplitude for t in chosen}
        used_by_chosen = set().union(*(symbols_of(t.base)[0] | symbols_of(t.power)[0] for t in chosen)) if chosen else set()
        if (term.amplitude in amps or used & amps or term.amplitude in used_by_chosen
                or not _centrable_prior(priors[term.amplitude])):
            continue
        chosen.append(term)
    if not chosen:
        return None
    from bayescale.laws.catalogue import positive_parameters

    return Centring(tuple(chosen), frozenset(positive_parameters(law.parameters)), frozenset(law.input_names))


def _reference_values(centring: Centring, priors: Mapping[str, Prior], statistics: Mapping[str, float]) -> dict:
    """Prior medians of the parameters inside the bases (offsets), from 2001 draws with a fixed key: the centre only
    needs to be a fixed number near the data, not an exact median."""
    needed = sorted(set().union(*(symbols_of(t.base)[0] for t in centring.terms)) - centring.inputs)
    out = {}
    for i, name in enumerate(needed):
        draws = priors[name].distribution(statistics).sample(jax.random.PRNGKey(i), (2001,))
        out[name] = float(np.median(np.asarray(draws)))
    return out


def centres_of(
    centring: Centring,
    log_inputs: Mapping[str, Any],
    priors: Mapping[str, Prior],
    statistics: Mapping[str, float],
    mask: Any = None,
) -> dict[str, Any]:
    """Centre ``c`` of each centred amplitude: the mean of ``log base`` over the points (those where ``mask`` is true),
    0 where it is not finite. Plain floats for plain inputs; traced values inside a batched fit."""
    reference = _reference_values(centring, priors, statistics)
    out = {}
    for term in centring.terms:
        shape = jnp.shape(next(iter(log_inputs.values())))
        c = level_centre(jnp.broadcast_to(centring.log_base(term, reference, log_inputs), shape), mask)
        c = jnp.where(jnp.isfinite(c), c, 0.0)
        out[term.amplitude] = c if isinstance(c, jax.core.Tracer) else float(c)
    return out


def log_support(support: constraints.Constraint) -> constraints.Constraint:
    """The support of ``log X`` for a positive support of ``X``."""
    if isinstance(support, constraints._Interval):
        low, high = support.lower_bound, support.upper_bound
        if isinstance(low, (int, float)) and low == 0:
            return constraints.less_than(jnp.log(high))
        return constraints.interval(jnp.log(low), jnp.log(high))
    if isinstance(support, (constraints._GreaterThan, constraints._GreaterThanEq)):
        low = support.lower_bound
        if isinstance(low, (int, float)) and low == 0:
            return constraints.real
        return constraints.greater_than(jnp.log(low))
    raise ValueError(f"no log-support for {support}")


def centred_distribution(prior: dist.Distribution, shift: Any) -> dist.Distribution:
    """The law of ``log X + shift`` for ``X ~ prior`` (positive support): the prior of a centred amplitude.

    LogNormal(μ, s) gives Normal(μ + shift, s) exactly; any other positive prior goes through numpyro transforms
    (log, then a unit shift), with the support carried along so that bounded priors stay bounded."""
    if isinstance(prior, dist.LogNormal):
        return dist.Normal(prior.loc + shift, prior.scale)
    support = log_support(prior.support)
    return dist.TransformedDistribution(
        prior, [ExpTransform(domain=support).inv, AffineTransform(shift, 1.0, domain=support)]
    )


def sample_parameters(names: tuple[str, ...], dists: Mapping[str, dist.Distribution], centring: Centring | None,
                      centres: Mapping[str, Any] | None) -> dict[str, Any]:
    """Sample the law's parameters inside a numpyro model: the others first, then each centred amplitude ``A`` as
    ``A__centred ~`` :func:`centred_distribution` and ``A = exp(a − p · c)`` as a deterministic site."""
    amplitudes = () if centring is None or centres is None else centring.amplitudes
    params = {n: numpyro.sample(n, dists[n]) for n in names if n not in amplitudes}
    for term in centring.terms if amplitudes else ():
        shift = centring.power(term, params) * centres[term.amplitude]
        a = numpyro.sample(auxiliary_name(term.amplitude), centred_distribution(dists[term.amplitude], shift))
        params[term.amplitude] = numpyro.deterministic(term.amplitude, jnp.exp(a - shift))
    return {n: params[n] for n in names}


def describe_centring(centring: Centring | None, centres: Mapping[str, Any] | None) -> str:
    """JSON for the result's ``attrs["centred"]``: each centred amplitude with its base, power and centre (``None``
    where the centres differ per fit: a batched fit records them in ``attrs["centres"]``)."""
    if centring is None:
        return json.dumps({})
    out = {}
    for t in centring.terms:
        c = None if centres is None else centres[t.amplitude]
        out[t.amplitude] = dict(base=unparse(t.base), power=unparse(t.power),
                                centre=None if c is None or isinstance(c, jax.core.Tracer) else float(c))
    return json.dumps(out)
