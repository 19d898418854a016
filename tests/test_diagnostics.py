"""Sampler trouble warns, is recorded in the result, and raises with strict=True; each trigger has a control.

The fits leave out the per-point groups (``pointwise=False``): the diagnostics read the posterior, the sampler
statistics and the prior draws only, and each per-point group costs a compiled program of its own."""

from __future__ import annotations

import json

import jax.numpy as jnp
import pytest

import bayescale as bs

from .conftest import simulate_table

TRUTH = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36)


@pytest.fixture(scope="module")
def table():
    return simulate_table("hoffmann2022", TRUTH, sigma=0.01, seed=5)


def test_prior_bound_is_flagged_and_strict_raises(table):
    # E's true value 1.8 is above this prior's upper bound 1.0: the posterior piles up against the bound
    with pytest.warns(bs.SamplingWarning, match="sit on the upper prior bound 1"):
        result = bs.fit("hoffmann2022", table, priors={"E": "Uniform(0, 1.0)"}, num_chains=2, num_warmup=300, num_samples=300,
                           pointwise=False)
    assert any("upper prior bound" in w for w in json.loads(result.attrs["warnings"]))
    with pytest.raises(bs.SamplingError, match="upper prior bound") as info:
        bs.fit("hoffmann2022", table, priors={"E": "Uniform(0, 1.0)"}, num_chains=2, num_warmup=300, num_samples=300,
               pointwise=False, strict=True)
    assert info.value.result is not None  # the draws are not lost


def test_uninformed_parameter_is_flagged(table):
    law = bs.Law.from_function(
        lambda p, N, D: p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"] + 0.0 * p["gamma"],
        id="chinchilla_plus_unused",
        inputs=["N", "D"],
        priors={"E": "Uniform(0, min_loss)", "A": "LogNormal(6, 2.5)", "B": "LogNormal(6, 2.5)",
                "alpha": "LogNormal(log(0.3), 0.6)", "beta": "LogNormal(log(0.3), 0.6)", "gamma": "Normal(0, 1)"},
    )
    with pytest.warns(bs.SamplingWarning, match="gamma: posterior barely moved from the prior"):
        result = bs.fit(law, table, num_chains=2, num_warmup=300, num_samples=300, pointwise=False)
    # control: only the unused parameter is flagged as uninformed
    flagged = [w.split(":")[0] for w in json.loads(result.attrs["warnings"]) if "barely moved" in w]
    assert flagged == ["gamma"]
    with pytest.raises(Exception, match="stores no law file"):
        bs.predict(result, N=1e9, D=1e10)
    assert bs.predict(result, law=law, N=1e9, D=1e10)["loss"].shape[-1] == 1


def test_a_posterior_that_moved_is_not_called_uninformed():
    # nu-like parameter under a Gamma(2, 0.1) prior (median ~17): a posterior pressed towards small values (median
    # 0.85, far below the prior's 10% quantile ~5.3) is wider than the prior on the log scale NUTS samples in, so its
    # contraction is negative, yet the data moved it: no "barely moved" warning. Control: a posterior that is the
    # prior is flagged.
    import numpy as np
    import numpyro.distributions as dist
    import xarray as xr

    from bayescale.infer.diagnostics import diagnose

    rng = np.random.default_rng(0)
    prior = rng.gamma(2.0, 10.0, 4000)
    moved = np.exp(np.log(0.85) + 1.5 * rng.standard_normal((2, 1000)))
    unmoved = rng.gamma(2.0, 10.0, (2, 1000))
    for draws, flagged in ((moved, False), (unmoved, True)):
        dt = xr.DataTree.from_dict({
            "posterior": xr.Dataset({"nu": (("chain", "draw"), draws)}),
            "prior": xr.Dataset({"nu": (("chain", "draw"), prior[None])}),
        })
        table, messages = diagnose(dt, ("nu",), {"nu": dist.Gamma(2.0, 0.1)})
        if not flagged:
            assert table["contraction"].item() < 0  # the width alone would have flagged it
        assert any("barely moved" in m for m in messages) is flagged, messages


def test_low_ess_is_flagged(table):
    with pytest.warns(bs.SamplingWarning, match="effective sample size"):
        bs.fit("hoffmann2022", table, num_chains=2, num_warmup=100, num_samples=30, pointwise=False)


def test_bad_settings_raise_before_sampling(table):
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        bs.fit("hoffmann2022", table, num_samples=0)
    with pytest.raises(ValueError, match=r"likelihood 'cauchy': must be one of \['student_t', 'normal'\]"):
        bs.fit("hoffmann2022", table, likelihood="cauchy")
    with pytest.raises(bs.LawError, match="prior given for 'zeta', which is not a parameter"):
        bs.fit("hoffmann2022", table, priors={"zeta": "Normal(0, 1)"})
    with pytest.raises(bs.LawError, match="unknown law 'chinchila'"):
        bs.fit("chinchila", table)
