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
- XLA:CPU's fusion emitters off (``--xla_cpu_use_fusion_emitters=false``): the newer MLIR code generator of XLA's
  CPU backend compiles a fit's programs about 30% slower than the older one, and the compiled samplers run no faster
  (docs/performance.md: Chinchilla, compilation 17.3 → 11.3 s, the rest unchanged, same posterior). Applied for the
  jaxlib versions known to have the flag (:data:`FUSION_FLAG_JAXLIB`; XLA aborts on a flag it does not know); skipped
  when ``XLA_FLAGS`` already names it and when ``BAYESCALE_XLA_CPU_FUSION=1``. It changes only CPU code generation.
- Persistent compilation cache: compiled samplers are written to ``BAYESCALE_CACHE_DIR`` (default
  ``~/.cache/bayescale/jax``; empty turns it off), so a second fit of the same law, data shape and settings, in any
  process, skips XLA compilation. Skipped when the user configured ``jax_compilation_cache_dir`` themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bayescale.errors import ArgumentError

_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_FUSION_FLAG = "--xla_cpu_use_fusion_emitters"
#: jaxlib versions ``[low, high)`` whose XLA has ``--xla_cpu_use_fusion_emitters`` (checked on 0.10.2 here; the flag
#: is still read by XLA at head). Outside it bayescale leaves the flag alone.
FUSION_FLAG_JAXLIB = ((0, 6), (0, 12))

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


def cpu_fusion_from_env() -> bool:
    """Whether XLA:CPU keeps its fusion emitters: ``BAYESCALE_XLA_CPU_FUSION=1``; off (faster compiles) by default."""
    value = os.environ.get("BAYESCALE_XLA_CPU_FUSION", "0")
    if value not in ("0", "1"):
        raise ValueError(f"BAYESCALE_XLA_CPU_FUSION must be 0 or 1, got {value!r}")
    return value == "1"


def _jaxlib_has_fusion_flag() -> bool:
    import jaxlib

    try:
        version = tuple(int(part) for part in jaxlib.__version__.split(".")[:2])
    except ValueError:  # a development build with an unparseable version: do not risk an unknown flag
        return False
    low, high = FUSION_FLAG_JAXLIB
    return low <= version < high


def kept(store: dict, key: Any, make: Callable[[], Any], limit: int) -> Any:
    """``store[key]``, made by ``make()`` on first use: a process-wide store of traced programs, holding at most
    ``limit`` entries (the oldest is dropped first). Serves :func:`bayescale.laws.catalogue.law_program` and
    :func:`bayescale.infer.batch.map_pairs`."""
    if key not in store:
        while len(store) >= limit:
            store.pop(next(iter(store)))
        store[key] = make()
    return store[key]


def _backends_started() -> bool:
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", None))


def xla_flags(flags: str) -> str:
    """The ``XLA_FLAGS`` bayescale starts JAX with, given the user's ``flags``: the host device count
    (:func:`host_device_count`) unless ``flags`` has one, and XLA:CPU's fusion emitters off unless ``flags`` names them
    or ``BAYESCALE_XLA_CPU_FUSION=1`` (module docstring); the user's flags first, unchanged."""
    added = []
    count = host_device_count()
    if _DEVICE_FLAG not in flags and count > 1:
        added.append(f"{_DEVICE_FLAG}={count}")
    if _FUSION_FLAG not in flags and not cpu_fusion_from_env() and _jaxlib_has_fusion_flag():
        added.append(f"{_FUSION_FLAG}=false")
    return " ".join([flags, *added]).strip() if added else flags


def configure() -> None:
    import jax

    jax.config.update("jax_enable_x64", x64_from_env())

    if not _backends_started():  # XLA reads its flags once, when JAX starts its backend
        flags = os.environ.get("XLA_FLAGS", "")
        wanted = xla_flags(flags)
        if wanted != flags:
            os.environ["XLA_FLAGS"] = wanted

    cache = os.environ.get("BAYESCALE_CACHE_DIR", str(Path.home() / ".cache" / "bayescale" / "jax"))
    if cache and jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)


# --- Device policy -------------------------------------------------------------------------------------------------
# NUTS is a loop of small, data-dependent steps: on an accelerator each leapfrog step pays a kernel-launch latency
# that a small model never earns back, so a small fit is faster on the CPU even on a machine with a GPU, and the GPU
# wins only when each step carries much work: many fits in lockstep (fit_batch) or large data.
#
# The crossovers below were MEASURED ELSEWHERE and NOT ON THIS PROJECT'S MACHINES (issue 15: one NVIDIA H200, jax
# 0.11.2, numpyro 0.21, float64, against a 2-core x86 CPU); bayescale's own CI has no GPU. They are estimates from
# those numbers, to be re-measured on the machine at hand (docs/performance.md, "Device policy"):
# - single fits: the default Chinchilla fit (240 points) took 92 s on the H200 against 15 s on the CPU, about 0.8 ms
#   per lockstep leapfrog step on the GPU whatever the size; the curve model's gradient on the CPU takes 0.66 ms at
#   1e4 points and 3.6 ms at 1e5 (about linear), so the CPU's step costs more than the GPU's from 1-2e4 points on.
# - batches: 1,000 fits of 36 points (2 chains x 500 + 500) took 106 s on the H200 (latency-bound: a single 10 + 10
#   fit took 7.9 s warm), 20 such fits took 46 s batched on the CPU (2.3 s per fit), so the GPU's batch costs less
#   from about 20-46 fits (40-92 chains in lockstep) on.

#: Points (rows of the data) from which ``device="auto"`` runs a single fit on an accelerator (see the note above:
#: measured elsewhere, not here).
GPU_MIN_POINTS = 20_000
#: Chains advancing in lockstep (fits x chains of a fit_batch) from which ``device="auto"`` runs them on an
#: accelerator (measured elsewhere, not here).
GPU_MIN_CHAINS = 64
#: Platforms ``device="auto"`` counts as accelerators, in order of preference (JAX's platform names).
ACCELERATOR_PLATFORMS = ("gpu", "tpu")


class DeviceError(ArgumentError):
    """A device was asked for that this machine does not have, or a device name that does not exist."""


def available_platforms() -> tuple[str, ...]:
    """The JAX platforms this process can run on: ``"cpu"`` always, then the accelerators JAX finds."""
    import jax

    found = ["cpu"]
    for platform in ACCELERATOR_PLATFORMS:
        try:
            if jax.devices(platform):
                found.append(platform)
        except RuntimeError:  # JAX: "Unknown backend" / "Backend ... failed to initialize"
            pass
    return tuple(found)


def choose_platform(requested: str, *, n_points: int, n_chains: int = 1,
                    platforms: tuple[str, ...] | list[str] = ("cpu",)) -> tuple[str, str]:
    """Where a sampler runs, and why: ``(platform, reason)``.

    A pure function of the work and the platforms available (``available_platforms()`` in use), so that the policy
    is tested without a GPU.

    Parameters
    ----------
    requested
        ``"auto"``, ``"cpu"`` or ``"gpu"`` (:attr:`bayescale.NUTS.device`).
    n_points
        Size of the data of one fit (the largest, for a batch).
    n_chains
        Chains that advance in lockstep: ``num_chains`` of a single fit, fits x chains of a batch.
    platforms
        The platforms available; ``"cpu"`` is assumed present.

    Returns
    -------
    tuple of str
        The JAX platform name and a short reason recorded in the result.
    """
    accelerators = [p for p in ACCELERATOR_PLATFORMS if p in platforms]
    if requested == "cpu":
        return "cpu", "forced: device='cpu'"
    if requested == "gpu":
        if "gpu" not in platforms:
            raise DeviceError(f"device='gpu' but JAX finds no GPU here (platforms: {sorted(set(platforms) | {'cpu'})}); "
                              "install JAX's CUDA wheels (pip install 'bayescale[cuda12]') or use device='auto' or 'cpu'")
        return "gpu", "forced: device='gpu'"
    if requested != "auto":
        raise DeviceError(f"device {requested!r}: must be one of ['auto', 'cpu', 'gpu']")
    if not accelerators:
        return "cpu", "auto: no accelerator"
    if n_chains >= GPU_MIN_CHAINS:
        return accelerators[0], f"auto: {n_chains} chains in lockstep >= {GPU_MIN_CHAINS}"
    if n_points >= GPU_MIN_POINTS:
        return accelerators[0], f"auto: {n_points} points >= {GPU_MIN_POINTS}"
    return "cpu", (f"auto: small fit ({n_points} points < {GPU_MIN_POINTS}, {n_chains} chains < {GPU_MIN_CHAINS}): "
                   "NUTS on an accelerator is latency-bound")
