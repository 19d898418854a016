"""Sampler settings as one value: :class:`NUTS`, accepted by every fit function, the CLI and the examples.

A fit function takes ``sampler=NUTS(...)``; the flat keywords of earlier versions (``num_chains=2``, ...) are still
accepted and folded into the value by :meth:`NUTS.coerce`, so there is one place that validates them, one set of
defaults and one record in the result (:meth:`NUTS.to_attrs`). The CLI and the examples share one argparse helper
(:func:`add_sampler_arguments`, :func:`sampler_from_args`), so every command spells the flags the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayescale.errors import ArgumentError

__all__ = ["CHAIN_METHODS", "DEVICES", "INITS", "KERNELS", "MEDIAN_START", "NUTS", "check_positive_ints",
           "start_settings", "SamplerSettingsError", "add_sampler_arguments", "sampler_from_args"]

#: How chains are laid out (numpyro's ``chain_method``, plus ``"auto"``: see :func:`bayescale.infer.fit.run_nuts`).
CHAIN_METHODS = ("auto", "parallel", "sequential", "vectorized")
#: Where chains start: ``"map"``, distinct draws around the best of a multi-start MAP search (:mod:`bayescale.infer.starts`);
#: ``"median"``, every chain at the prior median.
INITS = ("map", "median")
#: Where the sampler runs: ``"auto"`` (the device policy of :func:`bayescale._runtime.choose_platform`: small fits on
#: the CPU even when there is a GPU, batches and large data on the accelerator), or forced ``"cpu"`` / ``"gpu"``.
DEVICES = ("auto", "cpu", "gpu")
#: The MCMC kernel: ``"nuts"``; ``"chees"``, ChEES-HMC (jittered fixed-length HMC whose step size, trajectory length
#: and diagonal metric are adapted across a fit's chains; :func:`bayescale.fit_batch` only); ``"auto"``: NUTS for a
#: single fit, and for a batch the choice of :func:`bayescale.infer.batch.batch_kernel`.
KERNELS = ("auto", "nuts", "chees")


class SamplerSettingsError(ArgumentError):
    """Sampler settings that cannot be used (a wrong type, a value out of range, an unknown name)."""


def check_positive_ints(*, error: type[ArgumentError] = ArgumentError, **values: Any) -> None:
    """Raise ``error`` (an :class:`~bayescale.errors.ArgumentError`) naming the first of ``values`` that is not a
    positive integer; ``True`` is refused (a bool is an int to Python, never a count here). The one check of sampler
    settings and counts (draws, simulations, bins)."""
    for name, value in values.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
            raise error(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class NUTS:
    """Settings of the No-U-Turn sampler, validated on construction.

    Parameters
    ----------
    num_warmup, num_samples
        Adaptation steps and kept draws per chain.
    num_chains
        Independent chains (R-hat needs at least 2).
    target_accept_prob
        Step-size adaptation target in (0, 1); raise it (0.95, 0.99) when a fit reports divergences.
    dense_mass
        Adapt a dense mass matrix over the global parameters (per-run effects stay diagonal).
    chain_method
        One of :data:`CHAIN_METHODS`.
    max_tree_depth
        Largest tree depth (2**depth leapfrog steps per draw at most).
    regularize_mass
        Whether each adaptation window's mass-matrix estimate is shrunk toward ``1e-3 * I`` (Stan's regularisation,
        numpyro's ``regularize_mass_matrix``). ``None`` (default): only where a window could give a singular estimate
        (a dense block with more than half as many dimensions as the shortest window has draws); elsewhere the
        shrinkage swamps narrow posteriors and costs leapfrog steps (:func:`bayescale.infer.fit.regularizes_mass`).
        ``True``/``False`` force it. What a run used is ``attrs["sampler"]["mass_regularized"]``.
    init, num_starts
        Where chains start (one of :data:`INITS`) and, for ``"map"``, how many optimiser starts look for modes.
    progress_bar
        Show numpyro's progress bar; ``None``: when standard error is a terminal.
    device
        One of :data:`DEVICES`. ``"auto"``: on a machine with a GPU, a single fit with fewer than
        ``GPU_MIN_POINTS`` points runs on the CPU (NUTS on a GPU is latency-bound: the default Chinchilla fit took 92 s
        on an H200 against 15 s on 2 CPU cores), large data and batches of many chains on the GPU
        (:func:`bayescale._runtime.choose_platform`; docs/performance.md). ``"gpu"`` on a machine without one is an
        error. The platform used and why are recorded in ``attrs["sampler"]``.
    kernel
        One of :data:`KERNELS`. ``"chees"`` (ChEES-HMC, Hoffman, Radul & Sountsov 2021, through blackjax) is for
        :func:`bayescale.fit_batch`, where many chains advance in lockstep; single fits use NUTS. ``dense_mass``,
        ``max_tree_depth`` (beyond capping the trajectory at ``2**max_tree_depth`` steps) and ``regularize_mass`` are
        NUTS settings. ``attrs["sampler"]["algorithm"]`` records the kernel a run used.

    References
    ----------
    Hoffman & Gelman 2014, "The No-U-Turn Sampler", JMLR 15.
    Hoffman, Radul & Sountsov 2021, "An Adaptive-MCMC Scheme for Setting Trajectory Lengths in Hamiltonian Monte
    Carlo", AISTATS.
    """

    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    target_accept_prob: float = 0.9
    dense_mass: bool = True
    chain_method: str = "auto"
    max_tree_depth: int = 10
    regularize_mass: bool | None = None
    init: str = "map"
    num_starts: int = 4
    progress_bar: bool | None = None
    device: str = "auto"
    kernel: str = "auto"

    def __post_init__(self) -> None:
        check_positive_ints(error=SamplerSettingsError, **{name: getattr(self, name) for name in
                            ("num_warmup", "num_samples", "num_chains", "max_tree_depth", "num_starts")})
        p = self.target_accept_prob
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 < p < 1:
            raise SamplerSettingsError(f"target_accept_prob must be a number in (0, 1), got {p!r}")
        if not isinstance(self.dense_mass, (bool, np.bool_)):
            raise SamplerSettingsError(f"dense_mass must be True or False, got {self.dense_mass!r}")
        if self.regularize_mass is not None and not isinstance(self.regularize_mass, (bool, np.bool_)):
            raise SamplerSettingsError(f"regularize_mass must be True, False or None, got {self.regularize_mass!r}")
        if self.chain_method not in CHAIN_METHODS:
            raise SamplerSettingsError(f"chain_method {self.chain_method!r}: must be one of {list(CHAIN_METHODS)}")
        if self.init not in INITS:
            raise SamplerSettingsError(f"init {self.init!r}: must be one of {list(INITS)}")
        if self.device not in DEVICES:
            raise SamplerSettingsError(f"device {self.device!r}: must be one of {list(DEVICES)}")
        if self.kernel not in KERNELS:
            raise SamplerSettingsError(f"kernel {self.kernel!r}: must be one of {list(KERNELS)}")
        if self.progress_bar is not None and not isinstance(self.progress_bar, bool):
            raise SamplerSettingsError(f"progress_bar must be True, False or None, got {self.progress_bar!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def coerce(cls, sampler: NUTS | Mapping[str, Any] | None = None, **overrides: Any) -> NUTS:
        """One settings value from ``sampler`` (a :class:`NUTS`, a mapping of its fields, or ``None`` for the
        defaults) with ``overrides`` (flat keywords such as ``num_chains=2``) applied on top."""
        if sampler is None:
            base = cls()
        elif isinstance(sampler, cls):
            base = sampler
        elif isinstance(sampler, Mapping):
            base = cls._from_mapping(sampler)
        else:
            raise SamplerSettingsError(f"sampler must be a bayescale.NUTS, a dict of its settings or None, got "
                                       f"{type(sampler).__name__}")
        return base.replace(**overrides) if overrides else base

    @classmethod
    def _from_mapping(cls, values: Mapping[str, Any]) -> NUTS:
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise SamplerSettingsError(f"unknown sampler setting(s) {unknown}: must be among {list(cls.names())}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> NUTS:
        """A copy with ``changes`` applied (validated; unknown names are an error)."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise SamplerSettingsError(f"unknown sampler setting(s) {unknown}: must be among {list(self.names())}")
        return dataclasses.replace(self, **changes)

    def to_attrs(self, **extra: Any) -> str:
        """The settings as the JSON text stored in a result's ``attrs["sampler"]`` (with ``extra`` facts of the run:
        the resolved chain method, the key, the device)."""
        record = {"algorithm": "NUTS", **dataclasses.asdict(self), **extra}
        record.pop("progress_bar")  # display only: it changes nothing in the draws
        return json.dumps(record)

    @classmethod
    def from_attrs(cls, text: str) -> NUTS:
        """The settings recorded by :meth:`to_attrs` (facts of the run that are not settings are dropped)."""
        record = json.loads(text)
        if "platform" not in record:  # records before the device policy stored the platform as "device"
            record.pop("device", None)
        return cls(**{k: v for k, v in record.items() if k in cls.names() and k != "chain_method"} |
                   ({"chain_method": record["chain_method"]} if record.get("chain_method") in CHAIN_METHODS else {}))


def add_sampler_arguments(parser: argparse.ArgumentParser, defaults: NUTS | None = None) -> None:
    """Add the sampler flags every command and example shares: ``--chains --warmup --samples --target-accept
    --chain-method --max-tree-depth --init --device --no-progress``."""
    d = defaults or NUTS()
    group = parser.add_argument_group("sampler (NUTS)")
    group.add_argument("--chains", type=int, default=d.num_chains, help=f"chains (default {d.num_chains})")
    group.add_argument("--warmup", type=int, default=d.num_warmup, help=f"warmup steps per chain (default {d.num_warmup})")
    group.add_argument("--samples", type=int, default=d.num_samples, help=f"draws per chain (default {d.num_samples})")
    group.add_argument("--target-accept", type=float, default=d.target_accept_prob,
                       help=f"step-size adaptation target in (0, 1) (default {d.target_accept_prob})")
    group.add_argument("--chain-method", default=d.chain_method, choices=list(CHAIN_METHODS))
    group.add_argument("--max-tree-depth", type=int, default=d.max_tree_depth)
    group.add_argument("--init", default=d.init, choices=list(INITS), help=f"where chains start (default {d.init})")
    group.add_argument("--device", default=d.device, choices=list(DEVICES),
                       help=f"where the sampler runs (default {d.device}: small fits on the CPU, large ones and "
                            "batches on a GPU when there is one)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def sampler_from_args(args: argparse.Namespace) -> NUTS:
    """The :class:`NUTS` value of flags added by :func:`add_sampler_arguments`."""
    return NUTS(num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                target_accept_prob=args.target_accept, chain_method=args.chain_method,
                max_tree_depth=args.max_tree_depth, init=args.init, progress_bar=False if args.no_progress else None,
                device=getattr(args, "device", "auto"))


#: The default of fit functions whose chains start at the prior median (schedule laws, the special models).
MEDIAN_START = NUTS(init="median")


def start_settings(sampler: NUTS | Mapping[str, Any] | None, options: Mapping[str, Any], what: str,
                   default: NUTS = MEDIAN_START, inits: tuple[str, ...] = INITS) -> NUTS:
    """The sampler settings of a fit function: ``default`` when ``sampler`` is None, ``options`` on top. Every fit
    that samples with :func:`bayescale.infer.fit.run_nuts` takes both starts (``init="median"``, ``"map"``); one that
    cannot (a vectorised batch) names the ones it takes in ``inits``, and a :class:`SamplerSettingsError` says so."""
    settings = NUTS.coerce(default if sampler is None else sampler, **options)
    if settings.init not in inits:
        raise SamplerSettingsError(f"{what} starts chains with init={inits[0]!r} only; init={settings.init!r} is not "
                                   f"available there (pass init={inits[0]!r} or leave it out)")
    return settings
