"""Process-wide JAX settings made on ``import bayescale``, each overridable from the environment.

- float64 (``jax_enable_x64``): scaling-law posteriors multiply amplitudes of 1e3-1e14 by inputs of 1e7-1e13; float32
  loses the digits that separate competing fits (docs/performance.md measures where float32 is safe).
  ``BAYESCALE_X64=0`` leaves JAX in float32 (for accelerators where float64 is slow; see the measured caveats).
- CPU host devices: on CPU, XLA exposes one device unless told otherwise, so chains can only run vectorised (in
  lockstep: every step waits for the deepest tree) or one after another. bayescale asks XLA for
  ``max(4, min(cpu_count, 16))`` host devices so that ``fit`` runs one chain per device (``chain_method="auto"``),
  about twice as fast on a 2-core machine (docs/performance.md). It only takes effect if set before JAX starts its
  CPU backend, so it is skipped when the user already chose (``XLA_FLAGS`` has a device count) and when
  ``BAYESCALE_HOST_DEVICES`` is set (``1`` turns it off).
- Persistent compilation cache: compiled samplers are written to ``BAYESCALE_CACHE_DIR`` (default
  ``~/.cache/bayescale/jax``; empty turns it off), so a second fit of the same law, data shape and settings, in any
  process, skips XLA compilation. Skipped when the user configured ``jax_compilation_cache_dir`` themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

_DEVICE_FLAG = "--xla_force_host_platform_device_count"

#: Compilations shorter than this are not written to the persistent cache (JAX's own default is 1 s, which would
#: leave out the predictive and log-likelihood programs of a fit).
CACHE_MIN_COMPILE_SECONDS = 0.3


def host_device_count() -> int:
    """The number of CPU host devices bayescale asks for: ``BAYESCALE_HOST_DEVICES`` or max(4, min(cores, 16))."""
    env = os.environ.get("BAYESCALE_HOST_DEVICES")
    if env is not None:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"BAYESCALE_HOST_DEVICES must be an integer, got {env!r}") from None
        if value < 1:
            raise ValueError(f"BAYESCALE_HOST_DEVICES must be >= 1, got {value}")
        return value
    return max(4, min(os.cpu_count() or 1, 16))


def x64_from_env() -> bool:
    """float64 unless ``BAYESCALE_X64=0``."""
    value = os.environ.get("BAYESCALE_X64", "1")
    if value not in ("0", "1"):
        raise ValueError(f"BAYESCALE_X64 must be 0 or 1, got {value!r}")
    return value == "1"


def _backends_started() -> bool:
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", None))


def configure() -> None:
    import jax

    jax.config.update("jax_enable_x64", x64_from_env())

    flags = os.environ.get("XLA_FLAGS", "")
    count = host_device_count()
    if _DEVICE_FLAG not in flags and count > 1 and not _backends_started():
        os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={count}".strip()

    cache = os.environ.get("BAYESCALE_CACHE_DIR", str(Path.home() / ".cache" / "bayescale" / "jax"))
    if cache and jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
