"""Prior declarations: short expressions such as ``"LogNormal(log(400), 1.5)"`` or ``"Uniform(0, min_loss)"``.

A prior is written as one call of a whitelisted numpyro distribution. Its arguments are arithmetic over numbers,
``log``/``exp``/``sqrt`` and *data statistics* (:data:`DATA_STATISTICS`), which are filled in from the validated
run table when the model is built; that is how a law file states "the irreducible loss lies below the smallest
observed loss" without knowing the data.

A distribution bounded below may be *shifted* by a number: ``"1 + Gamma(2, 0.1)"`` is the law of 1 + X with
X ~ Gamma(2, 0.1), supported on (1, inf). It bounds a parameter away from a value where the model breaks down (the
Student-t tail index near 0, :data:`bayescale.infer.model.NOISE_PRIORS`) without a truncated distribution, whose
sampling would need the base's inverse CDF (numpyro's Gamma has none without tensorflow-probability).

NUTS samples every parameter in numpyro's unconstrained space of its prior's support: a ``LogNormal`` amplitude is
sampled as its logarithm, a ``Uniform(0, min_loss)`` irreducible loss on the logit scale, a shifted Gamma as the
logarithm of its excess over the shift.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.transforms import AffineTransform

from bayescale.laws.formula import BinOp, Call, FormulaError, check_arity, symbols_of, evaluate_array, evaluate_number, parse_expression

__all__ = ["Prior", "parse_prior", "DISTRIBUTIONS", "DATA_STATISTICS", "SHIFTABLE", "Gamma", "ERLANG_MAX_SHAPE"]

#: Largest whole-number shape for which :class:`Gamma` draws a sum of exponentials (that many uniforms per draw).
ERLANG_MAX_SHAPE = 16


class Gamma(dist.Gamma):
    """numpyro's Gamma (the same density, support and arguments) whose draws, when the shape is a known whole number
    k <= :data:`ERLANG_MAX_SHAPE` (the default Student-t prior ``1 + Gamma(2, 0.1)`` has k = 2), are sums of k standard
    exponentials over the rate: exact (the Erlang distribution), and a handful of operations. JAX's gamma sampler is a
    rejection loop per element that XLA compiles slowly: about 1 s more for every program that draws from the prior on
    CPU (the prior predictive, the chains' start search, the prior draws of a fit; docs/performance.md). Any other
    shape, or one only known inside a compiled program, is drawn by numpyro's sampler."""

    def sample(self, key, sample_shape=()):
        k = _whole_number(self.concentration)
        if k is None:
            return super().sample(key, sample_shape)
        shape = sample_shape + self.batch_shape + self.event_shape
        dtype = jnp.result_type(float)
        u = jax.random.uniform(key, (k, *shape), dtype=dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)
        return -jnp.sum(jnp.log(u), axis=0) / self.rate


def _whole_number(value) -> int | None:
    """``value`` as an int when it is one known number (every element equal) in 1..ERLANG_MAX_SHAPE, else ``None``."""
    if isinstance(value, jax.core.Tracer):
        return None
    a = np.asarray(value)
    if a.size == 0:
        return None
    v = float(a.flat[0])
    if not (np.all(a == v) and v.is_integer() and 1 <= v <= ERLANG_MAX_SHAPE):
        return None
    return int(v)

#: Distributions a prior may use, with the names of their arguments in order.
DISTRIBUTIONS: dict[str, tuple[type, tuple[str, ...]]] = {
    "Normal": (dist.Normal, ("loc", "scale")),
    "LogNormal": (dist.LogNormal, ("loc", "scale")),
    "HalfNormal": (dist.HalfNormal, ("scale",)),
    "HalfCauchy": (dist.HalfCauchy, ("scale",)),
    "Uniform": (dist.Uniform, ("low", "high")),
    "TruncatedNormal": (dist.TruncatedNormal, ("loc", "scale", "low", "high")),
    "Exponential": (dist.Exponential, ("rate",)),
    "Gamma": (Gamma, ("concentration", "rate")),
    "Beta": (dist.Beta, ("concentration1", "concentration0")),
    "StudentT": (dist.StudentT, ("df", "loc", "scale")),
}

#: Names a prior expression may use for quantities of the data.
DATA_STATISTICS: dict[str, str] = {
    "min_loss": "smallest observed loss",
    "max_loss": "largest observed loss",
}

_NUMBER_FUNCTIONS = {"exp": 1, "log": 1, "sqrt": 1}  # name -> arity

#: Families whose support is bounded below (at 0), the only ones a shift ``c + Family(...)`` applies to: shifting a
#: distribution on the whole line is a change of its location argument, and one on an interval of its bounds.
SHIFTABLE = ("Gamma", "LogNormal", "HalfNormal", "HalfCauchy", "Exponential")


@dataclass(frozen=True)
class Prior:
    """A parsed prior: distribution name and keyword arguments as expressions (not yet evaluated)."""

    text: str
    family: str
    arguments: tuple[tuple[str, object], ...]
    #: ``c`` of a shifted prior ``c + Family(...)`` as an expression, or ``None``.
    shift: object = None

    def distribution(self, statistics: Mapping[str, float]) -> dist.Distribution:
        """Build the numpyro distribution, filling data statistics from ``statistics``."""
        kwargs = {name: evaluate_number(node, statistics) for name, node in self.arguments}
        if self.shift is not None:
            kwargs["shift"] = evaluate_number(self.shift, statistics)
        bad = {k: v for k, v in kwargs.items() if not math.isfinite(v)}
        if bad:
            raise FormulaError(f"prior {self.text!r} evaluates to non-finite arguments {bad}")
        if "low" in kwargs and "high" in kwargs and not kwargs["low"] < kwargs["high"]:
            # numpyro does not check this (Uniform's bounds are "dependent" constraints): a reversed interval
            # would silently give a prior with no valid support.
            raise FormulaError(f"prior {self.text!r} needs low < high, got {kwargs}")
        cls, _ = DISTRIBUTIONS[self.family]
        shift = kwargs.pop("shift", None)
        try:
            return _shifted(cls(**kwargs), shift)
        except ValueError as err:
            raise FormulaError(f"prior {self.text!r} has invalid arguments {kwargs}: {err}") from None

    def traced_distribution(self, statistics: Mapping[str, object]) -> dist.Distribution:
        """The distribution with data statistics given as JAX values (traced per fit in a batched fit), unchecked:
        each fit's prior is checked with :meth:`distribution` on its own statistics first."""
        cls, _ = DISTRIBUTIONS[self.family]
        base = cls(**{name: evaluate_array(node, statistics) for name, node in self.arguments})
        return _shifted(base, None if self.shift is None else evaluate_array(self.shift, statistics))

    def uses_data(self) -> bool:
        return any(s in self.text for s in DATA_STATISTICS)


def _shifted(base: dist.Distribution, shift) -> dist.Distribution:
    """``base`` moved right by ``shift`` (``None``: unchanged); the support moves with it, so NUTS samples the excess
    over the shift in the base's unconstrained space."""
    if shift is None:
        return base
    return dist.TransformedDistribution(base, AffineTransform(shift, 1.0, domain=base.support))


def _split_shift(node, text: str):
    """(shift expression or None, distribution call) of ``c + Family(...)`` / ``Family(...) + c``."""
    if not (isinstance(node, BinOp) and node.op == "+"):
        return None, node
    calls = [isinstance(side, Call) and side.func in DISTRIBUTIONS for side in (node.left, node.right)]
    if calls.count(True) != 1:
        return None, node  # refused below as "must be a call of one distribution"
    call, shift = (node.left, node.right) if calls[0] else (node.right, node.left)
    if call.func not in SHIFTABLE:
        raise FormulaError(f"prior {text!r}: only a distribution bounded below can be shifted, one of "
                           f"{list(SHIFTABLE)}; move {call.func}'s own location or bounds instead")
    return shift, call


def parse_prior(text: str, statistics: Iterable[str] = ()) -> Prior:
    """Parse a prior expression; ``statistics`` names data statistics it may use beyond :data:`DATA_STATISTICS`
    (those a declared model states, :mod:`bayescale.infer.declared`).

    Examples
    --------
    >>> parse_prior("Uniform(0, min_loss)").family
    'Uniform'
    >>> parse_prior("1 + Gamma(2, 0.1)").distribution({}).support
    GreaterThan(lower_bound=1.0)
    """
    node = parse_expression(
        text,
        names=set(DATA_STATISTICS) | set(statistics),
        functions=set(DISTRIBUTIONS) | set(_NUMBER_FUNCTIONS),
        what="prior",
    )
    shift, node = _split_shift(node, text)
    if not isinstance(node, Call) or node.func not in DISTRIBUTIONS:
        raise FormulaError(
            f"prior {text!r} must be a call of one distribution, one of {sorted(DISTRIBUTIONS)}"
        )
    cls, names = DISTRIBUTIONS[node.func]
    if len(node.args) > len(names):
        raise FormulaError(f"{node.func} takes at most {len(names)} arguments {list(names)} in prior {text!r}")
    arguments = list(zip(names, node.args))
    for key, value in node.keywords:
        if key not in names:
            raise FormulaError(f"{node.func} has no argument {key!r}; it must be one of {list(names)}")
        if key in dict(arguments):
            raise FormulaError(f"{node.func} got argument {key!r} twice in prior {text!r}")
        arguments.append((key, value))
    given = [k for k, _ in arguments]
    missing = [n for n in names if n not in given]
    if missing:
        raise FormulaError(f"prior {text!r} is missing arguments {missing} of {node.func}{list(names)}")
    for value in [v for _, v in arguments] + ([shift] if shift is not None else []):
        _, called = symbols_of(value)
        if called & set(DISTRIBUTIONS):
            raise FormulaError(f"prior {text!r}: distributions cannot be nested")
        check_arity(value, _NUMBER_FUNCTIONS, text)
    return Prior(text=text.strip(), family=node.func, arguments=tuple(arguments), shift=shift)

