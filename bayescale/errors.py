"""The error types of bayescale: one base class and one family per kind of user mistake.

Every error bayescale raises on purpose derives from :class:`BayescaleError`, so a script (and the command line)
can tell a user mistake from a bug with one ``except`` clause. Each family also derives from the built-in exception
that older code caught (``ValueError`` for data, laws and arguments; ``OSError`` for files; ``RuntimeError`` for
sampler trouble), so ``except ValueError`` clauses written before these types existed keep working.

==================  ======================================  =============================================
type                raised for                              also a
==================  ======================================  =============================================
DataError           a run table that cannot be used         ValueError
LawError            a law file missing, malformed, unused   ValueError
ArgumentError       a bad argument to a public function     ValueError
ResultError         a read-out a result cannot serve        ValueError
                    (its kind, or a group it lacks)
FileError           a result file: unreadable, corrupt,     OSError
                    unwritable destination, clobbering
ConvergenceError    acting on a fit that did not converge   RuntimeError
==================  ======================================  =============================================

:class:`bayescale.SamplingError` (``fit(..., strict=True)``) is a :class:`BayescaleError` and ``RuntimeError`` too.
"""

from __future__ import annotations

__all__ = ["BayescaleError", "DataError", "LawError", "ArgumentError", "ResultError", "FileError", "ConvergenceError",
           "check_rng_key"]


class BayescaleError(Exception):
    """Base of every error bayescale raises on purpose (a user mistake or an untrustworthy result, not a bug)."""


class DataError(BayescaleError, ValueError):
    """A run table that cannot be used as given."""


class LawError(BayescaleError, ValueError):
    """A law file that is missing, malformed or inconsistent."""


class ArgumentError(BayescaleError, ValueError):
    """An argument of a public function with the wrong type or an impossible value."""


class ResultError(BayescaleError, ValueError):
    """A read-out asked of a result that cannot serve it: the wrong kind of result (:mod:`bayescale.results.contract`), or one
    that lacks the group the read-out needs."""


class FileError(BayescaleError, OSError):
    """A result file that cannot be read (missing, truncated, corrupt, not a result) or a destination that cannot or
    must not be written (unwritable, a folder, one of the inputs)."""


class ConvergenceError(BayescaleError, RuntimeError):
    """A plan, prediction, comparison or ranking asked of a fit whose sampler did not converge.

    Pass ``allow_unconverged=True`` (``--allow-unconverged`` on the command line) to get the numbers anyway; they
    then carry a warning."""


def check_rng_key(rng_key) -> None:
    """Raise :class:`ArgumentError` unless ``rng_key`` is an int seed or a JAX PRNG key (raw uint32 pair or typed)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    if isinstance(rng_key, (int, np.integer)) and not isinstance(rng_key, (bool, np.bool_)):
        return
    if isinstance(rng_key, (jax.Array, np.ndarray)):
        dtype = rng_key.dtype
        if jnp.issubdtype(dtype, jax.dtypes.prng_key) or (dtype == np.uint32 and rng_key.shape[-1:] == (2,)):
            return
    raise ArgumentError(f"rng_key must be an int seed or a jax.random key, got {rng_key!r} ({type(rng_key).__name__})")
