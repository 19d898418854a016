"""Many independent fits of one law as one vectorised computation (SBC simulations, coverage studies, splits).

The kernel is NUTS (below) or, with ``kernel="chees"``, ChEES-HMC over each fit's chains (:func:`_chees_one`).

Every fit uses the same numpyro model as :func:`bayescale.fit`, with its data passed as arguments rather than closed
over: datasets are padded to the largest one (points and runs), padded points are masked out of the likelihood, and
the data statistics that priors use (``min_loss``) are traced per fit. NUTS runs through numpyro's functional API
(``numpyro.infer.hmc.hmc``), vmapped over (fit, chain) pairs and compiled once, so a thousand fits cost one
compilation and no Python loop. Chains of a vmapped batch advance in lockstep (each NUTS step waits for the deepest
tree in the batch); ``batch_size`` bounds how many run together (``jax.lax.map``), docs/performance.md measures it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from numpyro.infer import init_to_median
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model

from bayescale._runtime import kept
from bayescale.data import check_identifiable, load_runs
from bayescale.errors import ArgumentError
from bayescale.infer.diagnostics import SamplingError, SamplingWarning, azs
from bayescale.infer.fit import (as_key, data_statistics, log_inputs_of, on_platform, pad_points, place,
                                 regularizes_mass)
from bayescale.laws.catalogue import Law, load_law, require_loss_target
from bayescale.infer.model import ModelSpec, build_model, mass_structure, resolve_priors
from bayescale.infer.noise import Noise, curve_structure
from bayescale.infer.reparam import centres_of, describe_centring, plan_centring
from bayescale.results.io import versions
from bayescale.infer.settings import NUTS, start_settings

__all__ = ["batch_kernel", "devices_of", "fit_batch", "map_pairs", "select_fit"]

#: R-hat above this (per fit, any parameter) or any divergence counts a fit as troubled in the batch's warning.
RHAT_LIMIT = 1.01


def _as_datasets(law: Law, datasets: Any, columns: Mapping[str, str] | None) -> list[xr.Dataset]:
    if isinstance(datasets, (xr.Dataset, str)) or not isinstance(datasets, Sequence):
        raise TypeError("datasets must be a list of run tables (xarray Datasets from load_runs, DataFrames or paths)")
    if len(datasets) == 0:
        raise ValueError("datasets is empty: give at least one run table")
    return [d if isinstance(d, xr.Dataset) else load_runs(d, columns=columns, inputs=law.input_names)
            for d in datasets]


def _batch_arrays(law: Law, dss: list[xr.Dataset], noise: Noise, stats: list[dict],
                  centres: list[dict] | None = None) -> tuple[dict, int]:
    """Per-fit model arguments stacked along a leading fit axis, padded to the largest fit; and the padded run count."""
    structures = [curve_structure(ds, noise) for ds in dss]
    n_points = max(ds.sizes["point"] for ds in dss)
    n_runs = max(s["n_runs"] for s in structures)
    per_fit = []
    for i, (ds, st, structure) in enumerate(zip(dss, stats, structures)):
        n = ds.sizes["point"]
        logs = {k: pad_points(v, n_points) for k, v in log_inputs_of(ds, law).items()}  # copies of the first point
        struct = {"run_idx": pad_points(structure["run_idx"], n_points, 0)}
        if noise.correlation:
            struct["prev"] = np.concatenate([np.asarray(structure["prev"]), np.arange(n, n_points)])
            struct["dlog"] = pad_points(structure["dlog"], n_points, 0.0)
            struct["has_prev"] = pad_points(structure["has_prev"], n_points, False)
        per_fit.append(dict(
            log_inputs=logs,
            loss=pad_points(ds["loss"].values.astype(float), n_points, 1.0),
            per_fit=dict(statistics={k: np.float64(v) for k, v in st.items()}, structure=struct,
                         mask=np.arange(n_points) < n,
                         **({} if centres is None else
                            {"centres": {k: np.float64(v) for k, v in centres[i].items()}})),
        ))
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *per_fit)
    return stacked, n_runs


#: The algorithm each ``kernel`` setting names, as recorded in ``attrs["sampler"]["algorithm"]``.
KERNEL_NAMES = {"nuts": "NUTS", "chees": "ChEES-HMC"}


#: The fewest chains per fit with which ``kernel="auto"`` picks ChEES-HMC on an accelerator: its adaptation pools a
#: fit's chains, and with 2 it gave no more ESS per second than NUTS and a worse R-hat (docs/performance.md).
CHEES_MIN_CHAINS = 4


def batch_kernel(settings: NUTS, platform: str) -> str:
    """The kernel a batch runs: ``settings.kernel``, or for ``"auto"`` ChEES-HMC on an accelerator with at least
    :data:`CHEES_MIN_CHAINS` chains per fit (many chains in lockstep, where each vectorised NUTS iteration waits for
    the deepest tree of the batch), NUTS otherwise (docs/performance.md compares them)."""
    if settings.kernel != "auto":
        return settings.kernel
    return "chees" if platform != "cpu" and settings.num_chains >= CHEES_MIN_CHAINS else "nuts"


#: Default sampler of :func:`fit_batch`: fewer, shorter chains than a single fit (a batch is for many small fits, as in
#: simulation studies), chains from the prior median.
BATCH_SAMPLER = NUTS(num_chains=2, num_warmup=500, num_samples=500, init="median")


def fit_batch(
    law: Law | str,
    datasets: Sequence[Any],
    *,
    sampler: NUTS | Mapping[str, Any] | None = None,
    rng_key: int | jax.Array = 0,
    likelihood: str = "student_t",
    noise: str | Noise = "auto",
    priors: Mapping[str, str] | None = None,
    batch_size: int | None = None,
    num_devices: int | None = None,
    statistics: Mapping[str, float] | None = None,
    require_identifiable: bool = True,
    centre_amplitudes: bool = True,
    strict: bool = False,
    columns: Mapping[str, str] | None = None,
    **sampler_options: Any,
) -> xr.DataTree:
    """Fit one law to each of many datasets with NUTS, as one compiled, vectorised computation.

    Parameters
    ----------
    law
        A :class:`~bayescale.laws.catalogue.Law`, a catalogue id or a path to a law file.
    datasets
        Run tables, one per fit: datasets from :func:`~bayescale.data.load_runs`, or anything it accepts. They may
        differ in size; all must resolve to the same ``noise`` structure.
    sampler, **sampler_options, likelihood, noise, priors
        As in :func:`bayescale.fit`; every fit gets the same settings. The default sampler is
        :data:`BATCH_SAMPLER` (2 chains × 500 + 500, chains from the prior median: a multi-start MAP per fit is not
        vectorised, so ``init="map"`` is refused). ``kernel`` (:attr:`bayescale.NUTS.kernel`): ``"nuts"`` runs
        NUTS on every (fit, chain) pair; ``"chees"`` runs ChEES-HMC (blackjax) on each fit's chains together: they
        adapt one step size, one trajectory length and one diagonal metric, and every chain of a fit takes the same
        number of leapfrog steps at each draw, so a vectorised batch does not wait for the deepest NUTS tree among
        its chains (it pools its chains, so give it 4 or more); ``"auto"``: ChEES on an accelerator with 4 or more
        chains per fit, NUTS otherwise (:func:`batch_kernel`; docs/performance.md compares them).
    batch_size
        How many (fit, chain) pairs (ChEES: fits) advance together in one vectorised step (``jax.lax.map``'s
        ``batch_size``); ``None``: all of them. Smaller batches wait less for the slowest chain in the batch. With
        several devices, per device.
    num_devices
        Devices of the chosen platform the (fit, chain) pairs are sharded over (``jax.shard_map`` over the pair axis:
        each device runs its share in its own lockstep group, with no communication); ``None``: every device of the
        platform (several GPUs; on CPU the host devices ``import bayescale`` sets up), ``1``: no sharding. The draws
        do not depend on it: each pair has its own key. The platform is chosen by ``sampler.device``
        (:func:`bayescale._runtime.choose_platform`: a batch of many chains goes to a GPU when there is one).
    centre_amplitudes
        As in :func:`bayescale.fit`: power-law amplitudes sampled at each fit's own data centre (computed from that
        fit's points and passed to the model per fit); ``attrs["centred"]`` lists the terms and ``attrs["centres"]``
        the centres of every fit.
    statistics
        Data statistics for data-dependent priors (``min_loss``), the same for every fit, instead of each dataset's
        own (simulation-based calibration draws the truth from one fixed prior: :mod:`bayescale.validation.calibration`).
    strict
        Raise :class:`~bayescale.infer.diagnostics.SamplingError` when any fit has R-hat > 1.01 or divergences.

    Returns
    -------
    xarray.DataTree
        ``posterior`` and ``sample_stats`` with dims ``(fit, chain, draw)`` for every law and noise parameter
        (run-level effects are not kept); ``fit_diagnostics`` with ``rhat`` and ``ess_bulk`` per fit and parameter
        and ``divergences`` per fit; ``attrs`` with the law, priors, noise, sampler settings and versions.

    Examples
    --------
    >>> result = bs.fit_batch("hoffmann2022", [table_a, table_b])           # doctest: +SKIP
    >>> result.posterior["alpha"].quantile([0.05, 0.95], dim=("chain", "draw"))  # one interval per fit
    """
    law = law if isinstance(law, Law) else load_law(law)
    require_loss_target(law, "fit_batch")
    dss = _as_datasets(law, datasets, columns)
    settings = start_settings(sampler, sampler_options, "fit_batch", BATCH_SAMPLER, inits=("median",))
    num_chains, num_warmup, num_samples = settings.num_chains, settings.num_warmup, settings.num_samples
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    placement = place(settings.device, n_points=max(ds.sizes["point"] for ds in dss),
                      n_chains=len(dss) * num_chains)
    devices = devices_of(placement.platform, num_devices)
    kernel = batch_kernel(settings, placement.platform)
    noises = [Noise.parse(noise, ds) for ds in dss]
    if len({n.spec for n in noises}) > 1:
        kinds = sorted({n.spec for n in noises})
        raise ValueError(f"noise {noise!r} resolves to different structures across the datasets ({kinds}): "
                         "a batch shares one model; pass noise= explicitly")
    noise = noises[0]
    for i, ds in enumerate(dss):
        try:
            check_identifiable(ds, law, require=require_identifiable)
        except ValueError as err:
            raise type(err)(f"dataset {i}: {err}") from None
    prior_specs = resolve_priors(law, likelihood, priors, noise)
    stats = [dict(statistics) if statistics is not None else data_statistics(ds) for ds in dss]
    for i, st in enumerate(stats):  # each fit's data-dependent priors must be valid distributions
        for prior in prior_specs.values():
            if prior.uses_data():
                try:
                    prior.distribution(st)
                except ValueError as err:
                    raise type(err)(f"dataset {i}: {err}") from None

    centring = plan_centring(law, prior_specs) if centre_amplitudes else None
    centres = None if centring is None else [
        centres_of(centring, log_inputs_of(ds, law), prior_specs, st) for ds, st in zip(dss, stats)]
    arrays, n_runs = _batch_arrays(law, dss, noise, stats, centres)
    spec = ModelSpec(law=law, priors=prior_specs, statistics=stats[0], likelihood=likelihood, noise=noise,
                     centres=None if centres is None else centres[0])
    model = build_model(spec, {"n_runs": n_runs}, batched=True)
    names = spec.sampled_names
    key, key_record = as_key(rng_key)
    k_init, k_run = jax.random.split(key)

    # The model's shapes and transforms come from fit 0; every parameter starts at its prior median, which in the
    # unconstrained space does not depend on the data (Uniform(0, min_loss) has its median at logit 0 for any data),
    # except a centred amplitude's, which is fit 0's (its centre shifts by p * (c_i - c_0) between fits, a fraction of
    # the prior's width; warmup absorbs it). No MAP start here: a per-fit optimiser inside the vmapped program is not
    # implemented, so batched fits keep init="median" (attrs["sampler"]["init"]).
    info = initialize_model(k_init, model, model_args=_args_of(arrays, 0), dynamic_args=True,
                            init_strategy=init_to_median, validate_grad=False)  # as bayescale.infer.starts.median_starts
    z0 = info.param_info.z
    mass = mass_structure(settings.dense_mass, spec)
    regularize = None if kernel == "chees" else regularizes_mass(settings.regularize_mass, mass, z0, num_warmup)
    placement = placement._replace(mass_regularized=regularize)
    one = (_chees_one(info, names, settings) if kernel == "chees" else
           _nuts_one(info, names, settings, mass, regularize))
    n_fits = len(dss)
    # NUTS maps (fit, chain) pairs; ChEES maps fits, each running its chains together (its adaptation pools them)
    per_unit = 1 if kernel == "chees" else num_chains
    index = jnp.repeat(jnp.arange(n_fits), per_unit)
    keys = jax.random.split(k_run, n_fits * per_unit)
    # the data and the start are arguments of the compiled program, not constants in it: a batch of new data of the
    # same shapes reuses the program (in-process and through the persistent compilation cache)
    # ... and in this process a batch of the same model, statistics, centring and settings runs the program traced for
    # an earlier one (the key names everything `one` closes over; shapes are told apart by jit itself)
    program = None if not law.source_text else repr((
        law.id, law.source_text, sorted((k, v.text) for k, v in prior_specs.items()), likelihood, noise.spec, n_runs,
        sorted(stats[0].items()), None if centres is None else repr(centres[0]), repr(settings)))
    draws, stats_out = map_pairs(one, index, keys, devices, batch_size, operand=(arrays, z0), program=program)

    def shaped(v):
        v = np.asarray(v)
        return v.reshape(n_fits, num_chains, num_samples, *v.shape[3 if kernel == "chees" else 2:])

    dims = ("fit", "chain", "draw")
    coords = {"fit": np.arange(n_fits), "chain": np.arange(num_chains), "draw": np.arange(num_samples)}
    posterior = xr.Dataset({n: (dims, shaped(v)) for n, v in draws.items()}, coords=coords)
    sample_stats = xr.Dataset({n: (dims, shaped(v)) for n, v in stats_out.items()}, coords=coords)
    dt = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": sample_stats})
    dt["fit_diagnostics"] = xr.DataTree(_diagnostics(posterior, sample_stats))
    dt.attrs.update(
        result_kind="law_batch",
        law_id=law.id,
        law_source=law.source_text or "",
        priors=json.dumps({k: v.text for k, v in prior_specs.items()}),
        likelihood=likelihood,
        noise=noise.to_json(),
        centred=describe_centring(centring, None),
        centres=json.dumps(centres or []),
        inputs=json.dumps(list(law.input_names)),
        parameters=json.dumps(list(law.parameter_names)),
        noise_parameters=json.dumps([n for n in names if n not in law.parameter_names]),
        data_statistics=json.dumps(stats),
        n_points=json.dumps([int(ds.sizes["point"]) for ds in dss]),
        data_hashes=json.dumps([ds.attrs.get("data_hash", "") for ds in dss]),
        sampler=settings.to_attrs(algorithm=KERNEL_NAMES[kernel], chain_method="vmapped over fits and chains",
                                  batch_size=batch_size, rng_key=key_record, x64=bool(jax.config.jax_enable_x64),
                                  **placement.to_record(), num_devices=len(devices)),
        versions=json.dumps(versions()),
    )
    _report(dt, law.id, strict)
    return dt


def _args_of(data: dict, i: jax.Array) -> tuple:
    """Fit ``i``'s model arguments from the stacked batch arrays of :func:`_batch_arrays`."""
    a = jax.tree_util.tree_map(lambda x: x[i], data)
    return a["log_inputs"], a["loss"], a["per_fit"]


def _nuts_one(info: Any, names: list[str], settings: NUTS, mass: Any, regularize: bool):
    """One (fit, chain) pair's NUTS run (numpyro's functional ``hmc``): warmup and draws, as one compiled loop."""
    init_kernel, sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
    num_warmup, num_samples = settings.num_warmup, settings.num_samples

    def one(index, chain_key, operand):
        data, z_start = operand
        args = _args_of(data, index)
        state = init_kernel(z_start, num_warmup, dense_mass=mass, target_accept_prob=settings.target_accept_prob,
                            max_tree_depth=settings.max_tree_depth, regularize_mass_matrix=regularize,
                            model_args=args, rng_key=chain_key)

        def fields(s):
            return s.z, s.diverging, s.num_steps, s.accept_prob, s.energy

        # warmup and draws in one loop, so that NUTS (the kernel adapts while s.i < num_warmup) is traced and
        # compiled once, not once for a warmup loop and again for a draw loop: iteration i writes draw i - num_warmup,
        # and warmup iterations write draw 0, which the first draw then overwrites
        def step(i, carry):
            s, draws = carry
            s = sample_kernel(s, model_args=args)
            slot = jnp.maximum(i - num_warmup, 0)
            return s, jax.tree_util.tree_map(lambda d, v: jax.lax.dynamic_update_index_in_dim(d, v, slot, 0),
                                             draws, fields(s))

        empty = jax.tree_util.tree_map(lambda v: jnp.zeros((num_samples, *jnp.shape(v)), jnp.result_type(v)),
                                       fields(state))
        _, (z, diverging, steps, accept, energy) = jax.lax.fori_loop(0, num_warmup + num_samples, step,
                                                                     (state, empty))
        values = jax.vmap(info.postprocess_fn(*args))(z)
        return {n: values[n] for n in names}, dict(diverging=diverging, n_steps=steps, acceptance_rate=accept,
                                                    energy=energy)

    return one


#: ChEES-HMC's first step size (in the unconstrained space, before dual averaging adapts it), Adam's learning rate
#: for the log trajectory length (Hoffman, Radul & Sountsov 2021 use 0.025) and the spread of the chains' starts
#: around the prior median (an ensemble method needs chains that differ from the first step).
CHEES_STEP_SIZE = 0.1
CHEES_LEARNING_RATE = 0.025
CHEES_START_SPREAD = 0.1


def _chees_one(info: Any, names: list[str], settings: NUTS):
    """One fit's ChEES-HMC run (blackjax): its ``num_chains`` chains adapt one step size, one trajectory length and
    one diagonal metric together, then draw with jittered fixed-length HMC. Every chain of a fit takes the same
    number of leapfrog steps at each iteration (a shared quasi-random jitter), so chains in lockstep do not wait for
    the longest NUTS tree among them."""
    import blackjax
    import optax
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    num_chains, num_warmup, num_samples = settings.num_chains, settings.num_warmup, settings.num_samples

    def one(index, key, operand):
        data, z_start = operand
        args = _args_of(data, index)
        potential = info.potential_fn(*args)

        def logdensity(z):
            return -potential(z)

        k_start, k_warm, k_draw = jax.random.split(key, 3)
        leaves, tree = jax.tree_util.tree_flatten(z_start)
        noise = jax.random.normal(k_start, (len(leaves), num_chains))
        starts = jax.tree_util.tree_unflatten(tree, [
            v + CHEES_START_SPREAD * noise[i].reshape(num_chains, *([1] * jnp.ndim(v))) for i, v in enumerate(leaves)])
        warmup = blackjax.chees_adaptation(logdensity, num_chains, target_acceptance_rate=settings.target_accept_prob,
                                           max_leapfrog_steps=2 ** settings.max_tree_depth,
                                           mass_matrix_estimation="diagonal",
                                           adaptation_info_fn=get_filter_adapt_info_fn())
        (states, parameters), _ = warmup.run(k_warm, starts, CHEES_STEP_SIZE, optax.adam(CHEES_LEARNING_RATE),
                                             num_warmup, max_sampling_steps=num_samples)
        step = jax.vmap(blackjax.dynamic_hmc(logdensity, **parameters).step)

        def draw(states, k):
            states, stats = step(jax.random.split(k, num_chains), states)
            return states, (states.position, stats.is_divergent, stats.num_integration_steps, stats.acceptance_rate,
                            stats.energy)

        _, out = jax.lax.scan(draw, states, jax.random.split(k_draw, num_samples))
        z, diverging, steps, accept, energy = jax.tree_util.tree_map(lambda v: jnp.swapaxes(v, 0, 1), out)
        values = jax.vmap(jax.vmap(info.postprocess_fn(*args)))(z)
        return {n: values[n] for n in names}, dict(diverging=diverging, n_steps=steps, acceptance_rate=accept,
                                                    energy=energy)

    return one


def devices_of(platform: str, num_devices: int | None = None) -> list[jax.Device]:
    """The first ``num_devices`` devices of ``platform`` (``None``: all of them); an ``ArgumentError`` when there are
    fewer."""
    available = jax.devices(platform)
    if num_devices is None:
        return list(available)
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) or num_devices < 1:
        raise ArgumentError(f"num_devices must be a positive integer or None, got {num_devices!r}")
    if num_devices > len(available):
        raise ArgumentError(f"num_devices={num_devices} but there are {len(available)} {platform} devices (on CPU, "
                            "set BAYESCALE_HOST_DEVICES before importing bayescale for more)")
    return list(available[:num_devices])


def _shard_map(f, mesh, in_specs, out_specs):
    # jax.shard_map (jax >= 0.7) or its experimental predecessor; no replication checks: the body is independent
    # per shard (no collectives), and the checks do not follow numpyro's while loops
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map

    return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


#: Compiled pair maps of this process by program key (:func:`map_pairs`), the most recent :data:`_MAX_PROGRAMS`.
_PROGRAMS: dict[Any, Any] = {}
_MAX_PROGRAMS = 8


def _program(key: Any, make: Any) -> Any:
    """``make()`` (a jitted function), or the one made earlier for ``key`` (``None``: never reused)."""
    return make() if key is None else kept(_PROGRAMS, key, make, _MAX_PROGRAMS)


def map_pairs(one, index: jax.Array, keys: jax.Array, devices: Sequence[jax.Device],
              batch_size: int | None = None, operand: Any = None, program: Any = None) -> Any:
    """``one(index[i], keys[i])`` for every pair ``i``, compiled once: ``jax.lax.map`` in groups of ``batch_size``
    (``None``: all pairs of a device at once, vectorised) on each of ``devices``, the pairs split evenly between
    them (``jax.shard_map`` over the pair axis; the last pair is repeated to fill the last device's share, and the
    repeats are dropped). Returns the outputs stacked along the pair axis, on the host.

    ``operand``: a pytree of arrays every pair reads (a batch's data), called as ``one(index[i], keys[i], operand)``.
    It is an argument of the compiled program (every device gets all of it), not a constant closed over by ``one``,
    so that new values of the same shapes reuse the program. ``program``: a hashable key that identifies ``one``
    completely (two calls with equal keys compute the same function of their arguments); a later call with the same
    key runs the function traced by the first, without tracing ``one`` again. ``None``: traced anew."""
    n = int(index.shape[0])
    call = (lambda a, op: one(*a)) if operand is None else (lambda a, op: one(*a, op))
    operand = () if operand is None else operand
    if len(devices) == 1:
        with on_platform(devices[0].platform):
            run = _program(None if program is None else (program, n, batch_size, tuple(devices)),
                           lambda: jax.jit(lambda idx, ks, op: jax.lax.map(lambda a: call(a, op), (idx, ks),
                                                                        batch_size=batch_size or n)))
            return jax.device_get(run(index, keys, operand))
    per_device = -(-n // len(devices))
    fill = per_device * len(devices) - n
    index = jnp.concatenate([index, jnp.repeat(index[-1:], fill)])
    keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], fill, axis=0)])
    mesh = Mesh(np.asarray(devices), ("pair",))
    run = _program(None if program is None else (program, per_device, batch_size, tuple(devices)),
                   lambda: jax.jit(_shard_map(lambda idx, ks, op: jax.lax.map(
                       lambda a: call(a, op), (idx, ks), batch_size=min(batch_size or per_device, per_device)),
                       mesh, (PartitionSpec("pair"), PartitionSpec("pair"), PartitionSpec()), PartitionSpec("pair"))))
    sharding = NamedSharding(mesh, PartitionSpec("pair"))
    replicated = NamedSharding(mesh, PartitionSpec())
    out = jax.device_get(run(jax.device_put(index, sharding), jax.device_put(keys, sharding),
                             jax.device_put(operand, replicated)))
    return jax.tree_util.tree_map(lambda v: np.asarray(v)[:n], out)


def select_fit(dt: xr.DataTree, i: int) -> xr.DataTree:
    """Fit ``i`` of a :func:`fit_batch` result as a result of one fit: ``posterior`` and ``sample_stats`` with dims
    (chain, draw) and that fit's attributes. It holds no data groups, so it serves what reads the posterior alone
    (:func:`~bayescale.results.predict.draws_log_law`, :mod:`bayescale.planning.optimum`, :func:`~bayescale.planning.design.rank_next_experiments`)
    but not posterior predictive checks or extrapolation distances, which need the fitted data."""
    n_fits = dt["posterior"].sizes["fit"]
    if not 0 <= i < n_fits:
        raise IndexError(f"fit {i} of a batch of {n_fits}")
    out = xr.DataTree.from_dict({g: dt[g].to_dataset().isel(fit=i, drop=True) for g in ("posterior", "sample_stats")})
    out.attrs.update(dt.attrs)
    out.attrs["data_statistics"] = json.dumps(json.loads(dt.attrs["data_statistics"])[i])
    out.attrs["n_points"] = json.loads(dt.attrs["n_points"])[i]
    out.attrs["data_hash"] = json.loads(out.attrs.pop("data_hashes"))[i]
    out.attrs["batch_fit"] = i
    out.attrs["result_kind"] = "law_batch_member"
    diag = dt["fit_diagnostics"].to_dataset().isel(fit=i)
    post = out["posterior"].to_dataset()
    tail = azs().ess(post, method="tail")  # the batch keeps R-hat and bulk ESS per fit; tail ESS from this fit's draws
    out.attrs["diagnostics"] = json.dumps({
        "parameters": [{"parameter": str(p), "rhat": float(diag["rhat"].sel(parameter=p)),
                        "ess_bulk": float(diag["ess_bulk"].sel(parameter=p)), "ess_tail": float(tail[str(p)])}
                       for p in diag["parameter"].values],
        "divergences": int(diag["divergences"]),
    })
    centres = json.loads(out.attrs.pop("centres", "[]"))
    if centres:  # this fit's centres in the layout of a single fit's attrs["centred"]
        out.attrs["centred"] = json.dumps({k: dict(v, centre=centres[i][k])
                                           for k, v in json.loads(out.attrs["centred"]).items()})
    return out


def _diagnostics(posterior: xr.Dataset, sample_stats: xr.Dataset) -> xr.Dataset:
    if posterior.sizes["chain"] > 1:
        rhat = azs().rhat(posterior)
    else:  # R-hat needs two chains; report NaN rather than a number that means nothing
        rhat = xr.full_like(posterior.isel(chain=0, draw=0, drop=True), np.nan)
    ess = azs().ess(posterior, method="bulk")
    out = xr.Dataset({
        "rhat": rhat.to_array("parameter"),
        "ess_bulk": ess.to_array("parameter"),
        "divergences": sample_stats["diverging"].sum(("chain", "draw")),
    })
    return out.transpose("fit", "parameter")


def _report(dt: xr.DataTree, law_id: str, strict: bool) -> None:
    diag = dt["fit_diagnostics"].to_dataset()
    bad_rhat = (diag["rhat"] > RHAT_LIMIT).any("parameter").values
    bad_div = (diag["divergences"] > 0).values
    dt.attrs["troubled_fits"] = json.dumps(np.flatnonzero(bad_rhat | bad_div).tolist())
    if not (bad_rhat.any() or bad_div.any()):
        return
    text = (f"fit_batch of law {law_id!r}: {int(bad_rhat.sum())} of {bad_rhat.size} fits have R-hat > {RHAT_LIMIT}, "
            f"{int(bad_div.sum())} have divergences (attrs['troubled_fits'] lists them; "
            "fit_diagnostics has the numbers)")
    if strict:
        raise SamplingError(text, result=dt)
    warnings.warn(text, SamplingWarning, stacklevel=3)
