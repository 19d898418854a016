"""NUTS on the numpyro model, and assembly of the result DataTree."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import arviz_base as azb
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from numpyro.infer import MCMC, Predictive, init_to_median, log_likelihood
from numpyro.infer import NUTS as _NumpyroNUTS
from numpyro.infer.hmc_util import build_adaptation_schedule
from numpyro.util import is_prng_key

from bayescale.infer import diagnostics
from bayescale.errors import check_rng_key
from bayescale._runtime import available_platforms, choose_platform
from bayescale.data import DataError, check_identifiable, check_target, load_runs
from bayescale.laws.catalogue import Law, load_law, published_table
from bayescale.infer.model import (ModelSpec, build_model, mass_structure, pointwise_terms, recover_run_effects,
                             resolve_priors)
from bayescale.infer.noise import Noise, curve_structure
from bayescale.infer.starts import find_start, median_starts
from bayescale.infer.reparam import AUXILIARY_SUFFIX, centres_of, describe_centring, plan_centring
from bayescale.results.io import law_data_attrs, versions
from bayescale.infer.settings import CHAIN_METHODS, NUTS, SamplerSettingsError

__all__ = ["Placement", "build_result", "draw_groups", "fit", "nuts_mcmc", "place", "run_nuts", "sample_stats_of"]

_EXTRA_FIELDS = ("diverging", "num_steps", "accept_prob", "energy", "adapt_state.step_size")
_STAT_NAMES = {
    "diverging": "diverging",
    "num_steps": "n_steps",
    "accept_prob": "acceptance_rate",
    "energy": "energy",
    "adapt_state.step_size": "step_size",
}


#: Share of the kernel's per-process memory-map limit (vm.max_map_count, 65530 by default) past which compiled
#: executables are released before a fit. Every fit builds a new model closure, so nothing it compiles is reused by
#: the next fit, but JAX keeps the executables: ~600 memory mappings per fit on CPU, and after ~100 fits in one
#: process LLVM fails with "Cannot allocate memory" and the process dies. At 0.75 the check, made before every fit,
#: leaves room for ~27 more fits' mappings; clearing earlier throws away the small programs that later fits reuse
#: (a clear and the recompiling after it cost ~15 s of a test worker).
_MAP_FRACTION = 0.75


def release_compiled(fraction: float = _MAP_FRACTION) -> bool:
    """Clear JAX's compilation caches when this process holds more than ``fraction`` of the allowed memory mappings
    (Linux; elsewhere a no-op). Returns whether it cleared them."""
    import gc

    try:
        with open("/proc/self/maps") as f:
            used = sum(1 for _ in f)
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        return False
    if used < fraction * limit:
        return False
    jax.clear_caches()
    gc.collect()
    return True


def as_key(rng_key: int | jax.Array) -> tuple[jax.Array, Any]:
    """A PRNG key from an int seed or a key, and a JSON-able record of it."""
    if isinstance(rng_key, (int, np.integer)) and not isinstance(rng_key, (bool, np.bool_)):
        return jax.random.PRNGKey(int(rng_key)), int(rng_key)
    check_rng_key(rng_key)  # bayescale.errors: an ArgumentError, not a JAX TypeError, for "abc" or 1.5
    key = jnp.asarray(rng_key)
    return key, np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key).tolist()


def log_inputs_of(ds: xr.Dataset, law: Law) -> dict[str, jnp.ndarray]:
    with np.errstate(divide="ignore"):  # log(0) = -inf is exact for non-negative inputs (offsets handle it)
        return {name: jnp.asarray(np.log(ds[name].values)) for name in law.input_names}


def data_statistics(ds: xr.Dataset) -> dict[str, float]:
    return {"min_loss": float(ds["loss"].min()), "max_loss": float(ds["loss"].max())}


def drop_before(ds: xr.Dataset, min_tokens: float, axis: str = "D") -> xr.Dataset:
    """The points of ``ds`` with ``axis`` ≥ ``min_tokens``; the count dropped goes to ``attrs["min_tokens"]``."""
    if axis not in ds:
        raise DataError(f"min_tokens filters on {axis!r}, which the data do not have")
    if not (isinstance(min_tokens, (int, float)) and np.isfinite(min_tokens) and min_tokens >= 0):
        raise ValueError(f"min_tokens must be a finite number >= 0, got {min_tokens!r}")
    keep = ds[axis].values >= min_tokens
    if not keep.any():
        raise DataError(f"min_tokens={min_tokens:g} drops every point (largest {axis} is {float(ds[axis].max()):g})")
    out = ds.isel(point=np.flatnonzero(keep))
    out.attrs = dict(ds.attrs) | {"min_tokens": json.dumps({"min_tokens": float(min_tokens), "dropped": int((~keep).sum())})}
    return out


def check_target_noise(law: Law, noise: Noise) -> None:
    """``"hetero"`` scales the noise with the log of the loss level, which only a positive loss has."""
    if noise.heteroscedastic and law.target.kind != "loss":
        raise ValueError(f"noise 'hetero' scales the noise with the loss level on log scale, which a target of kind "
                         f"{law.target.kind!r} (law {law.id!r}) does not have; use 'iid', 'run' or 'ou' terms")


class StartWithMass(NamedTuple):
    """A chain's unconstrained start ``z`` and the inverse mass matrix its warmup begins from (numpyro's
    ``inverse_mass_matrix``: site-name tuple → matrix, or vector for a diagonal block), passed as ``init_params``."""

    z: Any
    inverse_mass_matrix: Any


class NUTSKernel(_NumpyroNUTS):
    """numpyro's NUTS, whose initial inverse mass matrix may come with each chain's start (:class:`StartWithMass`)
    instead of its constructor. A matrix given to the constructor is a constant of the compiled sampler, so every
    fit would compile its own program (and miss the persistent cache, which keys on constants too); passed with the
    start it is an input, and fits of other data with the same shapes share one program."""

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs={}):  # noqa: B006 (numpyro's)
        if not isinstance(init_params, StartWithMass):
            return super().init(rng_key, num_warmup, init_params, model_args, model_kwargs)
        matrix = init_params.inverse_mass_matrix
        if not is_prng_key(rng_key):  # chains vectorised in one call share the matrix (it is the same for every chain)
            matrix = jax.tree_util.tree_map(lambda m: m[0], matrix)
        own, self._inverse_mass_matrix = self._inverse_mass_matrix, matrix
        try:
            return super().init(rng_key, num_warmup, init_params.z, model_args, model_kwargs)
        finally:
            self._inverse_mass_matrix = own


def dense_blocks(mass: bool | Sequence[Sequence[str]], names: Sequence[str]) -> list[tuple[str, ...]]:
    """The dense blocks of a mass-matrix structure (numpyro's ``dense_mass``) over the sites ``names``: all of them
    for ``True`` (numpyro orders them by name), none for ``False``, else the blocks given; other sites are diagonal."""
    if mass is True:
        return [tuple(sorted(names))]
    return [] if mass is False else [tuple(block) for block in mass]


def laplace_inverse_mass(covariance: np.ndarray, mass: bool | Sequence[Sequence[str]],
                         z: Mapping[str, Any]) -> dict[tuple[str, ...], np.ndarray]:
    """The initial inverse mass matrix of NUTS from the Laplace covariance at the MAP (:class:`~bayescale.infer.starts.Start`,
    over the unconstrained sites in sorted order), in numpyro's form for the mass structure ``mass``: a dense block's
    sub-matrix, the variances of the other sites. Its eigenvalues are capped at 1, numpyro's default (the identity):
    a direction the Hessian sees as flat or curving the wrong way (eigenvalues raised to 1e-8 there, so a covariance of
    up to 1e8) starts as it would without the MAP, not with steps that would shrink every other direction's.

    Why: numpyro's warmup starts from the identity and keeps it for its first 100 iterations (the initial buffer and
    the first window). A posterior a thousand times narrower than that (the fitted constants of a large table: sds near
    1e-3) then needs a step size near 1e-4 and trees of hundreds of leapfrog steps: on Chinchilla's 240 points 280 steps
    per iteration there, 36,000 of the warmup's 44,000 gradient calls; started from the Laplace matrix, 8 steps per
    iteration and 8,400 calls in all (docs/performance.md)."""
    names = sorted(z)
    sizes = [int(np.size(z[n])) for n in names]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    index = {n: np.arange(offsets[i], offsets[i + 1]) for i, n in enumerate(names)}
    lam, vec = np.linalg.eigh(np.asarray(covariance, dtype=float))
    capped = (vec * np.clip(lam, 0.0, 1.0)) @ vec.T
    blocks = dense_blocks(mass, names)
    out: dict[tuple[str, ...], np.ndarray] = {}
    for block in blocks:
        idx = np.concatenate([index[n] for n in block])
        out[block] = capped[np.ix_(idx, idx)]
    rest = tuple(n for n in names if not any(n in b for b in blocks))
    if rest:
        out[rest] = np.diag(capped)[np.concatenate([index[n] for n in rest])]
    return out


def nuts_mcmc(
    model,
    sampler: NUTS | None = None,
    *,
    mass: bool | list | None = None,
    platform: str | None = None,
    traced_args: bool = False,
    regularize: bool = True,
) -> MCMC:
    """The numpyro NUTS kernel and MCMC object of the settings ``sampler`` (:class:`bayescale.NUTS`), not yet run:
    the one kernel set-up of :func:`run_nuts`, whose returned object a loop over many datasets of one model passes back.

    ``mass`` overrides the mass-matrix structure (``sampler.dense_mass`` by default; e.g. dense over the globals,
    diagonal over run effects, :func:`bayescale.infer.model.mass_structure`); chains start at the prior median unless the
    run is given ``init_params``. ``platform``: where it will run (the device policy's choice, :func:`place`; default
    JAX's default backend), which decides the chain layout.

    ``traced_args``: the model's arguments are arguments of the compiled sampler, not constants inside it (numpyro's
    ``jit_model_args``; for chains on several devices, :func:`chains_on_devices`), so that a run on new data of the
    same shapes, in this process or, through the persistent compilation cache, in another, reuses the sampler
    compiled for the first (compiling it takes seconds, docs/performance.md; sampling a small fit less). Only for
    models that use their arguments as arrays: :func:`fit`'s (:func:`model_of_data`) and calibration's. A model that
    reads an argument in Python (a count for a plate, a flag in an ``if``) keeps the default, its arguments built in.

    ``regularize``: whether the mass-matrix adaptation shrinks its estimates (numpyro's and Stan's default); the
    choice needs the model's dimensions, so :func:`run_nuts`, which knows them from the chains' starts, makes it
    (:func:`regularizes_mass`).
    """
    settings = sampler or NUTS()
    progress_bar = sys.stderr.isatty() if settings.progress_bar is None else settings.progress_bar
    mass = settings.dense_mass if mass is None else mass
    kernel = NUTSKernel(model, dense_mass=mass,
                        target_accept_prob=settings.target_accept_prob, max_tree_depth=settings.max_tree_depth,
                        init_strategy=init_to_median, regularize_mass_matrix=regularize)
    chain_method = resolve_chain_method(settings.chain_method, settings.num_chains, platform)
    mcmc = MCMC(
        kernel,
        num_warmup=settings.num_warmup,
        num_samples=settings.num_samples,
        num_chains=settings.num_chains,
        chain_method=chains_on_devices if chain_method == "parallel" and traced_args else chain_method,
        progress_bar=progress_bar,
        jit_model_args=traced_args,
    )
    mcmc.settings = settings  # what run_nuts reads when it runs the object again (where chains start)
    mcmc.mass_regularized = regularize
    mcmc.mass = mass  # the mass matrix's structure, which an initial matrix must follow (laplace_inverse_mass)
    return mcmc


def regularizes_mass(setting: bool | None, mass: bool | Sequence[Sequence[str]], z: Mapping[str, Any],
                     num_warmup: int) -> bool:
    """Whether NUTS's mass-matrix adaptation shrinks each window's estimate toward ``1e-3 * I`` (Stan's
    regularisation: ``n/(n+5) * cov + 1e-3 * 5/(n+5) * I`` after a window of ``n`` draws; numpyro's
    ``regularize_mass_matrix``). ``setting`` True/False forces it (:attr:`bayescale.NUTS.regularize_mass`); ``None``:
    where an unshrunk estimate could not be trusted: where a window's sample covariance could be singular or nearly so
    (some dense block of the mass matrix, ``mass`` as numpyro's ``dense_mass``, has more than half as many dimensions
    as the shortest adaptation window of ``num_warmup`` steps has draws: 25 for 150 warmup steps or more), or where the
    last window, whose estimate the draws use, has fewer than 10 draws per dimension of that block (the noise of a
    sample covariance's eigenvalues is of order sqrt(dimensions / draws)). With 150 warmup steps the one window has 25
    draws, so a 4-parameter fit keeps the shrinkage; with 300 or more the last window has 100 or more. ``z``: one
    chain's unconstrained parameters, which give each site's size.

    Elsewhere the shrinkage does harm. Its absolute term adds 1e-5 to 1e-4 to every variance, which swamps a posterior
    narrower than about 0.01 in the unconstrained coordinates: the fitted amplitudes and exponents of a large table
    (posterior sds near 0.001 on 1e4 points), and the exponents of Chinchilla's 240 points (α's sd 0.009). The adapted
    matrix then stays near the shrinkage target, not the posterior's covariance, and NUTS crosses the posterior in many
    small steps: on a simulated 1e4-row hoffmann2022 table one chain took 27 leapfrog steps per draw with it and 6.6
    without, Chinchilla 11.8 and 8.0 (docs/performance.md). Without it a window whose chain did not move at all gives
    a singular estimate and the chain stops: only a chain that is already stuck, which its diagnostics report."""
    if setting is not None:
        return bool(setting)
    windows = build_adaptation_schedule(num_warmup)[1:-1]  # the first and last are step-size-only buffers
    if not windows:
        return True
    lengths = [w.end - w.start + 1 for w in windows]
    largest = max((sum(int(np.size(z[name])) for name in block if name in z) for block in dense_blocks(mass, list(z))),
                  default=1)  # a diagonal matrix: each variance is a block of one
    return 2 * largest > min(lengths) or 10 * largest > lengths[-1]


def chains_on_devices(single_chain: Any):
    """numpyro's ``chain_method="parallel"`` (one chain per device, ``jax.pmap``) with the model's arguments passed
    to the mapped program instead of closed over.

    numpyro hands a chain layout the one-chain function with the model's arguments bound
    (``functools.partial(MCMC._single_chain_mcmc, args=..., kwargs=...)``); its own "parallel" maps that closure, so the
    data become constants of the compiled program and every new dataset compiles the sampler again (about 4 s for a
    36-point fit on a 2-core CPU, the largest program of a small fit). Here the arguments are unbound and broadcast
    to every device as inputs of the mapped function: with ``jit_model_args`` the chains read them from their state,
    so programs of the same shapes are one program. A function of another form is mapped as numpyro maps it."""
    import functools

    keywords = dict(getattr(single_chain, "keywords", None) or {})
    if not isinstance(single_chain, functools.partial) or not {"args", "kwargs"} <= set(keywords):
        return jax.pmap(single_chain)
    args, kwargs = keywords.pop("args"), keywords.pop("kwargs")

    def one_chain(map_args, model_args, model_kwargs):
        return single_chain.func(map_args, args=model_args, kwargs=model_kwargs, **keywords)

    mapped = jax.pmap(one_chain, in_axes=(0, None, None))
    return lambda map_args: mapped(map_args, args, kwargs)


def run_nuts(
    model,
    *args,
    rng_key: jax.Array,
    sampler: NUTS | None = None,
    mass: bool | list | None = None,
    init_params: Any = None,
    mcmc: MCMC | None = None,
    traced_args: bool = False,
    start_key: jax.Array | None = None,
    start_labels: Mapping[str, str] | None = None,
    **kwargs,
) -> MCMC:
    """Run NUTS on any numpyro ``model(*args, **kwargs)`` with the settings ``sampler`` (:class:`bayescale.NUTS`);
    return the MCMC object.

    Every fit function (``fit``, schedule laws, the special-purpose models, calibration) runs NUTS here, so they share
    one kernel set-up (:func:`nuts_mcmc`; ``mass`` and ``traced_args`` as there), and one choice of where chains
    start: ``init_params`` (each chain's unconstrained start) if given, else by ``sampler.init``: ``"map"``, Laplace
    draws around the best of a multi-start MAP (:func:`bayescale.infer.starts.find_start`, with ``start_key``, default
    ``fold_in(rng_key, 1)``, and ``start_labels``), ``"median"`` the prior median
    (:func:`bayescale.infer.starts.median_starts`). What the search found is ``mcmc.start_record`` (a result's
    ``attrs["init"]``; ``{"method": "given"}`` for ``init_params``). The extra fields :data:`_EXTRA_FIELDS` are
    recorded. ``mcmc``: an object of :func:`nuts_mcmc` to run again (on new data of the
    same shapes) instead of a new one. Read results with ``mcmc.get_samples(group_by_chain=True)`` and
    ``mcmc.get_extra_fields(group_by_chain=True)``.

    Compiled programs are released first when the process nears its memory-map limit (:func:`release_compiled`).

    The device policy (``sampler.device``, :func:`bayescale._runtime.choose_platform`) picks the platform from the
    size of the data (the largest array among ``args`` and ``kwargs``) and the chain count; the sampler runs there
    (``jax.default_device``) and ``mcmc.placement`` holds the :class:`Placement` that :func:`sampler_record` writes
    into the result.
    """
    release_compiled()  # every fit function samples here: none can run the process out of memory mappings
    settings = sampler or getattr(mcmc, "settings", None) or NUTS()
    if settings.kernel == "chees":
        raise SamplerSettingsError("kernel='chees' is for fit_batch (ChEES-HMC adapts across many chains in lockstep); "
                                   "a single fit runs NUTS: leave kernel out or pass kernel='nuts'")
    if mcmc is None or getattr(mcmc, "placement", None) is None:
        placement = place(settings.device, n_points=data_size(args, kwargs), n_chains=settings.num_chains)
    else:
        placement = mcmc.placement
    num_chains = settings.num_chains if mcmc is None else mcmc.num_chains
    initial_mass = None
    with on_platform(placement.platform):
        # the start search runs here, not compiled into the sampler
        if init_params is not None:
            start_record = {"method": "given"}
        elif settings.init == "map":
            start = find_start(model, args, kwargs, rng_key=jax.random.fold_in(rng_key, 1) if start_key is None
                               else start_key, num_chains=num_chains, num_starts=settings.num_starts,
                               labels=start_labels, traced_args=traced_args)
            init_params, start_record = start.init_params, start.record
            initial_mass = start.covariance
        else:
            init_params = median_starts(model, args, kwargs, rng_key=rng_key, num_chains=num_chains)
            start_record = {"method": "median"}
        one_chain = jax.tree_util.tree_map(lambda x: x[0], init_params)  # starts have a leading chain axis
        if mcmc is None:  # the starts give the model's dimensions, which decide the mass matrix's regularisation
            regularize = regularizes_mass(settings.regularize_mass, settings.dense_mass if mass is None else mass,
                                          one_chain, settings.num_warmup)
            mcmc = nuts_mcmc(model, settings, mass=mass, platform=placement.platform, traced_args=traced_args,
                             regularize=regularize)
        if initial_mass is not None:  # warmup starts from the Laplace matrix of the MAP, not the identity
            matrix = laplace_inverse_mass(initial_mass, mcmc.mass, one_chain)
            init_params = StartWithMass(init_params, {k: jnp.broadcast_to(jnp.asarray(v), (num_chains, *np.shape(v)))
                                                      for k, v in matrix.items()})
            start_record = start_record | {"initial_mass": "laplace"}
        mcmc.start_record = start_record
        if mcmc.num_chains == 1:  # numpyro takes one chain's start without the chain axis
            init_params = jax.tree_util.tree_map(lambda x: x[0], init_params)
        mcmc.run(rng_key, *args, extra_fields=_EXTRA_FIELDS, init_params=init_params, **kwargs)
    mcmc.placement = placement._replace(mass_regularized=mcmc.mass_regularized)
    _LAST_PLACEMENT.value = mcmc.placement
    return mcmc


class Placement(NamedTuple):
    """Where a sampler ran: the ``device`` asked for, the JAX ``platform`` chosen and the policy's ``reason``; and
    whether its mass matrix was regularised (:func:`regularizes_mass`; ``None`` before a run)."""

    device: str
    platform: str
    reason: str
    mass_regularized: bool | None = None

    def to_record(self) -> dict[str, Any]:
        return {"platform": self.platform, "placement": self.reason} | (
            {} if self.mass_regularized is None else {"mass_regularized": self.mass_regularized})


#: The placement of the last run_nuts call in this thread, for sampler_record calls that are not handed one.
_LAST_PLACEMENT = threading.local()


def place(device: str, *, n_points: int, n_chains: int) -> Placement:
    """The device policy applied on this machine (:func:`bayescale._runtime.choose_platform` over the platforms JAX
    finds); ``device="gpu"`` without a GPU raises one :class:`~bayescale._runtime.DeviceError`."""
    platform, reason = choose_platform(device, n_points=n_points, n_chains=n_chains, platforms=available_platforms())
    return Placement(device, platform, reason)


def on_platform(platform: str):
    """A context that runs JAX work on ``platform``: nothing to do on the default backend (no new device context, so
    programs compiled before it are reused), else ``jax.default_device`` of that platform's first device."""
    if platform == jax.default_backend():
        return contextlib.nullcontext()
    return jax.default_device(jax.devices(platform)[0])


def data_size(args: tuple, kwargs: Mapping[str, Any]) -> int:
    """The size of the largest array among a model's arguments: the number of points for every model here."""
    sizes = [int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves((args, dict(kwargs)))
             if hasattr(leaf, "shape")]
    return max(sizes, default=0)


def sampler_record(settings: NUTS, key_record: Any, placement: Placement | None = None, **extra: Any) -> str:
    """``attrs["sampler"]`` of a result: the settings, the chain layout they resolved to, the key, float width and
    the platform the device policy chose, with its reason (``placement``: that of the run; by default the last
    :func:`run_nuts` of this thread). One record for every fit function."""
    placement = placement or getattr(_LAST_PLACEMENT, "value", None) or place(settings.device, n_points=0,
                                                                             n_chains=settings.num_chains)
    return settings.to_attrs(chain_method=resolve_chain_method(settings.chain_method, settings.num_chains,
                                                               placement.platform),
                             rng_key=key_record, x64=bool(jax.config.jax_enable_x64), **placement.to_record(),
                             **extra)


def resolve_chain_method(chain_method: str, num_chains: int, platform: str | None = None) -> str:
    """The chain layout on ``platform`` (default: JAX's default backend). ``"auto"``: one chain per device when there
    are enough devices (CPU host devices are set up on import, :mod:`bayescale._runtime`), else chains vectorised on
    an accelerator and one after another on CPU, where vectorised chains wait in lockstep for the deepest tree
    (docs/performance.md). numpyro's ``"parallel"`` maps chains over the default backend's devices, so on another
    platform (the CPU of a GPU machine) "auto" runs them one after another and "parallel" is refused."""
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method {chain_method!r}: must be one of {list(CHAIN_METHODS)}")
    default = jax.default_backend()
    platform = platform or default
    if chain_method == "parallel" and platform != default:
        raise SamplerSettingsError(f"chain_method='parallel' maps chains over the {default} devices, but the sampler "
                                   f"runs on {platform}: use chain_method='auto', 'sequential' or 'vectorized', or "
                                   f"device={default!r}")
    if chain_method != "auto":
        return chain_method
    if num_chains == 1:
        return "sequential"
    if platform == default and jax.local_device_count() >= num_chains:
        return "parallel"
    return "sequential" if platform == "cpu" else "vectorized"


def sample_stats_of(mcmc: MCMC) -> dict[str, np.ndarray]:
    """The sampler statistics of a finished run, named as ArviZ expects (``diverging``, ``n_steps``, ...)."""
    return {_STAT_NAMES[k]: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}


def draw_groups(
    model,
    args: tuple,
    mcmc: MCMC,
    *,
    rng_key: jax.Array | tuple[jax.Array, jax.Array],
    observed: Mapping[str, Any],
    sampled_names: tuple[str, ...] | list[str],
    num_prior_samples: int = 1000,
    max_pointwise_values: int | None = None,
    n_observed: int | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """The groups of a NUTS result, for ``azb.from_dict``: ``posterior`` (by chain), ``sample_stats``, the posterior
    predictive and pointwise log-likelihood of the observed sites (``observed``: site name → observed values; the
    model takes them as keyword arguments), and prior draws of ``sampled_names`` with the prior predictive.
    ``rng_key``: one key, or the (posterior predictive, prior) pair.

    Shared by :func:`fit` and the special-purpose models (schedules, per-token, shape), so every result has the same
    groups with the same meaning.

    Large data (:func:`pointwise_draws`): when a per-point group would hold more than ``max_pointwise_values``
    (default :data:`POINTWISE_MAX_VALUES`) numbers, it is computed for evenly spaced draws only (those of
    :func:`pointwise_draws`); the posterior predictive and log-likelihood are then stored as float32, the prior
    predictive stays float64 (extreme prior draws overflow float32).

    ``n_observed``: the number of real points when the model's points were padded (:func:`padded_size`); the per-point
    groups keep those first points only."""
    k_ppc, k_prior = rng_key if isinstance(rng_key, tuple) else jax.random.split(rng_key)
    by_chain = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    # collapsed curve noise: the run effects were integrated out; draw them from their conditionals, so that the
    # posterior and the predictive of the same runs hold them as before
    by_chain |= recover_run_effects(model, args, observed, by_chain, jax.random.fold_in(k_ppc, 1))
    n_chains, n_draws = next(iter(by_chain.values())).shape[:2]
    n_points = n_observed if n_observed is not None else sum(int(np.size(v)) for v in observed.values())
    real = slice(None) if n_observed is None else slice(0, n_observed)  # the points that are not padding
    keep, n_prior = pointwise_draws(n_chains, n_draws, num_prior_samples, n_points, max_pointwise_values)
    thinned = {k: v[:, keep] for k, v in by_chain.items()}
    flat = {k: v.reshape((-1, *v.shape[2:])) for k, v in thinned.items()}
    shape = (n_chains, keep.size)
    sites = list(observed)
    small = keep.size == n_draws and n_prior == num_prior_samples
    dtype = np.float64 if small else np.float32
    ppc = Predictive(model, posterior_samples=flat, return_sites=sites)(k_ppc, *args)
    with pointwise_terms():  # collapsed curve noise: per-point conditionals, not per-run joint terms
        loglik = log_likelihood(model, flat, *args, **observed)
    prior = Predictive(model, num_samples=n_prior)(k_prior, *args)
    return {
        "posterior": by_chain,
        "posterior_predictive": {s: np.asarray(ppc[s][..., real], dtype=dtype).reshape(*shape, -1) for s in sites},
        "log_likelihood": {s: np.asarray(loglik[s][..., real], dtype=dtype).reshape(*shape, -1) for s in sites},
        "sample_stats": sample_stats_of(mcmc),
        "prior": {k: np.asarray(v)[None] for k, v in prior.items() if k in sampled_names},
        # float64 always: losses simulated from extreme prior draws overflow float32 (3.4e38)
        "prior_predictive": {s: np.asarray(prior[s][..., real])[None] for s in sites},
    }


def build_result(
    groups: Mapping[str, Mapping[str, np.ndarray]],
    *,
    dims: Mapping[str, list[str]],
    coords: Mapping[str, Any],
    observed: xr.Dataset,
    constant: xr.Dataset,
    result_kind: str,
    provenance: Mapping[str, Any],
    priors: Mapping[str, str],
    settings: NUTS,
    key_record: Any,
    checked: tuple[Sequence[str], Mapping[str, Any]],
    strict: bool,
    extra_groups: Mapping[str, xr.Dataset] | None = None,
    per_point_draws: Sequence[int] | None = None,
    vector_names: Sequence[str] = (),
    placement: Placement | None = None,
    start: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """The result DataTree of a NUTS fit: the one builder of :func:`fit`, the declared models (:mod:`bayescale.analyses.kaplan.pertoken`,
    :mod:`bayescale.analyses.kaplan.shape`, :mod:`bayescale.analyses.kaplan.batchsize`) and every other fit that samples with :func:`run_nuts`.

    Parameters
    ----------
    groups, dims, coords
        The sampled groups for :func:`arviz_base.from_dict` (from :func:`draw_groups`, or posterior and
        sample_stats only).
    observed, constant
        The ``observed_data`` and ``constant_data`` groups.
    result_kind
        A key of :data:`bayescale.results.contract.RESULT_KINDS`.
    provenance
        What the model and data are: law or declared-model text and hash, data hash, columns and size, ...
        (:func:`bayescale.results.io.law_data_attrs`, :meth:`bayescale.infer.declared.DeclaredModel.attrs`) and any attrs of
        the kind.
    priors
        Parameter → prior text, as fitted (stored as JSON text in ``attrs["priors"]``).
    settings, key_record, placement
        The sampler settings, the key and where the sampler ran (:func:`sampler_record`; ``placement`` by default
        that of the last :func:`run_nuts` of this thread).
    start
        Where the chains started (``mcmc.start_record`` of :func:`run_nuts`), stored as JSON text in ``attrs["init"]``;
        the modes a MAP start found are reported by :func:`bayescale.results.summary`.
    checked, strict, vector_names
        The parameters whose diagnostics are checked and their prior distributions (prior-bound checks), and whether
        sampler trouble raises (:mod:`bayescale.infer.diagnostics`); ``vector_names``: vector parameters whose worst R-hat
        is checked too.
    extra_groups
        More groups (``references``, ``cells``, ...).
    per_point_draws
        The posterior draw numbers of thinned per-point groups (:func:`pointwise_draws`), to label them.
    """
    dt = azb.from_dict(dict(groups), dims=dict(dims), coords=dict(coords))
    if per_point_draws is not None:  # per-point groups over a subset of draws: label them with the posterior's draws
        for group in ("posterior_predictive", "log_likelihood"):
            dt[group] = xr.DataTree(dt[group].to_dataset().assign_coords(draw=list(per_point_draws)))
    dt["observed_data"] = xr.DataTree(observed)
    dt["constant_data"] = xr.DataTree(constant)
    for name, ds in (extra_groups or {}).items():
        dt[name] = xr.DataTree(ds)
    dt.attrs.update(
        azb.make_attrs(inference_library=None)
        | {"result_kind": result_kind, "priors": json.dumps(dict(priors)), "versions": json.dumps(versions())}
        | dict(provenance)
        | {"sampler": sampler_record(settings, key_record, placement)}
        | ({} if start is None else {"init": json.dumps(dict(start))})
    )
    names, dists = checked
    table, messages = diagnostics.diagnose(dt, tuple(names), dict(dists), vector_names)
    diagnostics.record(dt, table, messages, strict)
    return dt


#: Largest number of values (draws x points) a per-point group keeps at full size (float64, every draw). Above it,
#: the group is computed for evenly spaced draws only (:func:`pointwise_draws`), the posterior predictive and
#: log-likelihood as float32 (20 MB each at 5e6 values), the prior predictive as float64 (40 MB), so the per-point
#: groups of a fit stay near 80 MB at any size of data; Chinchilla (4,000 draws x 240 points = 9.6e5) and tables up to
#: 1,250 points at the default 4,000 draws are untouched.
POINTWISE_MAX_VALUES = 5_000_000


def pointwise_draws(n_chains: int, n_draws: int, num_prior_samples: int, n_points: int,
                    max_values: int | None = None) -> tuple[np.ndarray, int]:
    """Draw indices (per chain) and prior-draw count for the per-point groups, within ``max_values`` numbers each."""
    limit = int(max_values or POINTWISE_MAX_VALUES)
    per_chain = max(1, min(n_draws, limit // max(1, n_chains * n_points)))
    keep = np.unique(np.linspace(0, n_draws - 1, per_chain).round().astype(int))
    return keep, max(1, min(num_prior_samples, limit // max(1, n_points)))


#: Tables of up to this many points are padded to :func:`padded_size`; larger ones, whose sampling outweighs a compile,
#: keep their size.
PAD_MAX_POINTS = 2048


def padded_size(n_points: int, noise: Noise) -> int:
    """The number of points the compiled programs of a fit of ``n_points`` points take: the next of 8, 12, 16, 24, 32,
    48, ... (2^k and 1.5·2^k) up to :data:`PAD_MAX_POINTS`, so that tables of nearby sizes (validation splits, a new
    run added, simulation studies, subsets) reuse one sampler, optimiser and predictive program instead of compiling
    each again (seconds per law on CPU). The padding points are masked out of the likelihood (their log density is
    exactly 0) and cut from every per-point group, so the posterior is that of the real points. Noise with run effects
    or correlated checkpoints keeps the exact size (its index arrays are built per run)."""
    if not pads(n_points, noise):
        return n_points
    size = 8
    while size < n_points:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3  # 2^k -> 1.5·2^k -> 2^(k+1)
    return size


def pads(n_points: int, noise: Noise) -> bool:
    """Whether a fit of ``n_points`` points with ``noise`` runs on :func:`padded_size` points with a mask (always with
    the mask, also when no padding is needed, so that every size of one bucket has the same program)."""
    return not (noise.run_effect or noise.correlation) and n_points <= PAD_MAX_POINTS


def data_arguments(spec: ModelSpec, structure: Mapping[str, Any]) -> dict[str, Any]:
    """What the model of :func:`model_of_data` reads from the data, as arrays: the data statistics that priors use,
    the centres of centred amplitudes and the curve structure's index arrays (the run count stays a number: it fixes
    the shapes). The same dictionary :mod:`bayescale.infer.batch` gives each fit of a batch as ``per_fit``."""
    return {
        "statistics": {k: jnp.asarray(v, dtype=float) for k, v in spec.statistics.items()},
        "structure": {k: v for k, v in structure.items() if k not in ("n_runs", "runs")},
        **({} if spec.centres is None else {"centres": {k: jnp.asarray(v, dtype=float)
                                                        for k, v in spec.centres.items()}}),
    }


def pad_points(values: Any, size: int, fill: Any = None) -> np.ndarray:
    """``values`` (one per point, along the first axis) extended to ``size`` points: with ``fill``, or by default with
    copies of the first value (one the likelihood accepts). The padding of :func:`fit` (:func:`padded_size`) and of
    :func:`bayescale.infer.batch.fit_batch` (every fit to the batch's largest). With NumPy: a JAX operation on the
    unpadded array would compile again for every table size."""
    values = np.asarray(values)
    extra = size - values.shape[0]
    tail = (np.repeat(values[:1], extra, axis=0) if fill is None
            else np.full((extra, *values.shape[1:]), fill, dtype=values.dtype))
    return np.concatenate([values, tail])


def model_of_data(spec: ModelSpec, structure: Mapping[str, Any]):
    """``model(log_inputs, data, loss=None)``: the model of :func:`~bayescale.infer.model.build_model` with its
    data-derived numbers (:func:`data_arguments`) taken as an argument instead of built in. Data statistics and
    centres built into the model would be constants of every compiled program (the sampler, the predictive, the
    log-likelihood, the optimiser's objective), which JAX then compiles again for each new dataset."""
    inner = build_model(spec, structure)

    def model(log_inputs, data, loss=None):
        return inner(log_inputs, loss, per_fit=data)

    return model


def fit(
    law: Law | str,
    data: Any,
    *,
    sampler: NUTS | Mapping[str, Any] | None = None,
    rng_key: int | jax.Array = 0,
    likelihood: str = "student_t",
    noise: str | Noise = "auto",
    min_tokens: float | None = None,
    require_identifiable: bool = True,
    priors: Mapping[str, str] | None = None,
    num_prior_samples: int = 1000,
    pointwise: bool = True,
    centre_amplitudes: bool = True,
    strict: bool = False,
    columns: Mapping[str, str] | None = None,
    **sampler_options: Any,
) -> xr.DataTree:
    """Fit a scaling law to a run table with NUTS and return a self-describing result.

    The model is ``log y_i = log f(x_i; θ) + ε_i``, with ``f`` the law, θ its parameters under the law file's priors,
    and ε Normal or Student-t with scale ``sigma`` (and degrees of freedom ``nu``).

    Parameters
    ----------
    law
        A :class:`~bayescale.laws.catalogue.Law`, a catalogue id (``"hoffmann2022"``) or a path to a law file.
    data
        A validated dataset from :func:`~bayescale.data.load_runs`, or anything it accepts (DataFrame, CSV, Parquet).
    sampler, **sampler_options
        The sampler settings: a :class:`bayescale.NUTS` value (or a dict of its fields; ``None``: the defaults, 4
        chains × 1000 warmup + 1000 draws, dense mass, target acceptance 0.9, chains started from a multi-start MAP),
        with any of its fields given as keywords on top (``num_chains=2, num_samples=500``). ``chain_method`` "auto":
        one chain per device when there are enough (on CPU, ``import bayescale`` sets up host devices), else
        vectorised on an accelerator and sequential on CPU (docs/performance.md). ``dense_mass``: amplitudes and
        exponents of a power law are strongly correlated; per-run effects stay diagonal
        (:func:`bayescale.infer.model.mass_structure`). ``init="map"``: L-BFGS-B from ``num_starts`` points (the prior
        median and prior draws) to the posterior mode, then each chain at its own draw from the Laplace approximation
        around the best mode; optima in distinct modes are recorded in ``attrs["init"]`` and reported by
        :func:`bayescale.results.summary` (:mod:`bayescale.infer.starts`); ``"median"``: every chain at the prior median.
    rng_key
        Seed (int) or JAX PRNG key. The same key gives identical draws on the same machine and versions.
    likelihood
        ``"student_t"`` (default; robust to outlying points, like the Huber loss of the classic fit) or ``"normal"``.
    noise
        Structure of the residuals (:mod:`bayescale.infer.noise`): ``"iid"``, or terms joined by ``+``: ``"run"`` (run
        effects, partially pooled), ``"ou"`` (residuals correlated along log-tokens within a run), ``"hetero"`` (noise
        scale grows with the loss level). ``"auto"``: ``"iid"`` for one point per run, ``"run+ou"`` for curves.
    min_tokens
        Drop checkpoints with fewer tokens ``D`` than this before fitting (the early, transient part of a curve that
        the law does not describe); the number dropped is recorded in ``attrs["min_tokens"]``.
    require_identifiable
        ``False`` turns "too few distinct values of an input" from an error into a warning, for fits whose priors
        are meant to carry the parameters along that input (e.g. leaving one of three loop counts out).
    priors
        Overrides, parameter name → prior expression, e.g. ``{"E": "Uniform(1.5, min_loss)"}``.
    pointwise
        Keep the per-point groups: posterior predictive, pointwise log-likelihood and prior predictive (what PPC bands,
        coverage checks and LOO read). Each holds draws × points numbers: above :data:`POINTWISE_MAX_VALUES` (5e6,
        e.g. 4,000 draws × 1,250 points) they are computed for evenly spaced draws only, the posterior predictive
        and log-likelihood as float32, so that all three stay near 80 MB (``attrs["pointwise"]`` lists the draws
        kept; LOO from fewer draws is noisier). ``False`` leaves them out (CLI ``--no-pointwise``) and draws the
        parameters' prior from their distributions.
    centre_amplitudes
        Sample the amplitude of each power-law term (``A`` of ``A / N**alpha``, also ``A / (N + t1)**alpha`` and terms
        in [definitions]) at the data's geometric centre of its input, with the declared prior kept exactly
        (:mod:`bayescale.infer.reparam`); ``attrs["centred"]`` records the terms and centres. The posterior holds ``A`` as
        usual. On the Chinchilla data this cuts leapfrog steps per draw about 5-fold (docs/performance.md); ``False``
        samples every parameter as declared.
    strict
        Raise :class:`~bayescale.infer.diagnostics.SamplingError` on sampler trouble instead of warning.
    columns
        Column mapping passed to :func:`~bayescale.data.load_runs` when ``data`` is a table.

    Returns
    -------
    xarray.DataTree
        Groups posterior, posterior_predictive, log_likelihood, sample_stats, observed_data, constant_data, prior,
        prior_predictive, references; provenance and diagnostics in ``attrs``.

    References
    ----------
    Hoffman & Gelman 2014, "The No-U-Turn Sampler", JMLR 15. Phan, Pradhan, Jankowiak 2019, "Composable Effects for
    Flexible and Accelerated Probabilistic Programming in NumPyro", arXiv:1912.11554.
    """
    release_compiled()  # before the start search (init="map") compiles its own programs; run_nuts checks again
    law = law if isinstance(law, Law) else load_law(law)
    ds = data if isinstance(data, xr.Dataset) else load_runs(data, columns=columns, inputs=law.input_names,
                                                              target=law.target.kind)
    if min_tokens is not None:
        ds = drop_before(ds, min_tokens)
    check_target(ds["loss"].values, law.target.kind, ds["loss"].attrs.get("column", "loss"))
    check_identifiable(ds, law, require=require_identifiable)
    settings = NUTS.coerce(sampler, **sampler_options)
    num_chains, num_samples = settings.num_chains, settings.num_samples
    # the device policy and chain layout checked before any work (run_nuts applies them)
    resolve_chain_method(settings.chain_method, num_chains,
                         place(settings.device, n_points=ds.sizes["point"], n_chains=num_chains).platform)
    noise = Noise.parse(noise, ds, target=law.target.kind)
    check_target_noise(law, noise)
    prior_specs = resolve_priors(law, likelihood, priors, noise)
    stats = data_statistics(ds)
    log_inputs = log_inputs_of(ds, law)
    n_real = ds.sizes["point"]
    n_model = padded_size(n_real, noise)
    centring = plan_centring(law, prior_specs) if centre_amplitudes else None
    centres = None if centring is None else centres_of(centring, log_inputs, prior_specs, stats)
    spec = ModelSpec(law=law, priors=prior_specs, statistics=stats, likelihood=likelihood, noise=noise, centres=centres)
    structure = curve_structure(ds, noise)
    model = model_of_data(spec, structure)
    # everything the model reads from the data is an argument of it, so compiled programs serve any data of one shape
    data = data_arguments(spec, structure)
    loss = ds["loss"].values
    if pads(n_real, noise):  # padding points (padded_size): copies of the first point, masked out of the likelihood
        log_inputs = {k: jnp.asarray(pad_points(v, n_model)) for k, v in log_inputs.items()}
        data["structure"] = {k: jnp.asarray(pad_points(v, n_model)) for k, v in data["structure"].items()}
        data["mask"] = jnp.asarray(np.arange(n_model) < n_real)
        loss = pad_points(loss, n_model)
    loss = jnp.asarray(loss)
    args = (log_inputs, data)
    key, key_record = as_key(rng_key)
    k_fit, k_ppc, k_prior = jax.random.split(key, 3)
    mcmc = run_nuts(
        model,
        *args,
        rng_key=k_fit,
        sampler=settings,
        mass=mass_structure(settings.dense_mass, spec),
        traced_args=True,
        # init="map": the start search's own key (folded from the seed), so the sampler's keys are those of "median"
        start_key=jax.random.fold_in(key, 1),
        start_labels={s: s.removesuffix(AUXILIARY_SUFFIX) for s in spec.sampled_sites if s.endswith(AUXILIARY_SUFFIX)},
        loss=loss,
    )
    dists = {name: p.distribution(stats) for name, p in prior_specs.items()}
    if pointwise:
        groups = draw_groups(model, args, mcmc, rng_key=(k_ppc, k_prior), observed={"loss": loss},
                             sampled_names=spec.sampled_names, num_prior_samples=num_prior_samples,
                             n_observed=n_real)
    else:  # parameters' prior draws straight from their distributions: no model run over every point
        keys = jax.random.split(k_prior, len(spec.sampled_names))
        samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        samples |= recover_run_effects(model, args, {"loss": loss}, samples, jax.random.fold_in(k_ppc, 1))
        groups = {
            "posterior": samples,
            "sample_stats": sample_stats_of(mcmc),
            "prior": {n: np.asarray(dists[n].sample(k, (num_prior_samples,)))[None]
                      for n, k in zip(spec.sampled_names, keys)},
        }

    groups["posterior"] = {k: v for k, v in groups["posterior"].items() if not k.endswith(AUXILIARY_SUFFIX)}
    keep, n_prior = pointwise_draws(num_chains, num_samples, num_prior_samples, ds.sizes["point"])
    thinning = {} if not pointwise or (keep.size == num_samples and n_prior == num_prior_samples) else {
        "draws": keep.tolist(), "prior_draws": n_prior, "dtype": "float32", "max_values": POINTWISE_MAX_VALUES}
    references = {}
    if law.published:
        ref = xr.Dataset(
            {k: ("source", v) for k, v in published_table(law).items()},
            coords={"source": [p.source for p in law.published]},
        )
        ref["citation"] = ("source", [p.citation for p in law.published])
        references["references"] = ref
    return build_result(
        groups,
        dims={"loss": ["point"], "z_run": ["run"], "run_effect": ["run"]},
        coords={"point": ds["point"].values, "run": structure["runs"]},
        observed=ds[["loss"]],
        constant=ds[list(law.input_names)],
        result_kind="law",
        provenance=law_data_attrs(law, ds, stats, spec.noise_names) | {
            "likelihood": likelihood,
            "target": law.target.kind,
            "noise": noise.to_json(),
            "centred": describe_centring(centring, centres),
            "pointwise": json.dumps(thinning if pointwise else {"kept": False}),
            **({"min_tokens": ds.attrs["min_tokens"]} if "min_tokens" in ds.attrs else {}),
        },
        priors={k: v.text for k, v in prior_specs.items()},
        settings=settings,
        key_record=key_record,
        placement=mcmc.placement,
        start=mcmc.start_record,
        checked=(spec.sampled_names, dists),
        strict=strict,
        extra_groups=references,
        per_point_draws=thinning["draws"] if thinning else None,
    )
