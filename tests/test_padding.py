"""Fits run on a padded number of points (bayescale.infer.fit.padded_size): the padding is masked out of the
likelihood, cut from every per-point group, and tables of nearby sizes share compiled programs."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.stats
from numpyro.infer.util import potential_energy

import bayescale as bs
import bayescale.infer.fit as F
from bayescale.infer.noise import Noise
from tests.conftest import simulate_table

TRUTH = dict(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.32)
TINY = dict(num_chains=1, num_warmup=100, num_samples=100)


def test_padded_sizes():
    iid = Noise.parse("iid")
    assert [F.padded_size(n, iid) for n in (1, 8, 9, 12, 13, 30, 36, 48, 49, 240, 400, 2048)] == [
        8, 8, 12, 12, 16, 32, 48, 48, 64, 256, 512, 2048]
    # large tables and noise with per-run index arrays keep their size
    assert F.padded_size(F.PAD_MAX_POINTS + 1, iid) == F.PAD_MAX_POINTS + 1
    assert F.padded_size(30, Noise.parse("run")) == 30 and not F.pads(30, Noise.parse("run+ou"))


def _model_and_args(monkeypatch, table, pad_max):
    """The model, its arguments and observed loss that ``fit`` hands the sampler (the sampler itself not run)."""
    monkeypatch.setattr(F, "PAD_MAX_POINTS", pad_max)
    seen = {}

    def capture(model, *args, rng_key, **kwargs):
        seen.update(model=model, args=args, loss=kwargs["loss"])
        raise StopIteration

    monkeypatch.setattr(F, "run_nuts", capture)
    with pytest.raises(StopIteration):
        bs.fit("hoffmann2022", table, sampler=bs.NUTS(init="median", **TINY), progress_bar=False)
    return seen


def test_padding_leaves_the_log_density_unchanged(monkeypatch):
    """The same 30 points as 32 (two masked copies of the first point) and unpadded: the potential (minus log
    posterior) agrees to rounding at several parameter values."""
    table = simulate_table("hoffmann2022", TRUTH, n_sizes=5, seed=2)
    padded = _model_and_args(monkeypatch, table, F.PAD_MAX_POINTS)
    exact = _model_and_args(monkeypatch, table, 0)
    assert padded["loss"].shape == (32,) and exact["loss"].shape == (30,)
    assert "mask" in padded["args"][1] and "mask" not in exact["args"][1]
    for i in range(3):
        z = {k: v[0] for k, v in F.median_starts(exact["model"], exact["args"], {"loss": exact["loss"]},
                                                   rng_key=jax.random.PRNGKey(i), num_chains=1).items()}
        values = [float(potential_energy(m["model"], m["args"], {"loss": m["loss"]}, z)) for m in (padded, exact)]
        assert np.isfinite(values[0])
        np.testing.assert_allclose(values[0], values[1], rtol=1e-12, atol=1e-9)


def test_padded_fit_keeps_the_real_points_and_their_log_likelihood():
    """A 30-point table fitted on 32 points: every per-point group has the 30 real points, and the pointwise
    log-likelihood is the Student-t density of each real point's log loss (recomputed here with scipy) over the
    loss (the Jacobian of the log)."""
    table = simulate_table("hoffmann2022", TRUTH, n_sizes=5, seed=2)
    r = bs.fit("hoffmann2022", table, sampler=bs.NUTS(**TINY), progress_bar=False, rng_key=1)
    for group in ("posterior_predictive", "log_likelihood", "prior_predictive", "observed_data"):
        assert r[group].sizes["point"] == 30, group
    post = {k: r.posterior[k].values.reshape(-1, 1) for k in ("E", "A", "B", "alpha", "beta", "sigma", "nu")}
    mu = np.log(post["E"] + post["A"] / table["N"].values ** post["alpha"] + post["B"] / table["D"].values ** post["beta"])
    y = table["loss"].values
    want = scipy.stats.t.logpdf(np.log(y) - mu, post["nu"], scale=post["sigma"]) - np.log(y)
    np.testing.assert_allclose(r.log_likelihood["loss"].values.reshape(-1, 30), want, rtol=1e-9)


def test_tables_of_one_bucket_share_the_compiled_programs(monkeypatch):
    """A 36-point and a 42-point table (both run on 48 points) give the model's potential the same compiled program
    (the same lowered text; so the sampler, optimiser and predictive programs are shared through JAX's persistent
    cache, docs/performance.md); without padding they differ."""

    def lowered(table, pad_max):
        m = _model_and_args(monkeypatch, table, pad_max)
        z = {k: v[0] for k, v in F.median_starts(m["model"], m["args"], {"loss": m["loss"]},
                                                   rng_key=jax.random.PRNGKey(0), num_chains=1).items()}
        fn = jax.jit(lambda args, loss, z: potential_energy(m["model"], args, {"loss": loss}, z))
        return fn.lower(m["args"], m["loss"], z).as_text()

    small, large = (simulate_table("hoffmann2022", TRUTH, n_sizes=n, seed=n) for n in (6, 7))
    assert lowered(small, F.PAD_MAX_POINTS) == lowered(large, F.PAD_MAX_POINTS)
    assert lowered(small, 0) != lowered(large, 0)
