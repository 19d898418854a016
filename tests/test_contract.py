"""The result contract: every read-out on a result of every public fit function either works or raises one
ResultError that names the result's kind and what to use instead.

The results are the suite's shared fits (tests/fits.py, built once per session): read-outs are checked for what they
accept and refuse, and their warnings (extrapolation, short runs) are not what is tested here.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
import xarray as xr

import bayescale as bs
from bayescale.results.contract import READOUTS, RESULT_KINDS, ResultError, require, result_kind
from bayescale.datasets import load_chinchilla
from bayescale.laws.priors import parse_prior

#: The contract, written out independently of bayescale.results.contract: which read-outs each kind serves.
EXPECTED = {
    "law": set(READOUTS),
    "law_batch": {"save"},
    "law_batch_member": {"summary", "predict", "check_reference", "plan", "save"},
    "baseline": {"summary", "predict", "check_reference", "plan", "save"},
    "per_token": {"summary", "loo", "check_coverage", "check_residuals", "check_reference", "save"},
    "shape": {"summary", "loo", "check_coverage", "check_residuals", "check_reference", "save"},
    "critical_batch": {"summary", "loo", "check_coverage", "check_residuals", "check_reference", "save"},
    "loss_steps": {"summary", "check_reference", "save"},
    "schedule_law": {"summary", "loo", "check_coverage", "check_residuals", "check_reference", "save"},
}


#: (fit function, kind of its result): every public fit function of bayescale.
FITS = [("fit", "law"), ("fit_batch", "law_batch"), ("select_fit", "law_batch_member"), ("fit_baseline", "baseline"),
        ("fit_per_token", "per_token"), ("fit_per_token_steps", "law"), ("fit_shape", "shape"),
        ("fit_critical_batch", "critical_batch"), ("fit_loss_steps", "loss_steps"), ("fit_schedule", "schedule_law")]
#: fit function -> the shared fit of tests/fits.py that it made (the suite's recovery tests read the same fits)
SHARED = {"fit": "chinchilla", "fit_batch": "batch", "fit_baseline": "baseline", "fit_per_token": "per_token",
          "fit_per_token_steps": "per_token_steps", "fit_shape": "shape", "fit_critical_batch": "critical_batch",
          "fit_loss_steps": "loss_steps", "fit_schedule": "multi_power"}


@pytest.fixture(scope="module")
def results(shared_fit):
    out = {name: shared_fit(SHARED[name]) for name, _ in FITS if name in SHARED}
    out["select_fit"] = bs.infer.batch.select_fit(out["fit_batch"], 1)
    return out


#: Where predict is asked, per law input.
AT = {"N": 1e9, "D": 2e10, "T": 100.0, "S": 1e4}


def _sources(result: xr.DataTree) -> list[str]:
    return [str(s) for s in result["references"]["source"].values] if "references" in result.children else []


def _invoke(readout: str, result: xr.DataTree, tmp_path):
    """Call the read-out as a user would."""
    calls = {
        "summary": lambda: bs.summary(result),
        "predict": lambda: bs.predict(result, **{n: AT[n] for n in json.loads(result.attrs.get("inputs", '["N", "D"]'))}),
        "plot_ppc": lambda: bs.plot_ppc(result, path=tmp_path / "ppc.png"),
        "loo": lambda: bs.loo(result),
        "check_coverage": lambda: bs.check_coverage(result),
        "check_residuals": lambda: bs.check_residuals(result),
        "check_reference": lambda: bs.check_reference(result, (_sources(result) or ["x"])[0]),
        "plan": lambda: bs.compute_optimal(result, 1e21),
        "report": lambda: bs.write_report(result, tmp_path / "report"),
        "save": lambda: bs.load(bs.save(result, tmp_path / "fit.nc")),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # extrapolation and sampler warnings of the tiny fits
        return calls[readout]()


def _check_works(readout: str, result: xr.DataTree, tmp_path) -> None:
    """The read-out runs and gives a sane value."""
    if readout == "check_reference" and not _sources(result):  # the law publishes nothing: a clear error is right
        with pytest.raises(ValueError, match="no references group"):
            _invoke(readout, result, tmp_path)
        return
    value = _invoke(readout, result, tmp_path)
    if readout == "summary":
        assert len(value) > 0 and value["median"].notna().all()
    elif readout == "predict":
        assert np.isfinite(value["loss"].values).all()
    elif readout == "plot_ppc":
        assert (tmp_path / "ppc.png").stat().st_size > 0
    elif readout == "loo":
        assert np.isfinite(value.elpd)
    elif readout in ("check_coverage", "check_reference"):
        assert 0 <= value <= 1
    elif readout == "check_residuals":
        assert isinstance(value.attrs["passes"], bool) and value["p_value"].between(0, 1).all()
    elif readout == "plan":
        assert np.isfinite(value["N_opt"].values).all()
    elif readout == "report":
        assert (tmp_path / "report" / "report.md").is_file()
    elif readout == "save":
        # the file adds only its content checksum (bayescale.results.io: verified on load); a result that was itself
        # loaded from a file (the shared fits, when another worker built them) carries the older file's checksum
        def without_checksum(attrs):
            return {k: v for k, v in attrs.items() if k != "content_sha256"}

        assert without_checksum(value.attrs) == without_checksum(result.attrs)
        for group in result.children:
            xr.testing.assert_identical(value[group].to_dataset(), result[group].to_dataset())


def test_contract_table_matches_the_expected_one():
    assert {k: set(v.readouts) for k, v in RESULT_KINDS.items()} == EXPECTED


@pytest.mark.parametrize(("fit_name", "kind"), FITS, ids=[f for f, _ in FITS])
def test_every_fit_stamps_its_kind(results, fit_name, kind):
    result = results[fit_name]
    assert result.attrs["result_kind"] == kind
    assert result_kind(result) == kind


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize(("fit_name", "kind"), FITS, ids=[f for f, _ in FITS])
def test_readout_works_or_says_why_not(results, fit_name, kind, readout, tmp_path):
    result = results[fit_name]
    if fit_name == "fit_per_token_steps" and readout == "plan":  # a law of (T, S): nothing to plan over (N, D)
        with pytest.raises(ValueError, match=r"needs a law of exactly \(N, D\).*has \['T', 'S'\]"):
            _invoke(readout, result, tmp_path)
        return
    if readout in EXPECTED[kind]:
        _check_works(readout, result, tmp_path)
        return
    with pytest.raises(ResultError, match=rf"{readout} does not apply to a '{kind}' result \(made by .*\); use "):
        _invoke(readout, result, tmp_path)


#: Fit functions whose result is built by bayescale.infer.fit.build_result (a law or a declared model sampled by NUTS).
BUILT = ["fit", "fit_per_token", "fit_per_token_steps", "fit_shape", "fit_critical_batch", "fit_loss_steps"]


@pytest.mark.parametrize("fit_name", BUILT)
def test_one_builder_one_provenance(results, fit_name):
    # Every NUTS fit of a law or a declared model carries the same provenance: the model's text and its hash, every
    # prior as a prior expression (text that parses, not the repr of a distribution), the data's hash and columns,
    # the full sampler settings, the versions, one result kind and the diagnostics.
    attrs = results[fit_name].attrs
    for key in ("result_kind", "law_id", "law_source", "law_hash", "data_hash", "n_points", "priors",
                "data_statistics", "sampler", "versions", "diagnostics", "converged"):
        assert attrs.get(key) not in (None, ""), key
    assert hashlib.sha256(attrs["law_source"].encode()).hexdigest() == attrs["law_hash"]
    statistics = json.loads(attrs["data_statistics"])
    priors = json.loads(attrs["priors"])
    assert priors and all(isinstance(t, str) for t in priors.values())
    for name, text in priors.items():
        parse_prior(text, statistics).distribution(statistics)
        if attrs["result_kind"] != "law":  # a declared model's text lists every prior (a law file: its own)
            assert f'{name} = "{text}"' in attrs["law_source"], name
    sampler = bs.NUTS.from_attrs(attrs["sampler"])
    assert sampler.num_samples == results[fit_name]["posterior"].sizes["draw"]
    assert json.loads(attrs["sampler"])["rng_key"] is not None


def test_posterior_only_law_fit_names_the_missing_group(results, tmp_path):
    """A law fit without per-point groups (fit(..., pointwise=False)) serves the posterior read-outs and says which
    group the others need."""
    full = results["fit"]
    lean = full.copy()
    for group in ("posterior_predictive", "log_likelihood", "prior_predictive"):
        del lean[group]
    _check_works("summary", lean, tmp_path)
    _check_works("plan", lean, tmp_path)
    for readout, group in (("check_coverage", "posterior_predictive"), ("loo", "log_likelihood"),
                           ("plot_ppc", "posterior_predictive")):
        with pytest.raises(ResultError, match=rf"{readout} needs the result's '{group}' group, which this 'law' "
                                              r"result does not have; refit with bayescale.fit\(\.\.\., pointwise=True\)"):
            _invoke(readout, lean, tmp_path)


def test_old_files_are_recognised_without_result_kind(results):
    """Results written before result_kind existed keep their kind, read from their older attributes."""
    for fit_name, kind in FITS:
        old = results[fit_name].copy()
        del old.attrs["result_kind"]
        assert result_kind(old) == kind, fit_name


def test_not_a_result():
    with pytest.raises(ResultError, match=r"expected a bayescale result \(xarray.DataTree .*\), got DataFrame"):
        bs.summary(load_chinchilla().to_dataframe())
    with pytest.raises(ResultError, match="is not a bayescale result"):
        bs.summary(xr.DataTree())
    with pytest.raises(ResultError, match=r"result_kind 'nope': must be one of \["):
        require(xr.DataTree(xr.Dataset(attrs={"result_kind": "nope"})), "summary")
    with pytest.raises(ValueError, match=r"readout 'plots': must be one of \['summary'"):
        require(xr.DataTree(), "plots")
