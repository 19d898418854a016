"""Sampler trouble warns, is recorded in the result, and raises with strict=True; each trigger has a control.

The fits leave out the per-point groups (``pointwise=False``): the diagnostics read the posterior, the sampler
statistics and the prior draws only, and each per-point group costs a compiled program of its own. The fits use the
suite's standard settings (tests/quick.py)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import pytest

import bayescale as bs

from .conftest import simulate_table
from .quick import QUICK, TINY

TRUTH = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36)


@pytest.fixture(scope="module")
def table():
    return simulate_table("hoffmann2022", TRUTH, sigma=0.01, seed=5)


def test_prior_bound_is_flagged_and_strict_raises(table):
    # E's true value 1.8 is above this prior's upper bound 1.0: the posterior piles up against the bound
    with pytest.warns(bs.SamplingWarning, match="sit on the upper prior bound 1"):
        result = bs.fit("hoffmann2022", table, priors={"E": "Uniform(0, 1.0)"}, sampler=QUICK,
                        pointwise=False)
    assert any("upper prior bound" in w for w in json.loads(result.attrs["warnings"]))
    with pytest.raises(bs.SamplingError, match="upper prior bound") as info:
        bs.fit("hoffmann2022", table, priors={"E": "Uniform(0, 1.0)"}, sampler=QUICK, pointwise=False,
               strict=True)
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
        result = bs.fit(law, table, sampler=QUICK, pointwise=False)
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
    # a posterior centred where the prior is but wider (on the log scale): flagged, and the message says it is wider
    wide = np.exp(np.log(np.median(prior)) + 1.5 * rng.standard_normal((2, 1000)))
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"nu": (("chain", "draw"), wide)}),
                                "prior": xr.Dataset({"nu": (("chain", "draw"), prior[None])})})
    table, messages = diagnose(dt, ("nu",), {"nu": dist.Gamma(2.0, 0.1)})
    assert table["contraction"].item() < 0
    assert any("barely moved" in m and "no narrower than the prior" in m for m in messages), messages


def test_low_ess_is_flagged(table):
    with pytest.warns(bs.SamplingWarning, match="effective sample size"):
        # TINY's 2 x 100 draws cannot reach the target of 100 effective draws per chain for every parameter
        bs.fit("hoffmann2022", table, sampler=TINY, pointwise=False)


def test_bad_settings_raise_before_sampling(table):
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        bs.fit("hoffmann2022", table, num_samples=0)
    with pytest.raises(ValueError, match=r"likelihood 'cauchy': must be one of \['student_t', 'normal'\]"):
        bs.fit("hoffmann2022", table, likelihood="cauchy")
    with pytest.raises(bs.LawError, match="prior given for 'zeta', which is not a parameter"):
        bs.fit("hoffmann2022", table, priors={"zeta": "Normal(0, 1)"})
    with pytest.raises(bs.LawError, match="unknown law 'chinchila'"):
        bs.fit("chinchila", table)


def test_short_of_targets_reads_the_recorded_diagnostics_not_the_warning_text():
    # attrs alone: one parameter missed the ESS target (148 < 100 per chain x 2 chains = 200), the other is on target;
    # the warning text says nothing (and, in the control, names a parameter that is on target): it is not read
    import xarray as xr

    from bayescale.infer.diagnostics import describe_convergence, short_of_targets

    def result(ess_A, rhat_E=1.004, warnings=()):
        rows = [{"parameter": "E", "rhat": rhat_E, "ess_bulk": 800.0, "ess_tail": 700.0},
                {"parameter": "A", "rhat": 1.003, "ess_bulk": ess_A, "ess_tail": 650.0}]
        dt = xr.DataTree()
        dt.attrs.update(converged=1, convergence="[]", warnings=json.dumps(list(warnings)),
                        diagnostics=json.dumps({"divergences": 0, "chains": 2, "parameters": rows}))
        return dt

    assert short_of_targets(result(148.0)) == ["A"]
    assert "but A missed the R-hat (<= 1.01)" in describe_convergence(result(148.0))
    assert short_of_targets(result(201.0, warnings=["E: R-hat 1.050 > 1.01"])) == []
    assert describe_convergence(result(201.0)) == "converged"
    assert short_of_targets(result(201.0, rhat_E=1.02)) == ["E"]


def test_diagnose_warnings_and_short_of_targets_name_the_same_parameters():
    # One rule for both: a posterior with one stuck chain for "b" (R-hat >> 1.01) and an autocorrelated "c" (low
    # ESS), beside a well-mixed "a"; diagnose's R-hat/ESS warnings and short_of_targets of what record() stores agree.
    # A vector parameter's worst R-hat counts too. Control: "a" is named by neither.
    import numpy as np
    import numpyro.distributions as dist
    import xarray as xr

    from bayescale.infer.diagnostics import diagnose, record, short_of_targets

    rng = np.random.default_rng(1)
    # 2 x 1000 independent draws: R-hat within ~0.002 of 1 and ESS near 2000, far inside the targets (1.01, 200)
    a = rng.standard_normal((2, 1000))
    b = rng.standard_normal((2, 1000)) + np.array([[0.0], [3.0]])  # chains 3 sds apart
    c = np.cumsum(rng.standard_normal((2, 1000)), axis=1) * 0.05  # random walk: ESS of a few draws
    v = np.stack([a, b], axis=-1)
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"a": (("chain", "draw"), a), "b": (("chain", "draw"), b), "c": (("chain", "draw"), c),
         "v": (("chain", "draw", "cell"), v)})})
    normal = dist.Normal(0.0, 10.0)
    table, messages = diagnose(dt, ("a", "b", "c"), {"a": normal, "b": normal, "c": normal}, vector_names=["v"])
    warned = [m.split(":")[0] for m in messages if "R-hat" in m or "effective sample size" in m]
    with pytest.warns(bs.SamplingWarning):
        record(dt, table, messages, strict=False)
    assert short_of_targets(dt) == list(dict.fromkeys(warned)) == ["b", "c", "v"]
