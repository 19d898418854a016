"""Law + priors + noise → a numpyro model.

The likelihood is on log-loss: ``log y_i = log f(x_i; θ) + ε_i`` with ε Normal or Student-t. The observed site is the
loss itself (an exp-transformed distribution), so log-likelihoods are densities of the loss and comparable across
laws. Working in log space makes the noise relative (seed noise grows with the loss level) and matches the fitting
practice of Hoffmann et al. 2022 and Besiroglu et al. 2024 (Huber on log residuals). A law whose ``[target]`` is not
a positive loss (:class:`bayescale.laws.Target`) gets the same noise on its link scale instead: additive on the
natural scale for a ``"real"`` target, on the logit for a ``"unit_interval"`` one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from bayescale.laws import Law, Target
from bayescale.noise import Noise, linear_recurrence, noise_scale, ou_terms
from bayescale.priors import Prior, parse_prior

__all__ = ["LIKELIHOODS", "NOISE_PRIORS", "ModelSpec", "build_model", "mass_structure", "observe"]

#: Likelihood families for the log-loss residual.
LIKELIHOODS = ("student_t", "normal")

#: Default priors of the noise parameters. sigma is the residual scale of log-loss: seed noise of 0.01-0.02 nats
#: at losses of 2-4 (LAWS.md, "practice") is 0.003-0.01 in log-loss, well inside HalfNormal(0.05). nu follows
#: Juarez & Steel (2010), Gamma(2, 0.1), mean 20, which lets data choose between heavy and Gaussian tails.
#: tau, the spread of run effects on log-loss: seed-to-seed spread of final losses is ~0.3-1% (LAWS.md, "practice"),
#: well inside HalfNormal(0.05). ell, the correlation length of residuals along ln(tokens): LogNormal(ln 0.5, 1) puts
#: 90% of its mass between 0.1 and 2.6 e-folds, from nearly independent checkpoints at doubling tokens to residuals
#: shared across a whole curve. kappa, the log-slope of the noise scale in log-loss: Normal(0, 1); over a curve from
#: loss 10 to 2.5 (a log-loss span of 1.4) kappa = 1 quadruples the noise scale.
NOISE_PRIORS: dict[str, str] = {
    "sigma": "HalfNormal(0.05)",
    "nu": "Gamma(2, 0.1)",
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
    from bayescale.laws import LawError

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
    ``loss=None``, simulates whole curves jointly. Shared by every model whose residuals are on log-loss: catalogue
    laws (:func:`build_model`) and schedule laws (:mod:`bayescale.schedules`). ``mask``: points to leave out of the
    likelihood (padding in batched fits). ``target``: the law's target kind; ``mu`` and the noise are on its link scale
    (log-loss by default, :class:`bayescale.laws.Target`), and ``loss`` is the observed value itself."""
    n = mu.shape[0]
    sigma = numpyro.sample("sigma", dists["sigma"])
    nu = numpyro.sample("nu", dists["nu"]) if likelihood == "student_t" else None
    kappa = numpyro.sample("kappa", dists["kappa"]) if noise.heteroscedastic else None
    scale = noise_scale(sigma, mu, noise, kappa, statistics)
    loc = mu
    if noise.run_effect:
        tau = numpyro.sample("tau", dists["tau"])
        with numpyro.plate("run", structure["n_runs"]):
            z_run = numpyro.sample("z_run", dist.Normal(0.0, 1.0))
        loc = loc + numpyro.deterministic("run_effect", tau * z_run)[structure["run_idx"]]

    def family(center, spread):
        return dist.StudentT(nu, center, spread) if nu is not None else dist.Normal(center, spread)

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


def mass_structure(dense_mass: bool, spec: ModelSpec) -> bool | list[tuple[str, ...]]:
    """NUTS mass matrix: with ``dense_mass``, dense over the law and noise parameters (amplitudes and exponents of a
    power law are strongly correlated) and diagonal over the per-run effects ``z_run``, which are many and nearly
    independent given ``tau``: a fully dense matrix would grow with the square of the number of runs (10^8 entries
    at 10^4 runs) for no gain."""
    if not dense_mass or not spec.noise.run_effect:
        return bool(dense_mass)
    return [tuple(spec.sampled_names)]


def build_model(spec: ModelSpec, structure: Mapping | None = None, *, batched: bool = False):
    """Return ``model(log_inputs, loss=None)`` for numpyro.

    ``log_inputs`` maps each law input to the log of its values over points; ``structure`` is
    :func:`bayescale.noise.curve_structure` of the data (needed for run effects and correlated residuals). With
    ``loss`` given, the observed site ``loss`` carries the exact likelihood (the conditional chain along each run for
    ``"ou"``); without it, ``loss`` is simulated jointly (a draw of whole curves). ``batched``: the structure comes
    with each call (``per_fit``, see :mod:`bayescale.batch`); ``structure`` then only gives the (padded) number of
    runs ``n_runs``, which fixes the shape of the run effects.
    """
    fixed = {name: prior.distribution(spec.statistics) for name, prior in spec.priors.items()}
    law, noise = spec.law, spec.noise

    if (noise.run_effect or noise.correlation) and structure is None and not batched:
        raise ValueError(f"noise {noise.spec!r} needs the data's curve structure (bayescale.noise.curve_structure)")

    def model(
        log_inputs: Mapping[str, jnp.ndarray],
        loss: jnp.ndarray | None = None,
        per_fit: Mapping | None = None,
    ):
        # per_fit (batched fits, bayescale.batch): this fit's data statistics, curve structure and point mask, as
        # arrays traced by vmap; padded points are masked out of the likelihood.
        dists, stats, struct = fixed, spec.statistics, structure
        if per_fit is not None:
            stats, struct = per_fit["statistics"], {**(structure or {}), **per_fit["structure"]}
            dists = {n: p.traced_distribution(stats) if p.uses_data() else fixed[n] for n, p in spec.priors.items()}
        params = {name: numpyro.sample(name, dists[name]) for name in law.parameter_names}
        mu = law.link_fn(params, log_inputs)
        observe(mu, loss, dists, likelihood=spec.likelihood, noise=noise, structure=struct, statistics=stats,
                mask=None if per_fit is None else per_fit["mask"], target=law.target)

    return model
