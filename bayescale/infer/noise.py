"""Noise models for whole training curves: run effects, correlated residuals along log-tokens, loss-level scaling.

The residual of point i of run r, on log-loss, is

    log y_i = log f(x_i; θ) + u_r + s_i · w_i

- ``u_r ~ Normal(0, tau)``: a **run effect** (seed, launch, data order), shared by every checkpoint of the run and
  partially pooled across runs (non-centred: ``u_r = tau · z_r``). Without it every checkpoint of a run is a fresh
  draw, and 50 checkpoints of one run count as 50 independent runs.
- ``w`` is an **Ornstein-Uhlenbeck process along log-tokens** within each run (``"ou"``): the standardised residuals
  of two checkpoints at tokens t < t' correlate as ``exp(−ln(t'/t) / ell)``, so neighbouring checkpoints share most
  of their deviation from the law. Conditionally on the previous checkpoint of the same run,
  ``w_i = φ_i w_prev + sqrt(1 − φ_i²) ε_i`` with ``φ_i = exp(−Δ ln t / ell)`` (an AR(1) for unequal spacing); the
  first checkpoint of a run has ``w = ε``. Without ``"ou"`` the w are independent.
- ``ε`` is Student-t(``nu``) (default) or Normal: heavy tails come from the innovation.
- ``s_i = sigma · exp(kappa · (log f_i − log min_loss))`` with ``"hetero"``: the noise scale grows (kappa > 0) or
  shrinks with the loss level; ``sigma`` is the scale at the lowest observed loss. Without it ``s_i = sigma``.

**Centred noise scale** (``"hetero"``): the data inform the scale where they lie, at the centre c of their log level
(:func:`level_centre`: the mean of log f over the points), not at ``min_loss``; in (log sigma, kappa) the posterior is
a ridge of slope c − log min_loss, which NUTS crosses in many small steps or, with one short chain, not at all
(simulation-based calibration of hoffmann2022 failed on sigma for that reason: docs/validation.md).
NUTS therefore samples ``sigma__centred = log sigma + kappa · (c − log min_loss)``, the log scale at c, and records
``sigma`` as a deterministic site. The shift depends only on kappa and the law's parameters, so the change of
variables has Jacobian 1 and keeps the declared prior of (sigma, kappa) exactly, as centred amplitudes do
(:mod:`bayescale.infer.reparam`); c is computed inside the model from the law, so single fits, batched fits (over each
fit's unmasked points) and simulations all use it.

A spec is a string of terms joined by ``+``: ``"iid"`` (none of them), ``"run"``, ``"ou"``, ``"hetero"``, e.g.
``"run+ou"``, and ``"latent"`` (see below). ``"auto"`` (the default of :func:`bayescale.fit`) is ``"iid"`` when every run has one point (a table of
final losses) and ``"run+ou"`` when some run has several checkpoints (``"run+ou+latent"`` for a target that is not a
positive loss).

**Collapsed run effects** (the default whenever ``"run"`` is on): each run's residual vector d (log loss − log law)
has covariance Σ = tau²·11ᵀ + S K S, K the OU correlation (the identity without ``"ou"``) and S = diag(s). The run
effect and the OU path are integrated out exactly (:func:`collapsed_log_terms`): the OU part is a Markov chain (its
precision is tridiagonal), so the whitened innovations a_i = d_i/s_i − φ_i d_prev/s_prev are independent with
variance v_i = 1 − φ_i² given u, and u enters them as −u·b_i with b_i = 1/s_i − φ_i/s_prev: a rank-one update, handled
by the matrix determinant lemma and Sherman-Morrison with per-run sums of b²/v and a·b/v, O(points) for all runs at
once. NUTS then samples only the law and noise parameters. With Student-t, the collapsed model is a **multivariate t
per run** (Σ as above, ``nu`` degrees of freedom: one latent precision per run scales its whole residual vector), not
the per-innovation t of the latent model. Run effects are drawn afterwards from their conditional distribution
given each posterior draw (:func:`run_effect_conditional`). ``"latent"`` keeps the older parameterisation: run
effects sampled by NUTS (non-centred ``z_run``) and Student-t innovations per checkpoint.

The likelihood is exact (the conditional chain), so the log-likelihood of a run is the sum of its points' terms and
PSIS-LOO grouped by run (:func:`bayescale.validation.comparison.loo`) leaves whole runs out correctly. For a new run,
:func:`bayescale.results.predict` draws ``u`` fresh and ``w`` from its marginal (``ε``); for a run of the fit (``run=``) it uses
that run's posterior effect and, with ``"ou"``, conditions on the run's last observed checkpoint at or before the
prediction: this is how the rest of a partly seen curve is predicted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import xarray as xr

__all__ = ["Noise", "NOISE_TERMS", "StudentT", "collapsed_log_terms", "curve_structure", "level_centre",
           "linear_recurrence", "polar_t", "run_effect_conditional"]

#: Terms of a noise spec (joined by "+"), and "auto".
NOISE_TERMS = ("iid", "run", "ou", "hetero", "latent")


def polar_t(key: jax.Array, df: Any, shape: tuple[int, ...]) -> jnp.ndarray:
    """Standard Student-t draws with ``df`` degrees of freedom (broadcast to ``shape``) by Bailey's polar method
    (Bailey 1994, "Polar generation of random variates with the t-distribution", Math. Comp. 62: 779-781): exact.

    Draw (U, V) uniform on the square [-1, 1]² until W = U² + V² falls in the unit disc (probability π/4 per try), then
    T = U · sqrt(df · (W^(-2/df) − 1) / W); as df → ∞ this is Marsaglia's polar normal. All draws of ``shape`` are
    made together, the rejected ones drawn again: a few passes of one small loop (about log(n) / log(4 / (4 − π)),
    7 for 10⁴ draws). numpyro's ``StudentT.sample`` (``jax.random.t``) divides a normal by the root of a gamma draw,
    whose per-element rejection sampler XLA compiles slowly: about 0.8 s more per predictive program on CPU,
    compiled again for every law and data shape (docs/performance.md)."""
    df = jnp.broadcast_to(jnp.asarray(df, dtype=jnp.result_type(float)), shape)

    def undone(state):
        return ~jnp.all(state[2])

    def draw(state):
        key, t, done = state
        key, k_uv = jax.random.split(key)
        u, v = jax.random.uniform(k_uv, (2, *shape), dtype=df.dtype, minval=-1.0, maxval=1.0)
        w = u * u + v * v
        accept = (w <= 1.0) & (w > 0.0) & ~done
        w = jnp.where(accept, w, 1.0)
        # W^(-2/df) − 1 as expm1: exact for large df, where the power is 1 + O(1/df)
        t_new = u * jnp.sqrt(df * jnp.expm1(-2.0 / df * jnp.log(w)) / w)
        return key, jnp.where(accept, t_new, t), done | accept

    return jax.lax.while_loop(undone, draw, (key, jnp.zeros(shape, df.dtype), jnp.zeros(shape, bool)))[1]


class StudentT(dist.StudentT):
    """numpyro's Student-t (the same density, support and parameters) whose draws come from :func:`polar_t`: the
    likelihood family of every model here, so that the predictive programs (posterior and prior predictive of each
    fit) compile without a gamma sampler."""

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape + self.event_shape
        return self.loc + self.scale * polar_t(key, self.df, shape)


@dataclass(frozen=True)
class Noise:
    """Which structure the residuals have beyond the likelihood family (see the module docstring)."""

    run_effect: bool = False
    correlation: bool = False
    heteroscedastic: bool = False
    axis: str = "D"
    #: With run effects: integrate them (and the OU path) out of the likelihood (True) or sample them (``"latent"``).
    collapsed: bool = True

    @property
    def collapses(self) -> bool:
        """Whether the model integrates run effects out (run effects on and not ``"latent"``)."""
        return self.run_effect and self.collapsed

    @property
    def names(self) -> tuple[str, ...]:
        """The extra noise parameters this structure samples (besides ``sigma`` and ``nu``)."""
        return (*(("tau",) if self.run_effect else ()), *(("ell",) if self.correlation else ()),
                *(("kappa",) if self.heteroscedastic else ()))

    @property
    def spec(self) -> str:
        terms = [t for t, on in (("run", self.run_effect), ("ou", self.correlation), ("hetero", self.heteroscedastic),
                                 ("latent", self.run_effect and not self.collapsed)) if on]
        return "+".join(terms) or "iid"

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"spec": self.spec})

    @classmethod
    def from_attrs(cls, attrs: Any) -> Noise:
        raw = attrs.get("noise")
        if not raw:
            return cls()
        d = json.loads(raw)
        # results written before collapsing existed sampled their run effects
        return cls(**{k: d[k] for k in ("run_effect", "correlation", "heteroscedastic", "axis")},
                   collapsed=d.get("collapsed", False))

    @classmethod
    def parse(cls, spec: str | Noise, ds: xr.Dataset | None = None, axis: str = "D", target: str = "loss") -> Noise:
        """A :class:`Noise` from a spec string (``"auto"`` needs the dataset ``ds``; for a ``target`` kind other than
        ``"loss"`` its run effects are sampled, ``+latent``, since the collapsed form is built for a log loss)."""
        if isinstance(spec, Noise):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"noise must be a string such as 'run+ou' or a Noise, got {spec!r}")
        if spec.strip() == "auto":
            if ds is None:
                raise ValueError("noise='auto' needs the data to decide")
            several = np.unique(ds["run"].values).size < ds.sizes["point"]
            return cls(run_effect=several, correlation=several and axis in ds, axis=axis, collapsed=target == "loss")
        terms = [t.strip() for t in spec.split("+")]
        unknown = [t for t in terms if t not in NOISE_TERMS]
        if unknown:
            raise ValueError(f"noise {spec!r}: unknown term(s) {unknown}; terms are {list(NOISE_TERMS)} joined by '+', or 'auto'")
        if "iid" in terms and len(terms) > 1:
            raise ValueError(f"noise {spec!r}: 'iid' means no structure and cannot be combined with other terms")
        if "latent" in terms and "run" not in terms:
            raise ValueError(f"noise {spec!r}: 'latent' samples the run effects and needs the term 'run'")
        return cls(run_effect="run" in terms, correlation="ou" in terms, heteroscedastic="hetero" in terms, axis=axis,
                   collapsed="latent" not in terms)


def curve_structure(ds: xr.Dataset, noise: Noise) -> dict[str, Any]:
    """Index arrays the model needs: run index per point, and for ``"ou"`` the previous checkpoint of the same run.

    Points are ordered by (run, axis value); ``order`` lists point indices in that order, ``prev`` the index of each
    point's predecessor in its run (itself for the first), ``dlog`` the gap in ln(axis) to it (0 for the first) and
    ``has_prev`` whether there is one. With collapsed run effects (and no ``"ou"``) ``order`` and ``inverse`` sort the
    points by run alone (their row order within a run).
    """
    from bayescale.data import DataError

    runs, run_idx = np.unique(ds["run"].values, return_inverse=True)
    out: dict[str, Any] = {"run_idx": jnp.asarray(run_idx), "n_runs": int(runs.size), "runs": runs}
    if not noise.correlation:
        if noise.collapses:  # the collapsed likelihood's chain terms run through each run's points in order
            out.update(_sorted_runs(run_idx, np.argsort(run_idx, kind="stable")))
        return out
    if noise.axis not in ds:
        raise DataError(f"noise 'ou' correlates checkpoints along {noise.axis!r}, which the data do not have "
                        f"(it has {sorted(str(v) for v in ds.data_vars)})")
    t = ds[noise.axis].values.astype(float)
    if np.any(t <= 0):
        raise DataError(f"noise 'ou' needs {noise.axis!r} > 0 at every checkpoint (it works in log {noise.axis})")
    order = np.lexsort((t, run_idx))
    same = np.r_[False, run_idx[order][1:] == run_idx[order][:-1]]
    tied = same & np.r_[False, t[order][1:] == t[order][:-1]]
    if tied.any():
        bad = sorted({str(runs[run_idx[order][k]]) for k in np.flatnonzero(tied)})[:5]
        raise DataError(f"noise 'ou': runs {bad} have two checkpoints at the same {noise.axis}; "
                        "give each run distinct checkpoints (or a run column that separates them)")
    prev = np.arange(t.size)
    prev[order[1:]] = np.where(same[1:], order[:-1], order[1:])
    dlog = np.where(prev != np.arange(t.size), np.log(t) - np.log(t[prev]), 0.0)
    has_prev = prev != np.arange(t.size)
    out.update(_sorted_runs(run_idx, order), prev=jnp.asarray(prev), dlog=jnp.asarray(dlog),
               has_prev=jnp.asarray(has_prev))
    return out


def _sorted_runs(run_idx: np.ndarray, order: np.ndarray) -> dict[str, jnp.ndarray]:
    """``order`` (points sorted by run), its ``inverse``, and ``start``: for each sorted position, the sorted position
    of its run's first point."""
    run_o = run_idx[order]
    first = np.r_[True, run_o[1:] != run_o[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(order.size), 0))
    return dict(order=jnp.asarray(order), inverse=jnp.asarray(np.argsort(order)), start=jnp.asarray(start))


@jax.jit
def linear_recurrence(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """x_k = a_k · x_{k−1} + b_k with x_{−1} = 0, by a parallel prefix scan (O(log n) depth on an accelerator).
    Compiled as one program per shape: run op by op (simulators, predictions outside a model), the scan's dozens of
    slices, pads and concatenations would each compile a program of their own for every new length."""

    def combine(left, right):
        return left[0] * right[0], right[0] * left[1] + right[1]

    return jax.lax.associative_scan(combine, (a, b))[1]


def ou_terms(dlog: jnp.ndarray, has_prev: jnp.ndarray, ell: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """φ = exp(−Δ/ell) (0 at a run's first point) and sqrt(1 − φ²), computed without cancellation for small Δ."""
    gap = jnp.where(has_prev, dlog, 1.0)  # a safe value at first points: where() differentiates both branches
    phi = jnp.where(has_prev, jnp.exp(-gap / ell), 0.0)
    root = jnp.where(has_prev, jnp.sqrt(-jnp.expm1(-2.0 * gap / ell)), 1.0)
    return phi, root


def noise_scale(sigma: Any, log_mu: Any, noise: Noise, kappa: Any, statistics: Mapping[str, float]) -> Any:
    """Per-point scale s_i of the standardised residual (numpy or JAX arrays alike): ``sigma``, or under ``"hetero"``
    ``sigma · exp(kappa · (log_mu − log min_loss))`` with ``min_loss`` from the data ``statistics``."""
    if not noise.heteroscedastic:
        return sigma
    xp = np if isinstance(log_mu, np.ndarray) else jnp
    return sigma * xp.exp(kappa * (log_mu - xp.log(statistics["min_loss"])))


def level_centre(log_mu: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """The centre c of the law's log level over the points: the mean of ``log_mu`` over those where ``mask`` is true
    (all without a mask; 0 when the mask keeps none). Under ``"hetero"`` NUTS samples the log noise scale at this level,
    ``log sigma_c = log sigma + kappa · (c − log min_loss)`` (module docstring, "Centred noise scale"); centred
    amplitudes take the same mean of their log base (:func:`bayescale.infer.reparam.centres_of`)."""
    if mask is None:
        return jnp.mean(log_mu)
    keep = jnp.asarray(mask, dtype=log_mu.dtype)
    return jnp.sum(jnp.where(mask, log_mu, 0.0)) / jnp.maximum(jnp.sum(keep), 1.0)


def _whitened(resid: jnp.ndarray, scale: Any, structure: Mapping, noise: Noise, ell: Any, mask: Any):
    """Per point: the innovation a_i = d_i/s_i − φ_i d_prev/s_prev of the residual ``resid`` (given u = 0), the
    coefficient b_i = 1/s_i − φ_i/s_prev with which a run effect u enters it (a_i − u b_i), its variance v_i = 1 − φ_i²,
    and log s_i; masked points get a = b = log s = 0 so that they touch no run's sums."""
    scale = jnp.broadcast_to(scale, resid.shape)
    z, inv = resid / scale, 1.0 / scale
    if noise.correlation:
        phi, root = ou_terms(structure["dlog"], structure["has_prev"], ell)
        prev = structure["prev"]
        a, b, v = z - phi * z[prev], inv - phi * inv[prev], root * root
    else:
        a, b, v = z, inv, jnp.ones_like(z)
    log_s = jnp.log(scale)
    if mask is not None:
        a, b, log_s = jnp.where(mask, a, 0.0), jnp.where(mask, b, 0.0), jnp.where(mask, log_s, 0.0)
    return a, b, v, log_s


def collapsed_log_terms(
    resid: jnp.ndarray,
    scale: Any,
    tau: Any,
    nu: Any,
    structure: Mapping,
    noise: Noise,
    ell: Any = None,
    mask: jnp.ndarray | None = None,
    chain: bool = False,
) -> jnp.ndarray:
    """Log-density terms of log-loss residuals with the run effects and the OU path integrated out, one per point.

    Each run's residual vector d has covariance Σ = tau²·11ᵀ + S K S (module docstring); its log N(d; 0, Σ), or with
    ``nu`` the multivariate t_nu(d; 0, Σ), is the sum of its points' terms. With ``chain`` (and ``structure["order"]``,
    as :func:`curve_structure` gives for a fit) the
    term of a point is the exact conditional density given the run's earlier checkpoints, p(d_k | d_<k): the run
    effect's posterior after the earlier points is updated one point at a time (cumulative sums restarted at each
    run), and for the multivariate t the conditional is t with nu + k − 1 degrees of freedom and
    its scale inflated by the earlier points' quadratic form. Otherwise each run's joint log-density comes from
    per-run sums (matrix determinant lemma, Sherman-Morrison), spread evenly over its points: what NUTS uses, since
    a cumulative sum costs XLA's CPU backend far more than a segment sum (3.0 against 0.35 ms for the gradient at
    1e4 points, benchmarks/curves.py). Either way the cost is O(points) for all runs at once, and the sum over points
    is the joint log-density.

    Parameters
    ----------
    resid
        log loss − log law, one per point.
    scale, tau, nu, ell
        Per-point OU scale s_i (or a scalar), run-effect spread, Student-t degrees of freedom (``None``: Normal),
        OU correlation length (only with ``"ou"``).
    structure, noise
        :func:`curve_structure` of the data and its noise spec; ``structure["n_runs"]`` fixes the number of runs.
    mask
        Points left out (padding of batched fits): their term is 0 and they change no other point's.
    chain
        Conditional (pointwise) terms instead of per-run joint terms spread over the points.
    """
    a, b, v, log_s = _whitened(resid, scale, structure, noise, ell, mask)
    keep = jnp.ones(resid.shape) if mask is None else mask.astype(resid.dtype)
    t2 = tau * tau
    if chain and "order" in structure:
        order, inverse, start = structure["order"], structure["inverse"], structure["start"]

        def before(x):  # Σ over the run's earlier points, in sorted order (a cumulative sum restarted at each run)
            excl = jnp.cumsum(x) - x
            return excl - excl[start]

        ao, bo, vo = a[order], b[order], v[order]
        den = 1.0 + t2 * before(bo * bo / vo)
        e = ao - bo * t2 * before(ao * bo / vo) / den  # innovation minus its mean given the earlier points
        c = vo + bo * bo * t2 / den  # its variance: own + what the run effect still contributes
        q = e * e / c
        if nu is None:
            term = -0.5 * (jnp.log(2 * jnp.pi * c) + q)
        else:
            Q, k = before(q), before(keep[order])
            term = (jax.scipy.special.gammaln((nu + k + 1) / 2) - jax.scipy.special.gammaln((nu + k) / 2)
                    - 0.5 * jnp.log(jnp.pi * (nu + Q) * c) - (nu + k + 1) / 2 * jnp.log1p(q / (nu + Q)))
        out = term[inverse] - log_s
    else:
        run, n_runs = structure["run_idx"], structure["n_runs"]

        def per_run(x):
            return jax.ops.segment_sum(x, run, num_segments=n_runs)

        B, C, n = per_run(b * b / v), per_run(a * b / v), per_run(keep)
        den = 1.0 + t2 * B
        share = keep / jnp.maximum(n, 1.0)[run]
        if nu is None:
            own = -0.5 * (jnp.log(2 * jnp.pi * v) + a * a / v) - log_s
            out = own + (-0.5 * jnp.log(den) + 0.5 * t2 * C * C / den)[run] * share
        else:
            Q = per_run(a * a / v) - t2 * C * C / den
            log_det = 2 * per_run(keep * (0.5 * jnp.log(v) + log_s)) + jnp.log(den)
            joint = (jax.scipy.special.gammaln((nu + n) / 2) - jax.scipy.special.gammaln(nu / 2)
                     - 0.5 * n * jnp.log(nu * jnp.pi) - 0.5 * log_det - (nu + n) / 2 * jnp.log1p(Q / nu))
            out = joint[run] * share
    return out if mask is None else jnp.where(mask, out, 0.0)


def run_effect_conditional(
    resid: jnp.ndarray,
    scale: Any,
    tau: Any,
    nu: Any,
    structure: Mapping,
    noise: Noise,
    ell: Any = None,
    mask: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray | None, jnp.ndarray | None]:
    """The distribution of each run's effect u given its residuals and the parameters (the collapsed model).

    Normal: u | d ~ Normal(m, sqrt(V)) with V = tau²/(1 + tau²·B), m = V·C, B = Σ b²/v and C = Σ a·b/v over the run
    (:func:`collapsed_log_terms`). Multivariate t: a run's residuals are Normal given a latent precision λ ~
    Gamma(nu/2, nu/2) that scales Σ by 1/λ; then λ | d ~ Gamma((nu + n)/2, (nu + Q)/2), Q = dᵀΣ⁻¹d, and
    u | d, λ ~ Normal(m, sqrt(V/λ)). Returns (m, V, Gamma shape, Gamma rate), the last two ``None`` for Normal.
    """
    a, b, v, _ = _whitened(resid, scale, structure, noise, ell, mask)
    run, n_runs = structure["run_idx"], structure["n_runs"]

    def per_run(x):
        return jax.ops.segment_sum(x, run, num_segments=n_runs)

    t2 = tau * tau
    B, C = per_run(b * b / v), per_run(a * b / v)
    den = 1.0 + t2 * B
    var, mean = t2 / den, t2 * C / den
    if nu is None:
        return mean, var, None, None
    keep = jnp.ones(resid.shape) if mask is None else mask.astype(resid.dtype)
    Q = per_run(a * a / v) - t2 * C * C / den
    return mean, var, (nu + per_run(keep)) / 2, (nu + Q) / 2
