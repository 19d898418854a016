"""Loss curves under a learning-rate schedule: schedules, schedule laws, their Bayesian fit and cross-schedule prediction.

A *schedule law* predicts the loss of a run at step ``s`` from the whole sequence of learning rates up to ``s``, which
the formula catalogue (one row of inputs → one loss) cannot express. This module is the one mechanism for them:

- :func:`lr_schedule` turns a spec (``constant``, ``cosine``, ``wsd``, ``step``, each with linear warmup) into a
  :class:`Schedule` (the LR of every step); :func:`schedule_from_array` wraps a logged LR sequence.
- Law files in ``models/schedule_laws/*.toml`` (priors, citation, published constants and a ``schedule_law`` field
  naming the form) are read by :func:`load_schedule_law`. Forms (:data:`FORMS`): ``"multi_power"`` (Luo et al. 2025,
  :func:`multi_power_loss`) and ``"annealing"`` (Tissue et al. 2024, :func:`annealing_loss`).
- :func:`fit_schedule` fits a law to several runs' curves with NUTS (:func:`bayescale.infer.fit.run_nuts`) under the
  curve noise model of :mod:`bayescale.infer.noise` (run effect + Ornstein-Uhlenbeck residuals along ln step) and returns a
  DataTree; :func:`predict_schedule` predicts a new schedule's whole curve with 50/90% bands, in bounded memory
  (chunks of ``chunk_size`` elements), as a new run or as a branch of a fitted run (``branch_from``).
- :func:`simulate_schedule_curves` draws curves from a law at known constants (recovery tests, the example), branches
  of runs included.

Conventions (docs/schedules.md): steps are 1-based, ``lr[s-1]`` is the learning rate η_s used at step ``s``; the
first ``warmup_steps`` steps are warmup; the drop of step k is ``η_{k−1} − η_k``; S1(s) = Σ_{i≤s} η_i includes the
warmup area S_W (Luo's ``S1(t) + S_W``). How the warmup enters each law is the law file's ``convention``
(:data:`CONVENTIONS`): the authors' code's (``"all_steps"`` for the multi-power law, ``"warmup_at_peak"`` for the
annealing law), in which their published constants were fitted, or ``"post_warmup"``. Losses are evaluated only at
logged steps.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pandas as pd
import xarray as xr

from bayescale.laws.formula import FormulaError
from bayescale.infer.fit import as_key, build_result, draw_groups, run_nuts
from bayescale.laws.catalogue import LawError, Parameter, Published, law_search_path, read_law_toml
from bayescale.infer.model import LIKELIHOODS, NOISE_PRIORS, observe
from bayescale.infer.noise import Noise, curve_structure, linear_recurrence, ou_terms
from bayescale.laws.priors import Prior, parse_prior
from bayescale.infer.settings import NUTS, start_settings
from bayescale.results.predict import numpy_rng, standard_noise

__all__ = [
    "AUTHORS_CONVENTION",
    "CONVENTIONS",
    "FORMS",
    "LUO_SETUP",
    "PREDICT_CHUNK",
    "TISSUE_TRUTH",
    "SCHEDULE_KINDS",
    "SCHEDULE_NOISE_PRIORS",
    "Schedule",
    "ScheduleLaw",
    "annealing_loss",
    "fit_schedule",
    "list_schedule_laws",
    "load_schedule_law",
    "lr_schedule",
    "multi_power_loss",
    "predict_schedule",
    "schedule_from_array",
    "simulate_schedule_curves",
]

SCHEDULE_KINDS = ("constant", "cosine", "wsd", "step")

#: The training setup of Luo et al.'s published multi-power law fits (400M model, authors' repository config):
#: 24000 steps, peak LR 3e-4, 2160 linear-warmup steps; 3e-5 is the final LR of their decaying schedules.
LUO_SETUP = dict(total_steps=24000, peak_lr=3e-4, warmup_steps=2160)

#: Simulator truth for the annealing law (chosen, not published; LAWS.md gives no constants): the least-squares fit
#: (in nats, 200 steps per curve) of the annealing law (lam = 0.999, convention "warmup_at_peak") to the noiseless
#: multi-power-law curves of the 400M model (published constants, convention "all_steps", LUO_SETUP) under constant,
#: cosine and WSD (20% linear decay) schedules to 3e-5; largest deviation 0.028 nats.
TISSUE_TRUTH = dict(L0=2.67331998, A=0.63545864, alpha=0.74514865, C=0.52790118)
DECAY_SHAPES = ("linear", "exponential", "cosine")

#: Noise priors of curve fits (log-loss units). sigma and ell as for `fit` (bayescale.infer.model.NOISE_PRIORS). tau, the
#: offset of a whole run from the law: schedule studies compare runs of one model size on one data order, and seed
#: spread of final losses is 0.3-1% (LAWS.md, "practice"), i.e. 0.003-0.01 in log-loss; HalfNormal(0.01) puts 90% of
#: its mass below 0.016. The wider HalfNormal(0.05) of `fit` would be the prior's, not the data's, say on a new run's
#: band when only 2-3 runs are fitted.
SCHEDULE_NOISE_PRIORS = {"sigma": NOISE_PRIORS["sigma"], "nu": NOISE_PRIORS["nu"], "tau": "HalfNormal(0.01)",
                         "ell": NOISE_PRIORS["ell"]}


# ---------------------------------------------------------------------------------------------------------
# Schedules
@dataclass(frozen=True, eq=False)
class Schedule:
    """The learning rate of every step of one run.

    ``lr[s-1]`` is the LR used at step ``s`` (steps are 1-based); the first ``warmup_steps`` steps are warmup.
    ``spec`` records how the schedule was made (``{"kind": "array"}`` for a logged sequence).
    """

    lr: np.ndarray
    warmup_steps: int = 0
    spec: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return int(self.lr.size)

    @property
    def warmup_area(self) -> float:
        """S_W: the sum of the warmup steps' learning rates."""
        return float(self.lr[: self.warmup_steps].sum())

    def to_json(self) -> str:
        return json.dumps(dict(self.spec) | {"warmup_steps": self.warmup_steps, "total_steps": self.total_steps})


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def lr_schedule(
    kind: str,
    *,
    total_steps: int,
    peak_lr: float,
    warmup_steps: int = 0,
    final_lr: float | None = None,
    decay_steps: int | None = None,
    decay_shape: str = "linear",
    milestones: Sequence[int] = (),
    decay_factor: float = 0.1,
) -> Schedule:
    """The learning rate of every step for a schedule spec, with linear warmup.

    Warmup: η_s = peak_lr · s / warmup_steps for s = 1..warmup_steps (the last warmup step is at the peak). After it,
    with u the post-warmup step k = s − warmup_steps and K = total_steps − warmup_steps:

    - ``"constant"``: η = peak_lr.
    - ``"cosine"``: η = final + (peak − final)·(1 + cos(π k / K))/2, reaching ``final_lr`` at the last step.
    - ``"wsd"`` (warmup-stable-decay): peak_lr, then over the last ``decay_steps`` steps a ``decay_shape`` decay
      (``"linear"``, ``"exponential"`` i.e. geometric, or ``"cosine"``) reaching ``final_lr`` at the last step.
    - ``"step"``: peak_lr · decay_factor^m, m the number of ``milestones`` before the step (the LR changes at step
      milestone + 1, as torch's MultiStepLR).

    ``final_lr`` defaults to peak_lr / 10 and must be > 0: the multi-power law raises η_k to a negative power.
    """
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"schedule kind {kind!r}: must be one of {list(SCHEDULE_KINDS)}")
    total = _check_int("total_steps", total_steps, 2)
    warmup = _check_int("warmup_steps", warmup_steps, 0, total - 1)
    peak = _check_positive("peak_lr", peak_lr)
    final = peak / 10 if final_lr is None else _check_positive("final_lr", final_lr)
    if final > peak:
        raise ValueError(f"final_lr ({final:g}) must not exceed peak_lr ({peak:g})")
    s = np.arange(1, total + 1, dtype=float)
    k = s - warmup
    n_post = total - warmup
    spec: dict[str, Any] = dict(kind=kind, total_steps=total, peak_lr=peak, warmup_steps=warmup)
    if kind == "constant":
        post = np.full(total, peak)
    elif kind == "cosine":
        post = final + (peak - final) * 0.5 * (1 + np.cos(np.pi * k / n_post))
        spec["final_lr"] = final
    elif kind == "wsd":
        if decay_steps is None:
            raise ValueError("schedule 'wsd' needs decay_steps (the length of the decay at the end)")
        decay = _check_int("decay_steps", decay_steps, 1, n_post)
        if decay_shape not in DECAY_SHAPES:
            raise ValueError(f"decay_shape {decay_shape!r}: must be one of {list(DECAY_SHAPES)}")
        u = np.clip((s - (total - decay)) / decay, 0.0, 1.0)
        shapes = {
            "linear": peak + (final - peak) * u,
            "exponential": peak * (final / peak) ** u,
            "cosine": final + (peak - final) * 0.5 * (1 + np.cos(np.pi * u)),
        }
        post = shapes[decay_shape]
        spec.update(final_lr=final, decay_steps=decay, decay_shape=decay_shape)
    else:  # step
        ms = [_check_int("milestones[i]", m, warmup + 1, total - 1) for m in milestones]
        if not ms or any(b <= a for a, b in zip(ms, ms[1:])):
            raise ValueError(f"schedule 'step' needs strictly increasing milestones in [{warmup + 1}, {total - 1}], "
                             f"got {list(milestones)!r}")
        factor = _check_positive("decay_factor", decay_factor)
        post = peak * factor ** np.searchsorted(np.asarray(ms), s, side="left").astype(float)
        spec.update(milestones=ms, decay_factor=factor)
    lr = np.where(s <= warmup, peak * s / max(warmup, 1), post)
    return Schedule(lr=lr, warmup_steps=warmup, spec=spec)


def schedule_from_array(lr: Any, *, warmup_steps: int = 0) -> Schedule:
    """A :class:`Schedule` from a logged per-step LR sequence (``lr[s-1]`` used at step ``s``).

    Every LR must be finite and ≥ 0, and > 0 after warmup (the multi-power law raises it to a negative power).
    """
    arr = np.asarray(lr, dtype=float) if not isinstance(lr, Schedule) else lr.lr
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"lr must be a 1-D sequence of at least 2 per-step learning rates, got shape {arr.shape}")
    warmup = _check_int("warmup_steps", warmup_steps, 0, arr.size - 1)
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        raise ValueError(f"lr must be finite and >= 0; step {bad[0] + 1} has {arr[bad[0]]!r}")
    zero = np.flatnonzero(arr[warmup:] <= 0)
    if zero.size:
        raise ValueError(f"lr must be > 0 after warmup; step {warmup + zero[0] + 1} has lr 0")
    return Schedule(lr=arr.copy(), warmup_steps=warmup, spec={"kind": "array"})


# ---------------------------------------------------------------------------------------------------------
# The two laws as JAX functions of (params, lr sequence, evaluation steps)
#: How the warmup enters each form, as a law file declares it in ``convention`` (docs/schedules.md, "Conventions"):
#:
#: - multi-power law, ``"all_steps"`` (Luo et al.'s code, which fitted their published constants): the loss-reduction
#:   sum runs over every step from the second on, the warmup ramp included, where η_{k−1} − η_k is negative and raises
#:   the loss; ``"post_warmup"`` (their paper's Eq. as written): only post-warmup steps, η_0 the last warmup LR.
#: - annealing law, ``"warmup_at_peak"`` (Tissue et al.'s code): warmup steps count at the LR of the last warmup step
#:   (the peak) in S1 and have no drop; ``"post_warmup"``: S1 sums the warmup's actual LRs. S2 is the same in both.
#:
#: A law file without ``convention`` means ``"post_warmup"``, what bayescale used before conventions existed (results
#: saved then reload and predict unchanged).
CONVENTIONS: dict[str, tuple[str, ...]] = {
    "multi_power": ("all_steps", "post_warmup"),
    "annealing": ("warmup_at_peak", "post_warmup"),
}
#: The convention of each form's authors' code (the one their published constants belong to).
AUTHORS_CONVENTION = {"multi_power": "all_steps", "annealing": "warmup_at_peak"}


def _check_convention(form: str, convention: str, where: str = "convention") -> str:
    if convention not in CONVENTIONS[form]:
        raise ValueError(f"{where} {convention!r} for form {form!r}: must be one of {list(CONVENTIONS[form])}")
    return convention


def _drop_terms(lr: Any, warmup_steps: int, convention: str) -> tuple[Any, Any]:
    """The multi-power law's loss-reduction terms: 0-based global index g of each term's step and its drop
    η_{g−1} − η_g (numpy or JAX arrays alike).

    ``"all_steps"``: g = 1..n−1, the previous step's LR (the first step has no term). ``"post_warmup"``: the post-warmup
    steps g = W..n−1, the previous LR of the first being the last warmup step's (its own without warmup, a zero drop).
    """
    xp = np if isinstance(lr, np.ndarray) else jnp
    if convention == "all_steps":
        return xp.arange(1, lr.size), lr[:-1] - lr[1:]
    post = lr[warmup_steps:]
    first = lr[warmup_steps - 1 : warmup_steps] if warmup_steps > 0 else lr[:1]
    return warmup_steps + xp.arange(post.size), xp.concatenate([first, post[:-1]]) - post


def _G(x, C, beta):
    """G(x) = 1 − (C x + 1)^(−β), via expm1/log1p so small C·x keeps its digits."""
    return -jnp.expm1(-beta * jnp.log1p(C * x))


@functools.partial(jax.jit, static_argnames=("warmup_steps", "convention"))
def multi_power_loss(params: Mapping[str, Any], lr: Any, steps: Any, *, warmup_steps: int = 0,
                     convention: str = "all_steps") -> jnp.ndarray:
    """The multi-power law at logged steps, exactly (every step's LR drop), in JAX.

    L(s) = L0 + A·S1(s)^(−α) − B·Σ_k (η_{k−1} − η_k)·G(η_k^(−γ)·S_k(s)),  G(x) = 1 − (C x + 1)^(−β),

    with S1(s) = Σ_{i≤s} η_i (the warmup area S_W included) and S_k(s) = Σ_{τ=k}^{s} η_τ, all from one cumulative sum.
    The sum runs over steps k = 2..s (``convention="all_steps"``, the default: the authors' code, whose published
    constants assume it; warmup's rising LR enters as negative drops) or over the post-warmup steps only, with η of
    the last warmup step before the first (``"post_warmup"``, the paper's Eq. 3 as written); see :data:`CONVENTIONS`.
    The sum is a masked (steps × terms) matrix: memory 8·len(steps)·n bytes; :func:`fit_schedule` can merge distant
    terms (``max_block``) for long curves. Compiled as one program per shape of ``lr`` and ``steps``.

    References
    ----------
    Luo et al. 2025, "A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules", arXiv:2503.12811.
    """
    _check_convention("multi_power", convention)
    lr = jnp.asarray(lr, dtype=float)
    s = jnp.asarray(steps) - 1  # 0-based global index of each evaluation step
    cum0 = jnp.concatenate([jnp.zeros(1), jnp.cumsum(lr)])
    g, drop = _drop_terms(lr, warmup_steps, convention)
    eta = lr[g]
    seen = g[None, :] <= s[:, None]
    S_k = jnp.where(seen, cum0[s + 1][:, None] - cum0[g][None, :], 0.0)
    x = jnp.where(seen, eta[None, :] ** (-params["gamma"]) * S_k, 0.0)
    reduction = params["B"] * jnp.sum(jnp.where(seen, drop[None, :], 0.0) * _G(x, params["C"], params["beta"]), axis=1)
    return params["L0"] + params["A"] * cum0[s + 1] ** (-params["alpha"]) - reduction


@functools.partial(jax.jit, static_argnames=("warmup_steps", "convention"))
def annealing_areas(lr: Any, steps: Any, *, warmup_steps: int = 0, lam: float = 0.999,
                    convention: str = "warmup_at_peak") -> tuple[jnp.ndarray, jnp.ndarray]:
    """S1 (forward area, warmup included) and S2 (annealing area with momentum) of Tissue et al. at logged steps.

    S1(s) = Σ_{i≤s} η_i, where under ``"warmup_at_peak"`` (the default, Tissue et al.'s code) every warmup step counts
    at the LR of the last warmup step; under ``"post_warmup"`` at its own LR. m_k = λ·m_{k−1} + (η_{k−1} − η_k) over
    post-warmup steps (m_0 = 0, η_0 the last warmup LR) by a linear recurrence
    (:func:`bayescale.infer.noise.linear_recurrence`), S2(t) = Σ_{k≤t} m_k by a cumulative sum; 0 at warmup steps.
    Compiled as one program per shape of ``lr`` and ``steps``.
    """
    _check_convention("annealing", convention)
    lr = jnp.asarray(lr, dtype=float)
    s = jnp.asarray(steps) - 1
    _, drop = _drop_terms(lr, warmup_steps, "post_warmup")
    m = linear_recurrence(jnp.full(drop.shape, lam, dtype=float), drop)
    S2 = jnp.concatenate([jnp.zeros(warmup_steps + 1), jnp.cumsum(m)])[s + 1]
    if convention == "warmup_at_peak" and warmup_steps > 0:
        lr = jnp.concatenate([jnp.full(warmup_steps, lr[warmup_steps - 1]), lr[warmup_steps:]])
    return jnp.cumsum(lr)[s], S2


def annealing_loss(
    params: Mapping[str, Any], lr: Any, steps: Any, *, warmup_steps: int = 0, lam: float = 0.999,
    convention: str = "warmup_at_peak",
) -> jnp.ndarray:
    """The annealing law L(s) = L0 + A·S1^(−α) − C·S2 at logged steps (see :func:`annealing_areas`).

    References
    ----------
    Tissue et al. 2024, "Scaling Law with Learning Rate Annealing", arXiv:2408.11029.
    """
    S1, S2 = annealing_areas(lr, steps, warmup_steps=warmup_steps, lam=lam, convention=convention)
    return params["L0"] + params["A"] * S1 ** (-params["alpha"]) - params["C"] * S2


# ---------------------------------------------------------------------------------------------------------
# Designs: the data-only arrays the laws need at each logged point (computed once, outside jit)
def _mpl_blocks(schedule: Schedule, steps: np.ndarray, max_block: int, convention: str) -> dict[str, np.ndarray]:
    """The (possibly merged) loss-reduction terms of a run logged at ``steps``, as 1-D arrays over blocks.

    Terms are the steps of :func:`_drop_terms` with a non-zero drop. With ``max_block`` > 1, the terms between two
    consecutive logged steps are merged into blocks counted back from the later logged step with sizes 1, 2, 4, ...
    capped at ``max_block`` steps, so the terms nearest each logged step, where G changes fastest, stay (nearly)
    single. A block enters with its summed drop and the |drop|-weighted means of η and of the cumulative LR before it:
    exact for ``max_block=1``, a midpoint rule otherwise (error measured in docs/schedules.md). Returns ``g`` (the
    block's last 0-based step: a logged step at index ≥ g sees it), ``drop``, ``log_eta``, ``cum`` per block and
    ``cum0`` (the cumulative LR, 0 first) to evaluate rows with :func:`_mpl_rows`.
    """
    lr = schedule.lr
    cum0 = np.concatenate([[0.0], np.cumsum(lr)])
    g, drop = _drop_terms(lr, schedule.warmup_steps, convention)
    idx = np.unique(steps - 1)
    keep = (drop != 0) & (g <= idx.max())
    g, drop = g[keep], drop[keep]
    if np.any(lr[g] <= 0):
        at = int(g[np.argmax(lr[g] <= 0)]) + 1
        raise ValueError(f"the learning rate falls to 0 at step {at} (in the warmup): the multi-power law raises each "
                         "step's LR to the power -gamma; start the warmup at 0 and keep it rising")
    bounds: list[tuple[int, int]] = []  # blocks as [start, stop) ranges into g
    for lo, hi in zip(np.r_[-1, idx][:-1], idx):
        first, end = np.searchsorted(g, lo, side="right"), np.searchsorted(g, hi, side="right")
        size = 1
        while end > first:
            start = max(first, int(np.searchsorted(g, g[end - 1] - size, side="right")))
            bounds.append((start, end))
            end, size = start, min(2 * size, max_block)
    bounds.sort()
    starts = np.array([b[0] for b in bounds], dtype=np.int64)
    stops = np.array([b[1] for b in bounds], dtype=np.int64)
    weight = np.abs(drop)
    cw = lambda a: np.concatenate([[0.0], np.cumsum(a)])  # noqa: E731  (block sums from prefix sums)
    block_sum = lambda a: (cw(a)[stops] - cw(a)[starts]) if starts.size else np.zeros(0)  # noqa: E731
    w_sum = block_sum(weight)
    return dict(g=g[stops - 1] if starts.size else np.zeros(0, dtype=np.int64), drop=block_sum(drop),
                log_eta=np.log(block_sum(weight * lr[g]) / w_sum) if starts.size else np.zeros(0),
                cum=block_sum(weight * cum0[g]) / w_sum if starts.size else np.zeros(0), cum0=cum0)


def _mpl_rows(blocks: Mapping[str, np.ndarray], steps: np.ndarray, width: int | None = None) -> dict[str, np.ndarray]:
    """Per logged step: S1 and the block terms it sees (drop, log η, S_k(t)), zero beyond them, padded to ``width``."""
    idx = steps - 1
    seen = blocks["g"][None, :] <= idx[:, None]
    total = blocks["cum0"][idx + 1]
    rows = dict(S1=total, drop=np.where(seen, blocks["drop"][None, :], 0.0),
                log_eta=np.where(seen, blocks["log_eta"][None, :], 0.0),
                S=np.where(seen, total[:, None] - blocks["cum"][None, :], 0.0))
    if width is not None and width > blocks["g"].size:  # zero terms contribute nothing
        for key in ("drop", "log_eta", "S"):
            rows[key] = np.pad(rows[key], ((0, 0), (0, width - blocks["g"].size)))
    return rows


def _design(form: str, schedules: Sequence[Schedule], steps: Sequence[np.ndarray], fixed: Mapping[str, float],
            max_block: int, convention: str) -> dict[str, jnp.ndarray]:
    """Concatenated per-point arrays for runs (``steps[r]`` are run r's logged steps)."""
    if form == "annealing":
        parts = [annealing_areas(sc.lr, st, warmup_steps=sc.warmup_steps, lam=fixed["lam"], convention=convention)
                 for sc, st in zip(schedules, steps)]
        return {"S1": jnp.concatenate([p[0] for p in parts]), "S2": jnp.concatenate([p[1] for p in parts])}
    blocks = [_mpl_blocks(sc, st, max_block, convention) for sc, st in zip(schedules, steps)]
    width = max(1, max(b["g"].size for b in blocks))
    rows = [_mpl_rows(b, st, width) for b, st in zip(blocks, steps)]
    return {key: jnp.asarray(np.concatenate([r[key] for r in rows])) for key in ("S1", "drop", "log_eta", "S")}


def _mean_multi_power(p: Mapping[str, Any], d: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
    x = jnp.exp(-p["gamma"] * d["log_eta"]) * d["S"]
    return p["L0"] + p["A"] * d["S1"] ** (-p["alpha"]) - p["B"] * jnp.sum(d["drop"] * _G(x, p["C"], p["beta"]), axis=1)


def _mean_annealing(p: Mapping[str, Any], d: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
    return p["L0"] + p["A"] * d["S1"] ** (-p["alpha"]) - p["C"] * d["S2"]


#: Forms a schedule law file may name in ``schedule_law``: mean loss from (params, design), and the fixed constants.
FORMS: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "multi_power": (_mean_multi_power, ()),
    "annealing": (_mean_annealing, ("lam",)),
}


# ---------------------------------------------------------------------------------------------------------
# Law files
@dataclass(frozen=True, eq=False)
class ScheduleLaw:
    """A schedule law read from ``models/schedule_laws/<id>.toml``: form, priors, fixed constants, citation, and the
    ``convention`` (:data:`CONVENTIONS`) in which its formula is evaluated and its published constants were fitted."""

    id: str
    title: str
    form: str
    parameters: tuple[Parameter, ...]
    fixed: Mapping[str, float]
    formula: str = ""
    citation: str = ""
    notes: str = ""
    published: tuple[Published, ...] = ()
    source_text: str = ""
    convention: str = "post_warmup"

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def reference(self, source: str) -> Published:
        for p in self.published:
            if p.source == source:
                return p
        raise LawError(f"law {self.id!r} has no published constants {source!r}; "
                       f"must be one of {[p.source for p in self.published]}")

    def loss(self, params: Mapping[str, Any], schedule: Schedule, steps: Any) -> np.ndarray:
        """The law's loss at ``steps`` of ``schedule`` for one parameter set (exact)."""
        steps = _check_steps(steps, schedule, "steps")
        common = dict(warmup_steps=schedule.warmup_steps, convention=self.convention)
        if self.form == "multi_power":
            return np.asarray(multi_power_loss(params, schedule.lr, steps, **common))
        return np.asarray(annealing_loss(params, schedule.lr, steps, **common, **self.fixed))


_LAW_KEYS = {"id", "title", "schedule_law", "convention", "formula", "citation", "notes", "parameters", "fixed",
             "published"}


def schedule_law_folders() -> list[Path]:
    """Folders searched for schedule laws: ``schedule_laws/`` inside each folder of the law search path."""
    return [p / "schedule_laws" for p in law_search_path() if (p / "schedule_laws").is_dir()]


def list_schedule_laws() -> list[str]:
    """Ids of the schedule laws (``models/schedule_laws/*.toml``)."""
    return sorted({p.stem for folder in schedule_law_folders() for p in folder.glob("*.toml")})


def load_schedule_law(name: str | os.PathLike | ScheduleLaw) -> ScheduleLaw:
    """Load a schedule law by id (``"luo2025_mpl"``, ``"tissue2024"``) or from a TOML path."""
    if isinstance(name, ScheduleLaw):
        return name
    path = Path(name)
    if path.suffix != ".toml":
        found = [f / f"{name}.toml" for f in schedule_law_folders() if (f / f"{name}.toml").is_file()]
        if not found:
            raise LawError(f"unknown schedule law {str(name)!r}: must be one of {list_schedule_laws()} or a .toml path")
        path = found[0]
    if not path.is_file():
        raise LawError(f"schedule law file {str(path)!r} does not exist")
    return parse_schedule_law(path.read_text(), origin=str(path))


def parse_schedule_law(text: str, origin: str = "<string>") -> ScheduleLaw:
    """Parse a schedule law file (format of ``models/schedule_laws/*.toml``)."""
    data = read_law_toml(text, origin, _LAW_KEYS, ("id", "schedule_law", "parameters"))
    form = data["schedule_law"]
    if form not in FORMS:
        raise LawError(f"{origin}: schedule_law {form!r}: must be one of {list(FORMS)}")
    fn, fixed_names = FORMS[form]
    convention = data.get("convention", "post_warmup")
    if convention not in CONVENTIONS[form]:
        raise LawError(f"{origin}: convention {convention!r} for form {form!r}: must be one of {list(CONVENTIONS[form])}")
    fixed = {k: float(v) for k, v in data.get("fixed", {}).items()}
    if sorted(fixed) != sorted(fixed_names):
        raise LawError(f"{origin}: form {form!r} needs fixed constants {list(fixed_names)}, got {sorted(fixed)}")
    try:
        parameters = tuple(Parameter(n, parse_prior(spec["prior"]), str(spec.get("description", "")))
                           for n, spec in data["parameters"].items())
    except (FormulaError, KeyError, TypeError) as err:
        raise LawError(f"{origin}: every parameter needs a valid prior: {err}") from None
    needed = {"multi_power": {"L0", "A", "alpha", "B", "C", "beta", "gamma"}, "annealing": {"L0", "A", "alpha", "C"}}[form]
    if {p.name for p in parameters} != needed:
        raise LawError(f"{origin}: form {form!r} has parameters {sorted(needed)}, "
                       f"the file declares {sorted(p.name for p in parameters)}")
    published = tuple(
        Published(src, str(spec.get("citation", "")), {k: float(v) for k, v in spec.get("values", {}).items()})
        for src, spec in data.get("published", {}).items()
    )
    return ScheduleLaw(id=str(data["id"]), title=str(data.get("title", data["id"])), form=form, parameters=parameters,
                       fixed=fixed, formula=str(data.get("formula", "")), citation=str(data.get("citation", "")),
                       notes=str(data.get("notes", "")).strip(), published=published, source_text=text,
                       convention=convention)


# ---------------------------------------------------------------------------------------------------------
# Validation of curves
def _check_steps(steps: Any, schedule: Schedule, where: str) -> np.ndarray:
    arr = np.asarray(steps)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{where}: steps must be a non-empty 1-D sequence of integers")
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise ValueError(f"{where}: steps must be whole numbers, got {arr[:5].tolist()}...")
        arr = arr.astype(np.int64)
    low, high = schedule.warmup_steps + 1, schedule.total_steps
    bad = arr[(arr < low) | (arr > high)]
    if bad.size:
        raise ValueError(f"{where}: step {int(bad[0])} lies outside the schedule's post-warmup steps [{low}, {high}] "
                         "(the laws describe the loss after warmup)")
    return arr.astype(np.int64)


def _as_schedule(value: Any, name: str) -> Schedule:
    if isinstance(value, Schedule):
        return value
    if isinstance(value, Mapping):
        spec = dict(value)
        return lr_schedule(spec.pop("kind", None), **spec)
    try:
        return schedule_from_array(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"schedule of run {name!r}: {err}") from None


def _prepare(curves: pd.DataFrame, schedules: Mapping[str, Any]) -> tuple[xr.Dataset, dict[str, Schedule]]:
    """Validate a (run, step, loss) table against the runs' schedules; points sorted by (run, step)."""
    if not isinstance(curves, pd.DataFrame):
        raise TypeError(f"curves must be a pandas DataFrame with columns run, step, loss; got {type(curves).__name__}")
    missing = [c for c in ("run", "step", "loss") if c not in curves.columns]
    if missing:
        raise ValueError(f"curves lacks column(s) {missing}; needs run, step, loss (has {list(curves.columns)})")
    if not isinstance(schedules, Mapping) or not schedules:
        raise ValueError("schedules must be a non-empty mapping run name -> Schedule, spec dict or LR array")
    runs = [str(r) for r in pd.unique(curves["run"].astype(str))]
    unknown = sorted(set(runs) - {str(k) for k in schedules})
    if unknown:
        raise ValueError(f"curves has runs {unknown} with no schedule; schedules has {sorted(map(str, schedules))}")
    scheds = {str(k): _as_schedule(v, str(k)) for k, v in schedules.items() if str(k) in runs}
    loss = pd.to_numeric(curves["loss"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(loss) | (loss <= 0))
    if bad.size:
        raise ValueError(f"column 'loss': row {int(bad[0])} has {curves['loss'].iloc[bad[0]]!r}; losses must be finite and > 0")
    table = curves.assign(run=curves["run"].astype(str), loss=loss).sort_values(["run", "step"], kind="stable")
    for run, part in table.groupby("run", sort=False):
        _check_steps(part["step"].to_numpy(), scheds[run], f"column 'step', run {run!r}")
        if part["step"].duplicated().any():
            raise ValueError(f"column 'step', run {run!r}: step {int(part['step'][part['step'].duplicated()].iloc[0])} "
                             "appears twice")
    table = table.reset_index(drop=True)
    ds = xr.Dataset(
        {"loss": ("point", table["loss"].to_numpy()), "step": ("point", table["step"].to_numpy(np.int64))},
        coords={"point": np.arange(len(table)), "run": ("point", table["run"].to_numpy(dtype=str))},
    )
    return ds, scheds


def _steps_by_run(ds: xr.Dataset, names: Sequence[str]) -> list[np.ndarray]:
    run = ds["run"].values
    return [ds["step"].values[run == n] for n in names]


# ---------------------------------------------------------------------------------------------------------
# The model
def _noise_of(noise: str | Noise) -> Noise:
    parsed = Noise.parse(noise, axis="step") if noise != "auto" else Noise(True, True, axis="step")
    if parsed.heteroscedastic:
        raise ValueError(f"noise {noise!r}: 'hetero' is not available for schedule laws; use terms of 'run+ou'")
    return Noise(parsed.run_effect, parsed.correlation, False, axis="step", collapsed=parsed.collapsed)


def _build_model(law: ScheduleLaw, priors: Mapping[str, Prior], stats: Mapping[str, float], likelihood: str,
                 noise: Noise, structure: Mapping[str, Any]):
    dists = {name: prior.distribution(stats) for name, prior in priors.items()}
    mean_fn = FORMS[law.form][0]

    def model(design, loss=None):
        params = {name: numpyro.sample(name, dists[name]) for name in law.parameter_names}
        mu = jnp.log(jnp.maximum(mean_fn(params, design), 1e-10))  # a non-positive law value gets a hopeless fit
        observe(mu, loss, dists, likelihood=likelihood, noise=noise, structure=structure, statistics=stats)

    return model


def fit_schedule(
    law: str | os.PathLike | ScheduleLaw,
    curves: pd.DataFrame,
    schedules: Mapping[str, Any],
    *,
    sampler: NUTS | Mapping[str, Any] | None = None,
    rng_key: int | jax.Array = 0,
    likelihood: str = "normal",
    noise: str | Noise = "run+ou",
    priors: Mapping[str, str] | None = None,
    max_block: int = 64,
    num_prior_samples: int = 500,
    strict: bool = False,
    **sampler_options: Any,
) -> xr.DataTree:
    """Fit a schedule law to the loss curves of several runs with NUTS.

    Model, on log-loss: ``log y_{r,s} = log L(s; θ, η_r) + u_r + σ·w_{r,s}`` with L the law evaluated on run r's
    whole LR sequence η_r, ``u_r ~ Normal(0, tau)`` a run effect and w an Ornstein-Uhlenbeck process along ln(step)
    within each run (:mod:`bayescale.infer.noise`; exact conditional-chain likelihood): checkpoints of one curve are
    correlated, and a curve counts as one run, not as independent points. The law is evaluated in the convention
    its file declares (:data:`CONVENTIONS`), recorded in ``attrs["convention"]``.

    Parameters
    ----------
    law
        A schedule law id (:func:`list_schedule_laws`), a TOML path or a :class:`ScheduleLaw`.
    sampler, **sampler_options
        As in :func:`bayescale.fit`; chains start at the prior median (:data:`bayescale.infer.settings.MEDIAN_START`) unless ``init="map"``.
    curves
        Table with columns ``run``, ``step`` (1-based, after warmup), ``loss``.
    schedules
        Run name → :class:`Schedule`, spec dict (``{"kind": "cosine", "total_steps": ..., "peak_lr": ...}``) or
        per-step LR array (no warmup).
    likelihood
        ``"normal"`` (default) or ``"student_t"`` innovations.
    noise
        ``"run+ou"`` (default), ``"run"``, ``"ou"`` or ``"iid"``.
    priors
        Overrides, parameter name → prior expression (law and noise parameters; defaults :data:`SCHEDULE_NOISE_PRIORS`).
    max_block
        The multi-power law's sum merges distant LR-drop terms into blocks of at most this many steps (the terms
        next to each logged step stay single). 1: every step's term (exact). The default 64 changes a 24000-step
        curve by < 1e-4 nats and makes the sum 10-40x smaller (docs/schedules.md); the annealing law ignores it.

    Returns
    -------
    xarray.DataTree
        posterior, posterior_predictive, log_likelihood, sample_stats, prior, observed_data (loss over point, with
        run and step), constant_data (each run's LR sequence), references; provenance in attrs.
    """
    law = load_schedule_law(law)
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood {likelihood!r}: must be one of {list(LIKELIHOODS)}")
    settings = start_settings(sampler, sampler_options, "fit_schedule")
    _check_int("max_block", max_block, 1)
    ds, scheds = _prepare(curves, schedules)
    noise = _noise_of(noise)
    structure = curve_structure(ds, noise)
    names = [str(r) for r in structure["runs"]]
    stats = {"min_loss": float(ds["loss"].min()), "max_loss": float(ds["loss"].max())}
    noise_names = ("sigma", *(("nu",) if likelihood == "student_t" else ()), *noise.names)
    prior_specs = {p.name: p.prior for p in law.parameters} | {n: parse_prior(SCHEDULE_NOISE_PRIORS[n]) for n in noise_names}
    for name, text in (priors or {}).items():
        if name not in prior_specs:
            raise LawError(f"prior given for {name!r}, which is not a parameter; must be one of {sorted(prior_specs)}")
        prior_specs[name] = parse_prior(text)
    design = _design(law.form, [scheds[n] for n in names], _steps_by_run(ds, names), law.fixed, max_block,
                     law.convention)
    model = _build_model(law, prior_specs, stats, likelihood, noise, structure)
    key, key_record = as_key(rng_key)
    k_fit, k_ppc, k_prior = jax.random.split(key, 3)
    loss = jnp.asarray(ds["loss"].values)
    mcmc = run_nuts(model, design, rng_key=k_fit, sampler=settings, loss=loss)
    sampled = (*law.parameter_names, *noise_names)
    groups = draw_groups(model, (design,), mcmc, rng_key=(k_ppc, k_prior), observed={"loss": loss},
                         sampled_names=sampled, num_prior_samples=num_prior_samples)
    longest = max(s.total_steps for s in scheds.values())
    lr = np.full((len(names), longest), np.nan)
    for i, n in enumerate(names):
        lr[i, : scheds[n].total_steps] = scheds[n].lr
    references = {}
    if law.published:
        ref = xr.Dataset({p: ("source", [pub.values.get(p, np.nan) for pub in law.published]) for p in law.parameter_names},
                         coords={"source": [pub.source for pub in law.published]})
        ref["citation"] = ("source", [pub.citation for pub in law.published])
        references["references"] = ref
    return build_result(
        groups,
        dims={"loss": ["point"], "z_run": ["run"], "run_effect": ["run"]},
        coords={"point": ds["point"].values, "run": names},
        observed=ds.rename({"run": "point_run"}),
        constant=xr.Dataset(
            {"lr": (("run", "lr_step"), lr), "warmup_steps": ("run", [scheds[n].warmup_steps for n in names])},
            coords={"run": names, "lr_step": np.arange(1, longest + 1)}),
        result_kind="schedule_law",
        provenance={
            "law_id": law.id, "law_title": law.title, "law_formula": law.formula, "law_citation": law.citation,
            "law_source": law.source_text, "schedule_law": law.form, "convention": law.convention,
            "fixed": json.dumps(dict(law.fixed)), "n_points": int(ds.sizes["point"]), "n_runs": len(names),
            "parameters": json.dumps(list(law.parameter_names)), "noise_parameters": json.dumps(list(noise_names)),
            "schedules": json.dumps({n: json.loads(scheds[n].to_json()) for n in names}),
            "data_statistics": json.dumps(stats), "likelihood": likelihood, "noise": noise.to_json(),
            "max_block": int(max_block),
        },
        priors={k: v.text for k, v in prior_specs.items()},
        settings=settings,
        key_record=key_record,
        placement=mcmc.placement,
        start=mcmc.start_record,
        checked=(sampled, {name: p.distribution(stats) for name, p in prior_specs.items()}),
        strict=strict,
        extra_groups=references,
    )


# ---------------------------------------------------------------------------------------------------------
# Prediction
#: Default ``chunk_size`` of :func:`predict_schedule`: at most 2^22 (draw × step × term) elements, 32 MB per float64
#: array, evaluated at once (a few such temporaries live together inside the law's evaluation).
PREDICT_CHUNK = 2**22


def _evaluate_chunk(form: str, draws: Mapping[str, jnp.ndarray], rows: Mapping[str, jnp.ndarray]) -> np.ndarray:
    """The law's mean for a chunk of draws (leading axis) at a chunk of rows: one compiled shape per prediction."""
    if form not in _EVALUATORS:
        _EVALUATORS[form] = jax.jit(jax.vmap(FORMS[form][0], in_axes=(0, None)))
    return np.asarray(_EVALUATORS[form](draws, rows))


_EVALUATORS: dict[str, Callable] = {}


def _law_draws(form: str, draws: Mapping[str, np.ndarray], schedule: Schedule, steps: np.ndarray,
               fixed: Mapping[str, float], max_block: int, convention: str, chunk_size: int) -> np.ndarray:
    """The law's curve per posterior draw (draws × steps), in chunks of at most ``chunk_size`` (draw × step × term)
    elements: the multi-power terms are 1-D over blocks and only a chunk's rows are built, so memory stays
    O(chunk_size + draws × steps + terms) whatever the curve's length (docs/schedules.md, "Memory")."""
    n_draws = next(iter(draws.values())).size
    if form == "annealing":
        rows = _design(form, [schedule], [steps], fixed, max_block, convention)
        width, rows_of = 1, lambda sel: {k: v[sel] for k, v in rows.items()}  # noqa: E731
    else:
        blocks = _mpl_blocks(schedule, steps, max_block, convention)
        width = max(1, blocks["g"].size)
        rows_of = lambda sel: {k: jnp.asarray(v) for k, v in _mpl_rows(blocks, steps[sel], width).items()}  # noqa: E731
    n_steps = min(steps.size, max(1, chunk_size // width))
    n_sub = min(n_draws, max(1, chunk_size // (n_steps * width)))
    out = np.empty((n_draws, steps.size))
    for lo in range(0, steps.size, n_steps):
        sel = np.minimum(np.arange(lo, lo + n_steps), steps.size - 1)  # the last chunk repeats its last step: one shape
        rows = rows_of(sel)
        for d0 in range(0, n_draws, n_sub):
            pick = np.minimum(np.arange(d0, d0 + n_sub), n_draws - 1)
            mu = _evaluate_chunk(form, {k: jnp.asarray(v[pick]) for k, v in draws.items()}, rows)
            keep_d, keep_s = min(n_sub, n_draws - d0), min(n_steps, steps.size - lo)
            out[d0 : d0 + keep_d, lo : lo + keep_s] = mu[:keep_d, :keep_s]
    return out


def _shared_steps(parent_lr: np.ndarray, parent_warmup: int, schedule: Schedule, where: str) -> int:
    """The branch point of ``schedule`` from a run: the last step k up to which both have the same LRs (rtol 1e-12)."""
    if parent_warmup != schedule.warmup_steps:
        raise ValueError(f"{where}: the run has {parent_warmup} warmup steps, the schedule {schedule.warmup_steps}; "
                         "a branch shares its run's whole prefix")
    n = min(parent_lr.size, schedule.total_steps)
    differs = ~np.isclose(schedule.lr[:n], parent_lr[:n], rtol=1e-12, atol=0.0)
    k = int(np.argmax(differs)) if differs.any() else n
    if k <= parent_warmup:
        raise ValueError(f"{where}: the schedule's LR differs from the run's at step {k + 1}, inside or right after "
                         f"the warmup ({parent_warmup} steps); a branch must share at least one post-warmup step")
    return k


def _branch_point(result: xr.DataTree, run: str, schedule: Schedule) -> tuple[int, int | None, float | None]:
    """For a schedule branching from fitted run ``run``: the last step k it shares with the run (same warmup, same LR
    at steps 1..k), and the run's last observed checkpoint at or before k with its loss (None if there is none)."""
    const = result["constant_data"].to_dataset()
    runs = [str(r) for r in const["run"].values]
    if run not in runs:
        raise ValueError(f"branch_from {run!r} is not a run of the fit; must be one of {runs}")
    parent = const["lr"].sel(run=run).values
    k = _shared_steps(parent[np.isfinite(parent)], int(const["warmup_steps"].sel(run=run)), schedule,
                      f"branch_from {run!r}")
    obs = result["observed_data"].to_dataset()
    mine = (obs["point_run"].values.astype(str) == run) & (obs["step"].values <= k)
    if not mine.any():
        return k, None, None
    last = np.flatnonzero(mine)[np.argmax(obs["step"].values[mine])]
    return k, int(obs["step"].values[last]), float(obs["loss"].values[last])


def predict_schedule(
    result: xr.DataTree,
    schedule: Any,
    steps: Any = None,
    *,
    branch_from: str | None = None,
    rng_key: int | jax.Array = 0,
    max_block: int | None = None,
    levels: Sequence[float] = (0.5, 0.9),
    chunk_size: int = PREDICT_CHUNK,
) -> xr.Dataset:
    """Predict the whole loss curve of a run under ``schedule`` from a :func:`fit_schedule` result.

    Returns a Dataset over (``sample``, ``step``): ``law`` (the law's curve per posterior draw: parameter
    uncertainty) and ``loss`` (the run's curve: law + run effect + OU residuals along ln step with scale sigma),
    their central bands ``law_band`` / ``loss_band`` over ``quantile`` (for each level, the (1 − level)/2 and
    (1 + level)/2 quantiles, and the median), and ``lr`` over ``step``.

    Parameters
    ----------
    schedule
        A :class:`Schedule`, spec dict or per-step LR array.
    steps
        Steps to predict; default every post-warmup step (after the conditioning checkpoint for a branch), thinned to
        at most 500.
    branch_from
        ``None`` (default): a new run, with a fresh run effect u ~ N(0, tau) and a fresh OU path. A fitted run's name:
        ``schedule`` branches from that run (e.g. a WSD cooldown started at step k of a constant-LR run): it must
        have the run's warmup and LRs up to the branch point k (found as the last step whose LR equals the run's).
        The prediction then keeps the run's posterior run effect and starts the OU path from the run's residual at its
        last checkpoint at or before k (``conditioned_on_step`` in attrs); ``steps`` must lie after that checkpoint.
        Later checkpoints of the run are not used: they follow the run's schedule, not the branch's.
    max_block
        Block merge of the multi-power sum (:func:`fit_schedule`); defaults to the fit's.
    chunk_size
        The most (draw × step × term) elements the law is evaluated on at once (default :data:`PREDICT_CHUNK`):
        memory is bounded by it, not by draws × steps × terms (docs/schedules.md, "Memory").
    """
    if "schedule_law" not in result.attrs:
        raise ValueError("result is not a fit_schedule result (no 'schedule_law' attribute)")
    law = parse_schedule_law(result.attrs["law_source"], origin=f"result of {result.attrs['law_id']}")
    convention = str(result.attrs.get("convention", law.convention))
    schedule = _as_schedule(schedule, "<prediction>")
    if not all(0 < lv < 1 for lv in levels):
        raise ValueError(f"levels must lie in (0, 1), got {list(levels)}")
    _check_int("chunk_size", chunk_size, 1)
    block = int(result.attrs.get("max_block", 1)) if max_block is None else _check_int("max_block", max_block, 1)
    noise = Noise.from_attrs(result.attrs)
    anchor = branch_step = None
    if branch_from is not None:
        branch_step, anchor, anchor_loss = _branch_point(result, str(branch_from), schedule)
    first = schedule.warmup_steps + 1 if anchor is None else anchor + 1
    if steps is None:
        if first > schedule.total_steps:
            raise ValueError(f"branch_from {branch_from!r}: no step of the schedule lies after the run's checkpoint "
                             f"at step {anchor}")
        steps = np.unique(np.linspace(first, schedule.total_steps, 500).round().astype(np.int64))
    steps = np.unique(_check_steps(steps, schedule, "predict_schedule"))
    if anchor is not None and steps[0] <= anchor:
        raise ValueError(f"predict_schedule: step {int(steps[0])} is at or before step {anchor}, the last checkpoint of "
                         f"run {branch_from!r} before the branch: that part of the curve is the run's own (observed)")
    post = result["posterior"].to_dataset()
    draws = {n: post[n].values.reshape(-1) for n in law.parameter_names}
    eval_steps = steps if anchor is None else np.r_[anchor, steps]
    mu_all = _law_draws(law.form, draws, schedule, eval_steps, law.fixed, block, convention, chunk_size)
    mu = mu_all if anchor is None else mu_all[:, 1:]
    n_draws = mu.shape[0]
    key, _ = as_key(rng_key)
    k_u, k_eps = jax.random.split(key)
    sigma = post["sigma"].values.reshape(-1)[:, None]
    tau = post["tau"].values.reshape(-1)[:, None] if noise.run_effect else 0.0
    # NumPy's t sampler compiles nothing (jax.random.t: a new program for every shape)
    nu = post["nu"].values.reshape(-1)[:, None] if result.attrs.get("likelihood") == "student_t" else None
    eps = standard_noise(numpy_rng(k_eps), nu, mu.shape)
    if branch_from is not None and noise.run_effect:
        u = post["run_effect"].sel(run=str(branch_from)).values.reshape(-1, 1)
    else:
        u = np.asarray(jax.random.normal(k_u, (n_draws, 1))) * tau
    if noise.correlation:
        ell = jnp.asarray(post["ell"].values.reshape(-1))
        start = np.log(steps[0]) if anchor is None else np.log(anchor)
        dlog = jnp.asarray(np.diff(np.log(steps), prepend=start))
        has_prev = jnp.asarray((np.arange(steps.size) > 0) | (anchor is not None))
        phi, root = jax.vmap(lambda e: ou_terms(dlog, has_prev, e))(ell)
        innovation = np.asarray(root) * eps
        if anchor is not None:  # the OU state at the run's checkpoint, per draw, carried into the first step
            w_anchor = (np.log(anchor_loss) - np.log(mu_all[:, 0]) - u[:, 0]) / sigma[:, 0]
            innovation[:, 0] += np.asarray(phi)[:, 0] * w_anchor
        w = np.asarray(jax.vmap(linear_recurrence)(phi, jnp.asarray(innovation)))
    else:
        w = eps
    with np.errstate(invalid="ignore"):
        loss = np.exp(np.log(mu) + u + sigma * w)
    qs = sorted({0.5, *[round((1 - lv) / 2, 10) for lv in levels], *[round((1 + lv) / 2, 10) for lv in levels]})
    out = xr.Dataset(
        {"law": (("sample", "step"), mu), "loss": (("sample", "step"), loss), "lr": ("step", schedule.lr[steps - 1])},
        coords={"sample": np.arange(n_draws), "step": steps},
    )
    out["law_band"] = out["law"].quantile(qs, dim="sample")
    out["loss_band"] = out["loss"].quantile(qs, dim="sample")
    out.attrs.update(law_id=law.id, schedule=schedule.to_json(), levels=json.dumps(list(levels)), max_block=block,
                     convention=convention, chunk_size=int(chunk_size))
    if branch_from is not None:
        out.attrs.update(branch_from=str(branch_from), branch_step=int(branch_step),
                         conditioned_on_step=-1 if anchor is None else int(anchor))
    return out


# ---------------------------------------------------------------------------------------------------------
# Simulator
def _checkpoint_steps(start: int, total: int, n: int) -> np.ndarray:
    """``n`` evenly spaced logged steps after step ``start`` up to ``total``."""
    first = start + max(1, (total - start) // n)
    return np.unique(np.linspace(first, total, n).round().astype(np.int64))


def _ou_path(points: np.ndarray, ell: float, rng: np.random.Generator, start: float | None = None) -> np.ndarray:
    """A standardised OU path along ln(step) at ``points``: stationary at the first point, or ``start`` there."""
    phi = np.exp(-np.r_[np.inf, np.diff(np.log(points))] / ell)
    b = np.sqrt(1 - phi**2) * rng.standard_normal(points.size)
    if start is not None:
        b[0] = start
    return np.asarray(linear_recurrence(jnp.asarray(phi), jnp.asarray(b)))


def simulate_schedule_curves(
    law: str | ScheduleLaw,
    truth: Mapping[str, float],
    schedules: Mapping[str, Schedule],
    *,
    checkpoints: int = 40,
    sigma: float = 0.003,
    tau: float = 0.002,
    ell: float = 0.5,
    seed: int = 0,
    branches: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Loss curves of runs under known schedules from a law at known constants: columns ``run, step, lr, loss``.

    Each run is logged at ``checkpoints`` evenly spaced steps from the end of warmup to its last step. Noise on
    log-loss: a run effect ``N(0, tau)`` and an OU residual along ln(step) with scale ``sigma`` and correlation
    length ``ell``, the model :func:`fit_schedule` inverts. Defaults: sigma = 0.003 (a smoothed training-loss curve
    at loss ~3 deviates from the multi-power law fit by ~0.005-0.007 nats RMSE in Luo et al.'s repository, i.e.
    ~0.002 in log-loss), tau = 0.002 (run-to-run offset), ell = 0.5 (neighbouring checkpoints correlate).
    The law is evaluated in the law file's ``convention``.

    ``branches`` maps a run to the run it branches from (e.g. ``{"wsd": "constant"}``: a cooldown started from the
    constant run): the branch shares its parent's LRs up to a step k (found from the schedules), its run effect and
    its OU path up to k, then continues the path with its own innovations; it is logged at ``checkpoints`` evenly
    spaced steps after k only (before k it is its parent).
    """
    law = load_schedule_law(law)
    missing = sorted(set(law.parameter_names) - set(truth))
    if missing:
        raise ValueError(f"truth lacks parameters {missing} of law {law.id!r}")
    _check_int("checkpoints", checkpoints, 2)
    scheds = {str(n): _as_schedule(v, str(n)) for n, v in schedules.items()}
    branches = {str(c): str(p) for c, p in (branches or {}).items()}
    for child, parent in branches.items():
        if child not in scheds or parent not in scheds or parent in branches:
            raise ValueError(f"branches {child!r} -> {parent!r}: both must be runs of schedules "
                             f"({sorted(scheds)}) and the parent must not itself be a branch")
    branch_at = {c: _shared_steps(scheds[p].lr, scheds[p].warmup_steps, scheds[c], f"branch {c!r} of run {p!r}")
                 for c, p in branches.items()}
    rng = np.random.default_rng(seed)
    rows, state = [], {}
    for name, schedule in scheds.items():
        if name in branches:
            continue
        steps = _checkpoint_steps(schedule.warmup_steps, schedule.total_steps, checkpoints)
        path = np.union1d(steps, [branch_at[c] for c, p in branches.items() if p == name]).astype(np.int64)
        w = _ou_path(path, ell, rng)
        u = tau * rng.standard_normal()
        state[name] = (u, dict(zip(path.tolist(), w)))
        log_y = np.log(law.loss(truth, schedule, steps)) + u + sigma * w[np.isin(path, steps)]
        rows.append(pd.DataFrame({"run": name, "step": steps, "lr": schedule.lr[steps - 1], "loss": np.exp(log_y)}))
    for child, parent in branches.items():
        schedule, k = scheds[child], branch_at[child]
        steps = _checkpoint_steps(k, schedule.total_steps, checkpoints)
        u, path = state[parent]
        w = _ou_path(np.r_[k, steps], ell, rng, start=path[k])[1:]
        log_y = np.log(law.loss(truth, schedule, steps)) + u + sigma * w
        rows.append(pd.DataFrame({"run": child, "step": steps, "lr": schedule.lr[steps - 1], "loss": np.exp(log_y)}))
    return pd.concat(rows, ignore_index=True)
