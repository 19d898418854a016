"""Law + priors + noise → a numpyro model.

The likelihood is on log-loss: ``log y_i = log f(x_i; θ) + ε_i`` with ε Normal or Student-t. The observed site is the
loss itself (an exp-transformed distribution), so log-likelihoods are densities of the loss and comparable across
laws. Working in log space makes the noise relative (seed noise grows with the loss level) and matches the fitting
practice of Hoffmann et al. 2022 and Besiroglu et al. 2024 (Huber on log residuals). A law whose ``[target]`` is not
a positive loss (:class:`bayescale.laws.catalogue.Target`) gets the same noise on its link scale instead: additive on the
natural scale for a ``"real"`` target, on the logit for a ``"unit_interval"`` one.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import ExpTransform

from bayescale.laws.catalogue import Law, Target
from bayescale.infer.noise import (Noise, StudentT, collapsed_log_terms, level_centre, linear_recurrence, ou_terms,
                                   run_effect_conditional)
from bayescale.laws.priors import Prior, parse_prior
from bayescale.infer.reparam import log_support, auxiliary_name, centred_distribution, plan_centring, sample_parameters

__all__ = ["LIKELIHOODS", "NOISE_PRIORS", "ModelSpec", "build_model", "mass_structure", "observe", "pointwise_terms",
           "recover_run_effects"]

#: Likelihood families for the log-loss residual.
LIKELIHOODS = ("student_t", "normal")

#: Default priors of the noise parameters. sigma is the residual scale of log-loss: seed noise of 0.01-0.02 nats
#: at losses of 2-4 (LAWS.md, "practice") is 0.003-0.01 in log-loss, well inside HalfNormal(0.05). nu - 1 follows
#: Juarez & Steel (2010)'s Gamma(2, 0.1) (mean 20), which lets data choose between heavy and Gaussian tails; the shift
#: by 1 keeps the posterior proper. Near nu = 0 it is not: where the law passes exactly through k of the n points the
#: density in NUTS's log sigma behaves like sigma^((n - k) nu - k + 1) as sigma -> 0, unbounded for nu < (k - 1)/(n - k)
#: (Fernandez & Steel 1999, Biometrika 86:153; benchmarks/student_t_spike.py, docs/validation.md), and SBC chains were
#: caught there. With nu >= 1 it falls whenever n >= 2k, i.e. for any table with twice as many points as the law has
#: parameters. brms bounds Student-t nu at 1 under the same Gamma(2, 0.1) (by truncation; a shift needs no inverse
#: CDF to sample and moves the prior little: Gamma(2, 0.1) puts 0.5% of its mass below 1).
#: tau, the spread of run effects on log-loss: seed-to-seed spread of final losses is ~0.3-1% (LAWS.md, "practice"),
#: well inside HalfNormal(0.05). ell, the correlation length of residuals along ln(tokens): LogNormal(ln 0.5, 1) puts
#: 90% of its mass between 0.1 and 2.6 e-folds, from nearly independent checkpoints at doubling tokens to residuals
#: shared across a whole curve. kappa, the log-slope of the noise scale in log-loss: Normal(0, 1); over a curve from
#: loss 10 to 2.5 (a log-loss span of 1.4) kappa = 1 quadruples the noise scale.
NOISE_PRIORS: dict[str, str] = {
    "sigma": "HalfNormal(0.05)",
    "nu": "1 + Gamma(2, 0.1)",
    "tau": "HalfNormal(0.05)",
    "ell": "LogNormal(-0.693, 1)",
    "kappa": "Normal(0, 1)",
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything the numpyro model needs, with priors already resolved to numbers."""

    law: Law
    priors: Mapping[str, Prior]
    statistics: Mapping[str, float]
    likelihood: str = "student_t"
    noise: Noise = Noise()
    #: Centre of each centred power-law amplitude (:mod:`bayescale.infer.reparam`); ``None``: every parameter is sampled as
    #: declared. Batched fits pass each fit's centres in ``per_fit["centres"]`` instead of these numbers.
    centres: Mapping[str, float] | None = None

    @property
    def centring(self):
        """The :class:`~bayescale.infer.reparam.Centring` in use, or ``None``."""
        return None if self.centres is None else plan_centring(self.law, self.priors)

    @property
    def sampled_sites(self) -> tuple[str, ...]:
        """The sites NUTS samples: :attr:`sampled_names` with each centred amplitude, and ``sigma`` under ``"hetero"``,
        replaced by its auxiliary site."""
        centring = self.centring
        centred = set(() if centring is None else centring.amplitudes)
        if self.noise.heteroscedastic and has_log_support(self.priors["sigma"].distribution(self.statistics)):
            centred.add("sigma")  # the noise scale at the data's centre (_centred_hetero_scale)
        return tuple(auxiliary_name(n) if n in centred else n for n in self.sampled_names)

    @property
    def noise_names(self) -> tuple[str, ...]:
        return noise_names(self.likelihood, self.noise)

    @property
    def sampled_names(self) -> tuple[str, ...]:
        return (*self.law.parameter_names, *self.noise_names)


def noise_names(likelihood: str, noise: Noise) -> tuple[str, ...]:
    """Names of the noise parameters: sigma, nu (Student-t), then the structure's (tau, ell, kappa)."""
    return ("sigma", *(("nu",) if likelihood == "student_t" else ()), *noise.names)


def resolve_priors(
    law: Law, likelihood: str, overrides: Mapping[str, str] | None, noise: Noise = Noise()
) -> dict[str, Prior]:
    """The law's priors and the noise priors, with user ``overrides`` (name → prior expression) applied."""
    from bayescale.laws.catalogue import LawError

    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood {likelihood!r}: must be one of {list(LIKELIHOODS)}")
    priors = {p.name: p.prior for p in law.parameters}
    # noise priors on the likelihood's scale: the defaults are for log-loss; a law of another target kind gives its own
    priors.update({n: parse_prior(law.target.priors.get(n, NOISE_PRIORS[n])) for n in noise_names(likelihood, noise)})
    for name, text in (overrides or {}).items():
        if name not in priors:
            raise LawError(f"prior given for {name!r}, which is not a parameter; must be one of {sorted(priors)}")
        priors[name] = parse_prior(text)
    return priors


def observe(
    mu: jnp.ndarray,
    loss: jnp.ndarray | None,
    dists: Mapping[str, dist.Distribution],
    *,
    likelihood: str,
    noise: Noise,
    structure: Mapping | None,
    statistics: Mapping[str, float],
    mask: jnp.ndarray | None = None,
    target: Target = Target(),
) -> None:
    """The noise model around a law's log-mean ``mu`` (one value per point), inside a numpyro model: samples
    ``sigma`` (and ``nu``, ``kappa``, ``tau`` with ``z_run``, ``ell`` as the noise structure asks) from ``dists`` and
    observes ``loss`` with the exact likelihood (the conditional chain along each run for ``"ou"``), or, with
    ``loss=None``, simulates whole curves jointly. With collapsed run effects (the default for ``"run"``, see
    :mod:`bayescale.infer.noise`) the run effects and the OU path are integrated out (``_observe_collapsed``): no
    ``z_run``. Shared by every model whose residuals are on log-loss: catalogue laws (:func:`build_model`) and
    schedule laws (:mod:`bayescale.analyses.schedules`). ``mask``: points to leave out of the likelihood (padding in batched
    fits). ``target``: the law's target kind; ``mu`` and the noise are on its link scale (log-loss by default,
    :class:`bayescale.laws.catalogue.Target`), and ``loss`` is the observed value itself."""
    n = mu.shape[0]
    if noise.heteroscedastic:
        kappa = numpyro.sample("kappa", dists["kappa"])
        scale = _centred_hetero_scale(mu, kappa, dists["sigma"], statistics, mask)
    else:
        scale = numpyro.sample("sigma", dists["sigma"])
    nu = numpyro.sample("nu", dists["nu"]) if likelihood == "student_t" else None
    if noise.collapses:
        if target.kind != "loss":
            from bayescale.errors import ArgumentError

            raise ArgumentError(f"collapsed run effects (noise {noise.spec!r}) are built for a positive loss on log scale; "
                                f"for a target of kind {target.kind!r} add '+latent' to the noise (run effects sampled)")
        _observe_collapsed(mu, loss, scale, nu, dists, noise=noise, structure=structure, mask=mask)
        return
    loc = mu
    if noise.run_effect:
        tau = numpyro.sample("tau", dists["tau"])
        with numpyro.plate("run", structure["n_runs"]):
            z_run = numpyro.sample("z_run", dist.Normal(0.0, 1.0))
        loc = loc + numpyro.deterministic("run_effect", tau * z_run)[structure["run_idx"]]

    def family(center, spread):
        return StudentT(nu, center, spread) if nu is not None else dist.Normal(center, spread)

    if noise.correlation:
        ell = numpyro.sample("ell", dists["ell"])
        phi, root = ou_terms(structure["dlog"], structure["has_prev"], ell)
        if loss is None:  # simulate whole curves: w_k = φ_k w_{k-1} + sqrt(1-φ_k²) ε_k along each run
            with numpyro.plate("point", n):
                eps = numpyro.sample("innovation", family(0.0, 1.0))
            order, inverse = structure["order"], structure["inverse"]
            w = linear_recurrence(phi[order], (root * eps)[order])[inverse]
            numpyro.deterministic("loss", target.inverse(loc + scale * w, jnp))
            return
        w_obs = (target.link(loss, jnp) - loc) / scale
        loc = loc + scale * phi * w_obs[structure["prev"]]
        scale = scale * root
    # the observed site is the value itself (its density includes the link's Jacobian), so log-likelihoods of one
    # table are comparable across laws; a real target needs no transform
    transform = target.transform()
    likelihood_dist = family(loc, scale) if transform is None else dist.TransformedDistribution(family(loc, scale), transform)
    if mask is not None:
        likelihood_dist = likelihood_dist.mask(mask)
    with numpyro.plate("point", n):
        numpyro.sample("loss", likelihood_dist, obs=loss)


def has_log_support(prior: dist.Distribution) -> bool:
    """Whether ``log X`` for ``X ~ prior`` has a support :func:`~bayescale.infer.reparam.centred_distribution` can
    shift (the positive supports of the prior language)."""
    try:
        log_support(prior.support)
    except ValueError:
        return False
    return True


def _centred_hetero_scale(mu, kappa, sigma_prior: dist.Distribution, statistics: Mapping[str, float], mask):
    """Per-point noise scale under ``"hetero"``, with the scale sampled at the centre of the data's loss level.

    The declared scale ``s_i = sigma · exp(kappa · (mu_i − log min_loss))`` makes ``log sigma`` the log scale at
    ``min_loss``, which can lie far from the data: the data fix ``log sigma + kappa · (c − log min_loss)``, the log
    scale at their centre c (:func:`bayescale.infer.noise.level_centre`, the mean of ``mu`` over the unmasked points),
    so ``log sigma`` and ``kappa`` are tied along a ridge of slope ``c − log min_loss``. NUTS samples
    ``sigma__centred = log sigma + shift``, ``shift = kappa · (c − log min_loss)``, instead: a shift of ``log sigma`` by
    an amount that depends only on kappa and the law's parameters (through c), so the Jacobian is 1 and the declared
    prior of (sigma, kappa, θ) is kept exactly (:func:`bayescale.infer.reparam.centred_distribution`, as for centred
    amplitudes). ``sigma`` is recorded as a deterministic site with its usual meaning. A sigma prior without a
    positive support numpyro can map to log space is sampled as declared."""
    log_min = jnp.log(statistics["min_loss"])
    if not has_log_support(sigma_prior):  # e.g. a Normal prior on sigma: keep the declared parameterisation
        return numpyro.sample("sigma", sigma_prior) * jnp.exp(kappa * (mu - log_min))
    centre = level_centre(mu, mask)
    shift = kappa * (centre - log_min)
    log_sigma_c = numpyro.sample(auxiliary_name("sigma"), centred_distribution(sigma_prior, shift))
    numpyro.deterministic("sigma", jnp.exp(log_sigma_c - shift))
    # the same s_i as noise_scale(sigma, ...), from the sampled site directly: no underflow of sigma when the
    # shift is large (data far above min_loss with kappa > 0)
    return jnp.exp(log_sigma_c + kappa * (mu - centre))


# Set while recover_run_effects replays the model: the collapsed likelihood then also draws each run's effect.
_RECOVERING = contextvars.ContextVar("bayescale_recovering_run_effects", default=False)
# Set while pointwise log-likelihoods are computed: the collapsed likelihood then gives conditional chain terms.
_POINTWISE = contextvars.ContextVar("bayescale_pointwise_terms", default=False)


@contextlib.contextmanager
def pointwise_terms():
    """Within this block the collapsed curve likelihood's per-point log-densities are the conditionals
    p(y_k | the run's earlier checkpoints) (what LOO reads); outside it, each run's joint term spread over its points
    (the same sum, cheaper for NUTS)."""
    token = _POINTWISE.set(True)
    try:
        yield
    finally:
        _POINTWISE.reset(token)


class CollapsedCurves(dist.Distribution):
    """The losses of whole curves with the run effects and OU path integrated out (:func:`bayescale.infer.noise.
    collapsed_log_terms`): ``log_prob`` gives one term per point (the density of the loss, Jacobian 1/y included)
    whose sum over a run is the run's joint density; conditional chain terms inside :func:`pointwise_terms`. Used
    only as an observed site; curves are simulated by :func:`observe`'s explicit draws."""

    support = constraints.positive

    def __init__(self, mu, scale, tau, nu, ell, *, noise: Noise, structure: Mapping, mask=None):
        self.mu, self.scale, self.tau, self.nu, self.ell = mu, scale, tau, nu, ell
        self.noise, self.structure, self.mask_ = noise, structure, mask
        super().__init__(batch_shape=jnp.shape(mu))

    def log_prob(self, value):
        log_y = jnp.log(value)
        terms = collapsed_log_terms(log_y - self.mu, self.scale, self.tau, self.nu, self.structure, self.noise,
                                    self.ell, self.mask_, chain=_POINTWISE.get())
        return terms - (log_y if self.mask_ is None else jnp.where(self.mask_, log_y, 0.0))

    def sample(self, key, sample_shape=()):
        raise NotImplementedError("CollapsedCurves is observed only; observe() simulates curves explicitly")


def _observe_collapsed(mu, loss, scale, nu, dists, *, noise: Noise, structure: Mapping, mask) -> None:
    """:func:`observe` with the run effects (and the OU path) integrated out: NUTS sees only tau, ell and the law.

    Observed: the :class:`CollapsedCurves` site ``loss``; while :func:`recover_run_effects` replays the model it also
    draws ``run_effect`` from its conditional distribution given the data and the draw. Simulated (``loss=None``):
    ``run_effect ~ Normal(0, tau)`` (a posterior draw when the predictive substitutes one), then the OU path; with
    Student-t both are scaled by 1/sqrt(λ), a per-run latent precision ``run_precision`` λ ~ Gamma(nu/2, nu/2) (the
    multivariate t), drawn fresh."""
    tau = numpyro.sample("tau", dists["tau"])
    ell = numpyro.sample("ell", dists["ell"]) if noise.correlation else None
    n_runs, run = structure["n_runs"], structure["run_idx"]
    if loss is not None:
        if _RECOVERING.get():
            mean, var, shape, rate = run_effect_conditional(jnp.log(loss) - mu, scale, tau, nu, structure, noise, ell,
                                                            mask)
            with numpyro.plate("run", n_runs):
                lam = numpyro.sample("run_precision", dist.Gamma(shape, rate)) if nu is not None else 1.0
                numpyro.sample("run_effect", dist.Normal(mean, jnp.sqrt(var / lam)))
        with numpyro.plate("point", mu.shape[0]):
            numpyro.sample("loss", CollapsedCurves(mu, scale, tau, nu, ell, noise=noise, structure=structure,
                                                   mask=mask), obs=loss)
        return
    with numpyro.plate("run", n_runs):
        lam = numpyro.sample("run_precision", dist.Gamma(nu / 2, nu / 2)) if nu is not None else jnp.ones(n_runs)
        u = numpyro.sample("run_effect", dist.Normal(0.0, tau / jnp.sqrt(lam)))  # posterior predictive: a posterior draw
    with numpyro.plate("point", mu.shape[0]):
        eps = numpyro.sample("innovation", dist.Normal(0.0, 1.0))
    if noise.correlation:
        phi, root = ou_terms(structure["dlog"], structure["has_prev"], ell)
        order, inverse = structure["order"], structure["inverse"]
        eps = linear_recurrence(phi[order], (root * eps)[order])[inverse]
    numpyro.deterministic("loss", jnp.exp(mu + u[run] + scale * eps / jnp.sqrt(lam)[run]))


def recover_run_effects(model, args: tuple, observed: Mapping[str, Any], samples: Mapping[str, np.ndarray],
                        rng_key: jax.Array) -> dict[str, np.ndarray]:
    """Per-run effects of a collapsed curve model, one draw from their conditional distribution per posterior draw.

    ``samples``: posterior draws with leading dims (chain, draw). Returns ``{"run_effect": (chain, draw, run)}``, or
    ``{}`` when the model does not integrate run effects out (its draws already hold them, or it has none). Exact:
    (θ_s, u_s) with u_s ~ p(u | θ_s, data) is a draw of the joint posterior; for the multivariate t, the run's latent
    precision is drawn first, then u given it.
    """
    from numpyro.infer import Predictive

    if "run_effect" in samples:
        return {}
    by_chain = {k: np.asarray(v) for k, v in samples.items()}
    shape = next(iter(by_chain.values())).shape[:2]
    flat = {k: v.reshape((-1, *v.shape[2:])) for k, v in by_chain.items()}
    token = _RECOVERING.set(True)
    try:
        first = {k: v[:1] for k, v in flat.items()}  # one draw: is there a run effect to recover?
        # traced for its output's structure only (eval_shape): run, the one-draw call compiled a predictive program
        # of its own on every fit, a few seconds each, most of them fits without run effects
        probe = jax.eval_shape(lambda: Predictive(model, posterior_samples=first, return_sites=["run_effect"])(
            rng_key, *args, **observed))
        if "run_effect" not in probe:
            return {}
        draws = Predictive(model, posterior_samples=flat, return_sites=["run_effect"])(rng_key, *args, **observed)
    finally:
        _RECOVERING.reset(token)
    return {"run_effect": np.asarray(draws["run_effect"]).reshape(*shape, -1)}


def mass_structure(dense_mass: bool, spec: ModelSpec) -> bool | list[tuple[str, ...]]:
    """NUTS mass matrix: with ``dense_mass``, dense over the law and noise parameters (amplitudes and exponents of a
    power law are strongly correlated) and diagonal over the per-run effects ``z_run``, which are many and nearly
    independent given ``tau``: a fully dense matrix would grow with the square of the number of runs (10^8 entries
    at 10^4 runs) for no gain. Collapsed run effects (the default) leave only the globals: dense over all."""
    if not dense_mass or not spec.noise.run_effect or spec.noise.collapses:
        return bool(dense_mass)
    return [tuple(spec.sampled_sites)]


def build_model(spec: ModelSpec, structure: Mapping | None = None, *, batched: bool = False):
    """Return ``model(log_inputs, loss=None)`` for numpyro.

    ``log_inputs`` maps each law input to the log of its values over points; ``structure`` is
    :func:`bayescale.infer.noise.curve_structure` of the data (needed for run effects and correlated residuals). With
    ``loss`` given, the observed site ``loss`` carries the exact likelihood (the conditional chain along each run for
    ``"ou"``); without it, ``loss`` is simulated jointly (a draw of whole curves). ``batched``: the structure comes
    with each call (``per_fit``, see :mod:`bayescale.infer.batch`); ``structure`` then only gives the (padded) number of
    runs ``n_runs``, which fixes the shape of the run effects.
    """
    fixed = {name: prior.distribution(spec.statistics) for name, prior in spec.priors.items()}
    law, noise = spec.law, spec.noise
    centring = spec.centring

    if (noise.run_effect or noise.correlation) and structure is None and not batched:
        raise ValueError(f"noise {noise.spec!r} needs the data's curve structure (bayescale.infer.noise.curve_structure)")

    def model(
        log_inputs: Mapping[str, jnp.ndarray],
        loss: jnp.ndarray | None = None,
        per_fit: Mapping | None = None,
    ):
        # per_fit (batched fits, bayescale.infer.batch): this fit's data statistics, curve structure and point mask, as
        # arrays traced by vmap; padded points are masked out of the likelihood.
        dists, stats, struct = fixed, spec.statistics, structure
        if per_fit is not None:
            stats, struct = per_fit["statistics"], {**(structure or {}), **per_fit["structure"]}
            dists = {n: p.traced_distribution(stats) if p.uses_data() else fixed[n] for n, p in spec.priors.items()}
        centres = spec.centres if per_fit is None else per_fit.get("centres")
        params = sample_parameters(law.parameter_names, dists, centring, centres)
        mu = law.link_fn(params, log_inputs)
        observe(mu, loss, dists, likelihood=spec.likelihood, noise=noise, structure=struct, statistics=stats,
                mask=None if per_fit is None else per_fit.get("mask"), target=law.target)

    return model
