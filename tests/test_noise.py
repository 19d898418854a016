"""Curve noise models: spec parsing, curve structure, the exact OU likelihood, continuation of a partly seen curve."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr
from numpyro.infer import Predictive, log_likelihood
from numpyro.infer.util import log_density as model_log_density

import bayescale as bs
from bayescale.data import DataError
from bayescale.infer.fit import data_statistics, log_inputs_of
from bayescale.infer.model import ModelSpec, build_model, resolve_priors
from bayescale.infer.noise import Noise, curve_structure, linear_recurrence
from bayescale.results.predict import NoiseTerms, draws_log_law, log_density, noise_terms
from bayescale.validation.simulate import ouro_curves, simulate_curves
from bayescale.validation.holdout import make_splits

TRUTH = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)


def curves(seed=0, n_sizes=4, seeds=2, checkpoints=12, **noise):
    runs = pd.DataFrame([{"run": f"N{n:.2g}-s{s}", "N": n} for n in np.geomspace(5e7, 5e9, n_sizes) for s in range(seeds)])
    return simulate_curves("hoffmann2022", TRUTH, runs, np.geomspace(1e9, 1e11, checkpoints), seed=seed, **noise)


def test_spec_parsing_and_auto():
    assert Noise.parse("run+ou") == Noise(run_effect=True, correlation=True)
    assert Noise.parse("hetero").names == ("kappa",) and Noise.parse("iid").spec == "iid"
    assert Noise.parse("run+ou+hetero").names == ("tau", "ell", "kappa")
    finals = bs.load_runs(pd.DataFrame({"N": [1e8, 2e8, 4e8, 8e8], "D": [2e9] * 4, "loss": [3.0, 2.9, 2.8, 2.7]}))
    assert Noise.parse("auto", finals).spec == "iid"  # one point per run: nothing to correlate
    assert Noise.parse("auto", bs.load_runs(curves())).spec == "run+ou"
    # the collapsed run effects are built for a log loss: for other targets auto samples them (fit passes the kind)
    assert Noise.parse("auto", bs.load_runs(curves()), target="unit_interval").spec == "run+ou+latent"
    assert Noise.parse("auto", finals, target="real").spec == "iid"
    with pytest.raises(ValueError, match=r"noise 'run\+ar': unknown term\(s\) \['ar'\]; terms are \['iid', 'run', 'ou', 'hetero', 'latent'\]"):
        Noise.parse("run+ar")
    with pytest.raises(ValueError, match=r"'iid' means no structure and cannot be combined"):
        Noise.parse("iid+run")


def test_curve_structure_links_each_checkpoint_to_the_previous_one_of_its_run():
    df = pd.DataFrame({"run": ["b", "a", "a", "b", "a"], "N": [2e8, 1e8, 1e8, 2e8, 1e8], "D": [4e9, 3e9, 1e9, 1e9, 2e9],
                       "loss": [3.0, 3.1, 3.5, 3.4, 3.3]})
    st = curve_structure(bs.load_runs(df, check_units=False), Noise(correlation=True))
    prev, has_prev = np.asarray(st["prev"]), np.asarray(st["has_prev"])
    # run a: D 1e9 (row 2) -> 2e9 (row 4) -> 3e9 (row 1); run b: 1e9 (row 3) -> 4e9 (row 0)
    assert prev.tolist() == [3, 4, 2, 3, 2] and has_prev.tolist() == [True, True, False, False, True]
    assert np.allclose(np.asarray(st["dlog"]), [np.log(4), np.log(1.5), 0, 0, np.log(2)])
    tied = df.assign(D=[4e9, 3e9, 3e9, 1e9, 2e9])
    with pytest.raises(DataError, match=r"runs \['a'\] have two checkpoints at the same D"):
        curve_structure(bs.load_runs(tied, check_units=False), Noise(correlation=True))


def test_linear_recurrence_matches_the_loop():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, 50), rng.standard_normal(50)
    a[[0, 17, 30]] = 0.0  # run starts
    x, prev = np.empty(50), 0.0
    for k in range(50):
        prev = a[k] * prev + b[k]
        x[k] = prev
    assert np.allclose(np.asarray(linear_recurrence(jnp.asarray(a), jnp.asarray(b))), x, rtol=1e-12)


def test_ou_likelihood_is_the_exact_multivariate_normal_density():
    # The chain of conditionals must equal the joint Gaussian density with covariance s² exp(-|ln t_i - ln t_j| / ell)
    # within each run (independent across runs), to rounding.
    ds = bs.load_runs(curves(checkpoints=6, n_sizes=3, seeds=1))
    law = bs.load_law("hoffmann2022")
    noise = Noise(correlation=True)
    spec = ModelSpec(law=law, priors=resolve_priors(law, "normal", None, noise), statistics=data_statistics(ds),
                     likelihood="normal", noise=noise)
    model = build_model(spec, curve_structure(ds, noise))
    params = {**{k: jnp.asarray([v]) for k, v in TRUTH.items()}, "sigma": jnp.asarray([0.01]), "ell": jnp.asarray([0.7])}
    ll = np.asarray(log_likelihood(model, params, log_inputs_of(ds, law), loss=jnp.asarray(ds["loss"].values))["loss"])
    mu = np.log(np.asarray(law.predict(TRUTH, N=ds["N"].values, D=ds["D"].values)))
    y, t, runs = np.log(ds["loss"].values), np.log(ds["D"].values), ds["run"].values
    expected = 0.0
    for r in np.unique(runs):
        k = runs == r
        cov = 0.01**2 * np.exp(-np.abs(t[k][:, None] - t[k][None, :]) / 0.7)
        expected += scipy.stats.multivariate_normal(mu[k], cov).logpdf(y[k]) - y[k].sum()  # Jacobian of exp
    assert np.isclose(ll.sum(), expected, rtol=1e-10)


def test_log_density_integrates_a_fresh_run_effect_exactly_for_normal_noise():
    shape = (3, 2)
    t = NoiseTerms(shift=np.zeros(shape), run_sd=np.full(shape, 0.02), scale=np.full(shape, 0.01), nu=None)
    log_mu, y = np.full(shape, np.log(3.0)), np.array([3.05, 2.9])
    exact = scipy.stats.norm.logpdf(np.log(y), np.log(3.0), np.hypot(0.02, 0.01)) - np.log(y)
    assert np.allclose(log_density(t, log_mu, y), exact[None, :], atol=1e-9)


@pytest.fixture(scope="module")
def curve_fit():
    ds = bs.load_runs(curves(seed=3))
    # chains from the prior median (as the iid fit below): the multi-start MAP search is not what these tests check
    return ds, bs.fit("hoffmann2022", ds, rng_key=0, num_chains=2, num_warmup=300, num_samples=300, progress_bar=False,
                      init="median")


def test_curve_fit_records_its_noise_and_run_effects(curve_fit):
    ds, result = curve_fit
    assert bs.provenance(result)["noise"]["spec"] == "run+ou"
    post = result["posterior"]
    assert post["run_effect"].dims == ("chain", "draw", "run") and post["run_effect"].sizes["run"] == 8
    assert {"tau", "ell"} <= set(bs.provenance(result)["noise_parameters"])
    # The 90% intervals hold every law constant (data from the model, 96 points, 1% noise).
    for name, value in TRUTH.items():
        lo, hi = np.quantile(post[name].values, [0.05, 0.95])
        assert lo <= value <= hi, (name, lo, value, hi)
    # Whole curves are replicated: the posterior predictive has one draw per point, all finite and positive.
    ppc = result["posterior_predictive"]["loss"].values
    assert ppc.shape == (2, 300, ds.sizes["point"]) and np.all(ppc > 0)


def test_a_seen_run_is_continued_from_its_last_checkpoint(curve_fit):
    ds, result = curve_fit
    run = "N5e+09-s0"
    k = np.flatnonzero(ds["run"].values == run)
    last = k[np.argmax(ds["D"].values[k])]
    at = dict(N=float(ds["N"].values[last]), D=float(ds["D"].values[last]))
    # At the run's own last checkpoint the OU residual is known: the prediction is the observation itself.
    same = bs.predict(result, kind="predictive", run=run, **at)["loss"].values
    assert np.allclose(same, ds["loss"].values[last], rtol=1e-9)
    # A little further on (20% more tokens) the known run has no fresh run effect and a residual scale shrunk by
    # sqrt(1 - φ²), φ = exp(-ln 1.2 / ell), draw by draw; its band is narrower than a new run's (the law's own
    # uncertainty, shared by both, keeps the ratio of band widths well above the noise ratio).
    further = dict(N=np.array([at["N"]]), D=np.array([at["D"] * 1.2]))
    law, post = bs.load_law("hoffmann2022"), result["posterior"]
    log_mu = draws_log_law(law, {n: post[n].values.reshape(-1) for n in law.parameter_names}, further)
    seen, new = noise_terms(result, law, log_mu, further, run=[run]), noise_terms(result, law, log_mu, further)
    ell, tau, sigma = (post[n].values.reshape(-1, 1) for n in ("ell", "tau", "sigma"))
    # collapsed Student-t (the default): a new run's residual is the multivariate t's marginal t_nu(0, hypot(tau, s))
    assert np.all(seen.run_sd == 0) and np.all(new.run_sd == 0) and np.allclose(new.scale, np.hypot(tau, sigma))
    assert np.allclose(seen.scale, sigma * np.sqrt(1 - np.exp(-2 * np.log(1.2) / ell)))
    q = lambda p: np.diff(np.quantile(p["loss"].values, [0.05, 0.95]))[0]  # noqa: E731
    assert q(bs.predict(result, kind="predictive", run=run, **further)) < q(bs.predict(result, kind="predictive", **further))
    with pytest.raises(ValueError, match=r"run= applies to kind='predictive'"):
        bs.predict(result, run=run, **at)


def test_ppc_figure_draws_each_runs_own_band(curve_fit):
    """plot_ppc's left panel shows each run's predictive (its run effect, its curve's OU residual), not a new run's:
    the band ends at the run's last checkpoint, where the known residual makes the prediction the observation."""
    import matplotlib.pyplot as plt

    ds, result = curve_fit
    fig = bs.plot_ppc(result)
    runs = np.unique(ds["run"].values)
    lines = fig.axes[0].get_lines()
    assert len(lines) == runs.size
    for run, line in zip(runs, lines):
        k = np.flatnonzero(ds["run"].values == run)
        last = k[np.argmax(ds["D"].values[k])]
        assert np.isclose(line.get_xdata()[-1], ds["D"].values[last], rtol=1e-12)
        assert np.isclose(line.get_ydata()[-1], ds["loss"].values[last], rtol=1e-9), run
    plt.close(fig)


def test_min_tokens_drops_early_checkpoints_and_says_so(curve_fit):
    ds, _ = curve_fit
    from bayescale.infer.fit import drop_before

    kept = drop_before(ds, 1e10)
    assert kept.sizes["point"] == int((ds["D"].values >= 1e10).sum())
    assert '"dropped": ' in kept.attrs["min_tokens"]
    with pytest.raises(DataError, match=r"min_tokens=1e\+12 drops every point \(largest D is 1e\+11\)"):
        drop_before(ds, 1e12)


def test_prefix_split_cuts_every_curve():
    ds = bs.load_runs(ouro_curves(checkpoints=8))
    folds = make_splits(ds, "prefix", fractions=(0.5,))
    (fold,) = folds
    d, runs = ds["D"].values, ds["run"].values
    for r in np.unique(runs):
        k = runs == r
        assert d[k & fold.train].max() <= 0.5 * d[k].max() < d[k & fold.test].min()
    with pytest.raises(ValueError, match=r"fractions must lie strictly between 0 and 1, got \[1.0\]"):
        make_splits(ds, "prefix", fractions=(1.0,))


def test_too_few_loop_counts_errors_unless_the_priors_are_meant_to_carry_them():
    ds = bs.load_runs(ouro_curves(checkpoints=4, loops=(2, 4), sizes=(53e6, 134e6, 374e6)))
    with pytest.raises(DataError, match=r"too few distinct values of 'T_m': 2"):
        bs.fit("ouro2025", ds)
    with pytest.warns(UserWarning, match=r"fitting anyway, the priors carry those parameters"):
        with pytest.raises(ValueError, match=r"num_chains must be a positive integer"):  # stops before sampling
            bs.fit("ouro2025", ds, require_identifiable=False, num_chains=0)


def test_noise_errors_name_the_problem():
    ds = bs.load_runs(pd.DataFrame({"run": list("aabbcc"), "N": [1e8] * 2 + [2e8] * 2 + [4e8] * 2,
                                    "loss": [3.5, 3.3, 3.2, 3.1, 3.0, 2.9]}), inputs=("N",), check_units=False)
    with pytest.raises(DataError, match=r"noise 'ou' correlates checkpoints along 'D', which the data do not have"):
        bs.fit("kaplan2020_n", ds, noise="ou")
    with pytest.raises(DataError, match=r"min_tokens filters on 'D', which the data do not have"):
        bs.fit("kaplan2020_n", ds, min_tokens=1e9)


def test_noise_models_are_compared_by_loo_over_runs(curve_fit):
    # The same runs fitted with independent checkpoints and with the curve model that generated them: leaving whole
    # runs out, the generating model must predict the held-out curves better (higher elpd). Fixed seeds: deterministic.
    ds, correlated = curve_fit
    independent = bs.fit("hoffmann2022", ds, noise="iid", rng_key=0, num_chains=2, num_warmup=300, num_samples=300,
                         progress_bar=False, init="median")
    table = bs.compare_laws({"iid": independent, "run+ou": correlated})
    assert table.index[0] == "run+ou" and table.loc["iid", "elpd_diff"] > 0


def test_looking_for_run_effects_compiles_nothing(caplog):
    """After sampling, every fit asks whether its model has run effects to draw: the question is answered by tracing
    the model (jax.eval_shape), not by compiling and running a one-draw predictive program (seconds per fit)."""
    import logging

    import jax

    from bayescale.infer.model import recover_run_effects

    law, ds, stats, priors, model, log_inputs = _hetero_model()  # iid noise in space: no run effect
    draws = {**{k: np.full((2, 3), v) for k, v in dict(E=1.0, A=1000.0, B=1000.0, alpha=0.3, beta=0.25).items()},
             "nu": np.full((2, 3), 5.0), "kappa": np.zeros((2, 3)), "sigma__centred": np.full((2, 3), -3.0)}
    key = jax.random.PRNGKey(0)
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        got = recover_run_effects(model, (log_inputs,), {"loss": ds["loss"].values}, draws, key)
    assert got == {}
    assert not [r for r in caplog.records if "Finished XLA compilation" in r.getMessage()]


def test_hetero_scale_is_sigma_at_the_lowest_loss_and_follows_the_loss_level():
    from bayescale.infer.noise import noise_scale

    stats = {"min_loss": 2.0, "max_loss": 10.0}
    log_mu = np.log(np.array([2.0, 4.0, 10.0]))
    assert noise_scale(0.01, log_mu, Noise(), 1.0, stats) == 0.01  # without "hetero": sigma everywhere
    # kappa = 1: the scale is proportional to the loss level, sigma at min_loss (exact up to rounding)
    assert np.allclose(noise_scale(0.01, log_mu, Noise(heteroscedastic=True), 1.0, stats), [0.01, 0.02, 0.05], rtol=1e-12)
    got = noise_scale(0.01, jnp.asarray(log_mu), Noise(heteroscedastic=True), 1.0, stats)  # the model's JAX path
    assert np.allclose(np.asarray(got), [0.01, 0.02, 0.05], rtol=1e-12)


def _hetero_model():
    """hoffmann2022 under Student-t "hetero" noise on a 6 x 6 grid whose losses lie well above min_loss = 2 (the SBC
    statistics, bayescale.validation.calibration): there log sigma and kappa are tied unless the scale is centred."""
    law = bs.load_law("hoffmann2022")
    truth = dict(E=1.0, A=1000.0, B=1000.0, alpha=0.3, beta=0.25)  # losses 4-12
    n, d = (m.ravel() for m in np.meshgrid(np.geomspace(5e7, 5e9, 6), np.geomspace(1e9, 1e11, 6), indexing="ij"))
    loss = np.asarray(law.predict(truth, N=n, D=d)) * np.exp(0.03 * np.random.default_rng(0).standard_normal(n.size))
    ds = bs.load_runs(pd.DataFrame({"N": n, "D": d, "loss": loss}))
    stats = {"min_loss": 2.0, "max_loss": 4.0}
    priors = resolve_priors(law, "student_t", None, Noise(heteroscedastic=True))
    model = build_model(ModelSpec(law, priors, stats, likelihood="student_t", noise=Noise(heteroscedastic=True)))
    return law, ds, stats, priors, model, log_inputs_of(ds, law)


def test_hetero_scale_is_sampled_at_the_data_centre_with_the_declared_prior():
    """NUTS samples a = log sigma + kappa·(c − log min_loss), c the mean log law level over the points, in place of
    sigma: the model's joint density of (a, kappa, θ, nu, y) must equal the declared model's density of (sigma, kappa,
    θ, nu, y), written out here by hand (priors, Student-t on log loss, Jacobian 1/y), times |dsigma/da| = sigma, at
    random points; and sigma is recorded with its usual meaning (the scale at min_loss)."""
    law, ds, stats, priors, model, log_inputs = _hetero_model()
    y = ds["loss"].values
    rng = np.random.default_rng(1)
    for _ in range(5):
        p = dict(E=rng.uniform(0.2, 1.9), A=rng.uniform(50, 5000), B=rng.uniform(50, 5000), alpha=rng.uniform(0.1, 0.8),
                 beta=rng.uniform(0.1, 0.8), nu=rng.uniform(1.5, 30), kappa=rng.normal(0, 1),
                 sigma=rng.uniform(0.001, 0.1))
        log_mu = np.log(np.asarray(law.predict({k: p[k] for k in law.parameter_names}, N=ds["N"].values,
                                               D=ds["D"].values)))
        scale = p["sigma"] * np.exp(p["kappa"] * (log_mu - np.log(stats["min_loss"])))
        want = (sum(float(priors[k].distribution(stats).log_prob(v)) for k, v in p.items())
                + np.sum(scipy.stats.t.logpdf(np.log(y), p["nu"], log_mu, scale) - np.log(y)))
        a = np.log(p["sigma"]) + p["kappa"] * (np.mean(log_mu) - np.log(stats["min_loss"]))
        got, trace = model_log_density(model, (log_inputs,), {"loss": y},
                                       {k: v for k, v in p.items() if k != "sigma"} | {"sigma__centred": a})
        np.testing.assert_allclose(float(trace["sigma"]["value"]), p["sigma"], rtol=1e-12)
        np.testing.assert_allclose(float(got), want + np.log(p["sigma"]), rtol=1e-10)


def test_hetero_prior_draws_keep_the_declared_sigma_and_kappa():
    """Prior draws through the centred model: sigma ~ HalfNormal(0.05) and kappa ~ Normal(0, 1), independent, as
    declared. With 4000 draws a KS statistic above 0.031 has probability below 0.1% under the right law (asymptotic
    critical value 1.95/sqrt(n)), and |Spearman rho| of independent draws has sd 1/sqrt(4000) = 0.016, so 0.06 is a
    3.8-sd bound."""
    import jax

    _, _, _, _, model, log_inputs = _hetero_model()
    draws = Predictive(model, num_samples=4000)(jax.random.PRNGKey(5), log_inputs)
    sigma, kappa = np.asarray(draws["sigma"]), np.asarray(draws["kappa"])
    assert scipy.stats.kstest(sigma, scipy.stats.halfnorm(scale=0.05).cdf).statistic < 0.031
    assert scipy.stats.kstest(sigma, scipy.stats.halfnorm(scale=0.055).cdf).statistic > 0.031  # the test can fail
    assert scipy.stats.kstest(kappa, scipy.stats.norm().cdf).statistic < 0.031
    assert abs(scipy.stats.spearmanr(sigma, kappa).statistic) < 0.06
    # the sampled site is the log scale at each draw's own centre of the law's log level
    law, ds, stats = bs.load_law("hoffmann2022"), _hetero_model()[1], {"min_loss": 2.0}
    theta = {n: np.asarray(draws[n])[:50, None] for n in law.parameter_names}
    centre = np.mean(np.log(np.asarray(law.predict(theta, N=ds["N"].values, D=ds["D"].values))), axis=1)
    np.testing.assert_allclose(np.asarray(draws["sigma__centred"])[:50],
                               np.log(sigma[:50]) + kappa[:50] * (centre - np.log(stats["min_loss"])), rtol=1e-9)


# ---------------------------------------------------------------------------------------------------------------------
# Collapsed run effects: the run effect and the OU path integrated out exactly
def _random_curves(rng, n=19, n_runs=4):
    """Unequally spaced checkpoints of a few runs in random row order, with random residuals and per-point scales."""
    run, t = rng.integers(0, n_runs, n), rng.uniform(0.0, 3.0, n)
    ds = xr.Dataset({"D": ("point", 1e9 * np.exp(t)), "loss": ("point", np.ones(n))},
                    coords={"run": ("point", np.char.add("r", run.astype(str))), "point": np.arange(n)})
    return ds, run, t, rng.normal(0.0, 0.02, n), rng.uniform(0.005, 0.02, n)


def _dense_cov(t, s, tau, ell, ou):
    corr = np.exp(-np.abs(t[:, None] - t[None, :]) / ell) if ou else np.eye(t.size)
    return tau**2 + np.outer(s, s) * corr


@pytest.mark.parametrize("spec", ["run+ou", "run"])
@pytest.mark.parametrize("nu", [None, 3.5])
@pytest.mark.parametrize("chain", [True, False], ids=["chain terms", "per-run sums"])
def test_collapsed_log_density_is_the_dense_multivariate_density(spec, nu, chain):
    """Σ_points collapsed_log_terms = Σ_runs log N(d_r; 0, tau²·11ᵀ + S K S) (or multivariate t), from scipy with
    dense matrices, to 1e-10 (float64; the sums here are ~ +200, rounding is ~1e-13). With ``chain`` the point terms
    are the conditionals p(d_k | d_<k): their running sum along a run is the density of its first k points."""
    from bayescale.infer.noise import collapsed_log_terms

    rng = np.random.default_rng(11)
    ds, run, t, resid, s = _random_curves(rng)
    noise = Noise.parse(spec)
    st = curve_structure(ds, noise)
    tau, ell = 0.013, 0.7
    got = np.asarray(collapsed_log_terms(jnp.asarray(resid), jnp.asarray(s), tau, nu, st, noise, ell, chain=chain))

    def dense(k):
        cov = _dense_cov(t[k], s[k], tau, ell, noise.correlation)
        if nu is None:
            return scipy.stats.multivariate_normal(np.zeros(k.sum()), cov).logpdf(resid[k])
        return scipy.stats.multivariate_t(np.zeros(k.sum()), cov, df=nu).logpdf(resid[k])

    want = sum(dense(run == r) for r in np.unique(run))
    assert abs(got.sum() - want) < 1e-10
    if chain:  # the first k checkpoints of run 0, in the order the chain visits them (D order under "ou", else rows)
        rows = np.flatnonzero(run == 0)
        rows = rows[np.argsort(t[rows])] if noise.correlation else rows
        for k in range(1, rows.size + 1):
            head = np.isin(np.arange(run.size), rows[:k])
            assert abs(got[rows[:k]].sum() - dense(head)) < 1e-10


@pytest.mark.parametrize("nu", [None, 3.5])
def test_run_effect_conditional_is_the_dense_gaussian_conditional(nu):
    """u | d: mean tau²·1ᵀΣ⁻¹d, variance tau² − tau⁴·1ᵀΣ⁻¹1; for the multivariate t the latent precision's Gamma has
    shape (nu + n)/2 and rate (nu + dᵀΣ⁻¹d)/2 (the scale mixture's conjugate update)."""
    from bayescale.infer.noise import run_effect_conditional

    rng = np.random.default_rng(12)
    ds, run, t, resid, s = _random_curves(rng)
    noise = Noise.parse("run+ou")
    tau, ell = 0.013, 0.7
    mean, var, shape, rate = map(np.asarray, (x if x is not None else np.nan for x in run_effect_conditional(
        jnp.asarray(resid), jnp.asarray(s), tau, nu, curve_structure(ds, noise), noise, ell)))
    for r in range(4):
        k = run == r
        prec = np.linalg.inv(_dense_cov(t[k], s[k], tau, ell, True))
        one = np.ones(k.sum())
        assert np.isclose(mean[r], tau**2 * one @ prec @ resid[k], rtol=1e-10)
        assert np.isclose(var[r], tau**2 - tau**4 * one @ prec @ one, rtol=1e-10)
        if nu is not None:
            assert np.isclose(shape[r], (nu + k.sum()) / 2) and np.isclose(rate[r], (nu + resid[k] @ prec @ resid[k]) / 2, rtol=1e-10)


def test_latent_term_keeps_the_sampled_run_effects():
    assert Noise.parse("run+ou").collapses and Noise.parse("run+ou").spec == "run+ou"
    latent = Noise.parse("run+ou+latent")
    assert not latent.collapses and latent.spec == "run+ou+latent"
    assert Noise.from_attrs({"noise": latent.to_json()}) == latent
    # a result written before collapsing existed (no "collapsed" key) sampled its run effects
    assert not Noise.from_attrs({"noise": '{"run_effect": true, "correlation": true, "heteroscedastic": false, "axis": "D"}'}).collapses
    with pytest.raises(ValueError, match=r"noise 'ou\+latent': 'latent' samples the run effects and needs the term 'run'"):
        Noise.parse("ou+latent")


@pytest.mark.slow
def test_collapsed_and_latent_run_effects_give_the_same_posterior():
    """Normal likelihood: collapsing is exact, so the collapsed model and the latent one (z_run sampled) have the same
    posterior. 8 simulated curves x 8 checkpoints, 2 chains x 600 + 600 each (about 3 minutes on 2 shared cores).
    Negative control, run by hand: with the OU innovation variance 1 − φ² replaced by 1 in the collapsed density,
    this test fails.
    Medians and 5%/95% quantiles of every law and noise parameter, and each run's mean effect, agree within 4.5
    Monte Carlo standard errors of their difference (arviz-stats MCSE of each fit; 4.5 leaves well under 1% chance of
    a false alarm over the 32 comparisons if the posteriors are equal, with room for the error of the MCSE estimates
    themselves)."""
    import arviz_stats as azs

    # residuals strongly correlated between checkpoints (φ ≈ 0.64 at ell 1.5) and a run effect as large as sigma, so
    # that both the OU variance 1 − φ² and the rank-one run term move the posterior (with the default ell 0.3,
    # φ ≈ 0.1 and a likelihood that forgot 1 − φ² passed this test)
    ds = bs.load_runs(curves(seed=5, checkpoints=8, ell=1.5, tau=0.01))
    fits = {spec: bs.fit("hoffmann2022", ds, noise=spec, likelihood="normal", rng_key=4, num_chains=2,
                         num_warmup=600, num_samples=600, progress_bar=False)
            for spec in ("run+ou", "run+ou+latent")}
    collapsed, latent = (fits[s]["posterior"].to_dataset() for s in ("run+ou", "run+ou+latent"))
    assert "z_run" not in collapsed and "z_run" in latent
    for name in (*TRUTH, "sigma", "tau", "ell"):
        for prob in (0.05, 0.5, 0.95):
            a, b = (float(p[name].quantile(prob, dim=("chain", "draw"))) for p in (collapsed, latent))
            se = np.hypot(*(float(azs.mcse(p[[name]], method="quantile", prob=prob)[name]) for p in (collapsed, latent)))
            assert abs(a - b) < 4.5 * se, (name, prob, a, b, se)
    u_c, u_l = (p["run_effect"].mean(("chain", "draw")).values for p in (collapsed, latent))
    se = np.hypot(*(azs.mcse(p[["run_effect"]])["run_effect"].values for p in (collapsed, latent)))
    assert np.all(np.abs(u_c - u_l) < 4.5 * se), (u_c, u_l, se)


def test_a_new_run_under_collapsed_student_t_noise_has_the_multivariate_t_marginal():
    """One latent precision scales the run effect and the residual together: a new run's log-loss residual is
    t_nu(0, sqrt(tau² + s²)); the latent model's Normal(0, tau) + t_nu(0, s) stays as it was."""
    from bayescale.results.predict import _multivariate_t

    shape = (3, 2)
    terms = NoiseTerms(shift=np.zeros(shape), run_sd=np.array([[0.02, 0.0]] * 3), scale=np.full(shape, 0.01),
                       nu=np.full((3, 1), 4.0))
    got = _multivariate_t(terms, Noise.parse("run+ou"))
    assert np.allclose(got.scale[:, 0], np.hypot(0.02, 0.01)) and np.all(got.run_sd == 0)
    assert np.allclose(got.scale[:, 1], 0.01)  # a seen run (run_sd 0) keeps its conditional scale
    log_mu, y = np.full(shape, np.log(3.0)), np.array([3.05, 2.9])
    want = scipy.stats.t.logpdf(np.log(y[0]), 4.0, np.log(3.0), np.hypot(0.02, 0.01)) - np.log(y[0])
    assert np.allclose(log_density(got, log_mu, y)[:, 0], want, atol=1e-12)
    assert _multivariate_t(terms, Noise.parse("run+ou+latent")) is terms
    assert _multivariate_t(terms._replace(nu=None), Noise.parse("run+ou")).run_sd is terms.run_sd


def test_default_nu_prior_closes_the_student_t_corner():
    # benchmarks/student_t_spike.py: kaplan2020_n through the first and last of 36 points. Under the former prior
    # nu ~ Gamma(2, 0.1) the log posterior (sampler coordinates: log sigma) at nu = 0.005 rose as sigma shrank (the
    # improper corner, docs/noise.md); under the default nu >= 1 the corner has no density and at nu just above 1 the
    # density falls by hundreds of nats per decade-range of sigma. Deterministic: no sampling, so no tolerance.
    from numpyro.infer.util import log_density as model_log_density

    from bayescale.infer.model import NOISE_PRIORS

    assert NOISE_PRIORS["nu"] == "1 + Gamma(2, 0.1)"
    law = bs.load_law("kaplan2020_n")
    log_n = np.log(np.geomspace(5e7, 5e9, 36))
    log_y = 0.076 * (np.log(8.8e13) - log_n) + 0.01 * np.random.default_rng(0).standard_t(3, log_n.size)
    table = bs.load_runs({"N": np.exp(log_n), "loss": np.exp(log_y)}, inputs=law.input_names)
    alpha = (log_y[0] - log_y[-1]) / (log_n[-1] - log_n[0])
    exact = {"N_c": np.exp(log_y[0] / alpha + log_n[0]), "alpha_N": alpha}

    def log_post(nu_prior, sigma, nu):
        noise = Noise.parse("iid")
        priors = resolve_priors(law, "student_t", None if nu_prior is None else {"nu": nu_prior}, noise)
        model = build_model(ModelSpec(law=law, priors=priors, statistics={}, noise=noise), curve_structure(table, noise))
        lp, _ = model_log_density(model, ({"N": jnp.asarray(log_n)},), {"loss": jnp.asarray(np.exp(log_y))},
                                  {**exact, "sigma": sigma, "nu": nu})
        return float(lp) + np.log(sigma)

    former = [log_post("Gamma(2, 0.1)", s, 0.005) for s in (1e-2, 1e-8, 1e-16)]
    assert former[0] < former[1] < former[2]  # the trap this test guards against, shown to exist
    with warnings.catch_warnings():  # numpyro may warn about the out-of-support value; -inf is the point
        warnings.simplefilter("ignore", UserWarning)
        assert log_post(None, 1e-8, 0.005) == -np.inf
    default = [log_post(None, s, 1.0001) for s in (1e-2, 1e-8, 1e-16)]
    assert default[0] > default[1] + 100 > default[2] + 200


@pytest.mark.parametrize("df", [1.0, 2.5, 30.0, 1e6])
def test_polar_student_t_draws_follow_the_t_distribution(df):
    """The likelihood family's draws (Bailey's polar method, bayescale.infer.noise.polar_t) against scipy's t CDF.
    20,000 draws at a fixed key: a correct sampler gives a uniform KS p-value, so p > 0.01 fails one seed in 100;
    a sampler off in the tails (a normal in place of t(2.5): KS distance ~0.03, p ~ 1e-15 at this size) fails."""
    import jax

    from bayescale.infer.noise import StudentT, polar_t

    x = np.asarray(polar_t(jax.random.PRNGKey(0), df, (20000,)))
    assert np.all(np.isfinite(x))
    assert scipy.stats.kstest(x, scipy.stats.t(df).cdf).pvalue > 0.01
    # the distribution keeps numpyro's density and takes loc, scale and batch shapes as numpyro's does
    import numpyro.distributions as dist

    d = StudentT(jnp.array([df, 3.0]), 1.5, 0.2)
    np.testing.assert_allclose(d.log_prob(jnp.array([1.2, 1.7])),
                               dist.StudentT(jnp.array([df, 3.0]), 1.5, 0.2).log_prob(jnp.array([1.2, 1.7])))
    draws = np.asarray(d.sample(jax.random.PRNGKey(1), (5000,)))
    assert draws.shape == (5000, 2)
    assert scipy.stats.kstest((draws[:, 1] - 1.5) / 0.2, scipy.stats.t(3.0).cdf).pvalue > 0.01
