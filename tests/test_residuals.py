"""check_residuals: systematic misses along an input, flagged in the CLI and the report (bayescale.results.checks)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import bayescale as bs
from bayescale.results.contract import ResultError


def _with_trend(result: xr.DataTree, slope: float) -> xr.DataTree:
    """A copy of ``result`` whose observed losses are multiplied by exp(slope · (log10 N − its mean)): misses that
    trend along N, of about ±slope/2 nats at the ends of the 2.5 decades of Chinchilla's sizes."""
    out = result.copy(deep=True)
    log_n = np.log10(out["constant_data"]["N"].values)
    obs = out["observed_data"].to_dataset()
    obs["loss"] = obs["loss"] * np.exp(slope * (log_n - log_n.mean()))
    out["observed_data"] = xr.DataTree(obs)
    return out


def test_the_golden_fit_has_no_trend(chinchilla_fit):
    table = bs.check_residuals(chinchilla_fit)
    assert list(table["covariate"]) == ["log10 N", "log10 D", "log10 D/N", "log10 C"]
    assert table.attrs["passes"] and table.attrs["unit"] == "point" and (table["n"] == 240).all()
    assert table.attrs["threshold"] == pytest.approx(0.01 / 4) and table.attrs["message"] == ""
    # Besiroglu et al.'s refit leaves no trend: every |rho| < 0.1 (measured: 0.02-0.05)
    assert (table["rho"].abs() < 0.1).all()


@pytest.mark.parametrize("slope, side", [(0.06, "above"), (-0.06, "below")])
def test_a_planted_trend_along_n_is_flagged(chinchilla_fit, slope, side):
    # the fit's sigma is about 0.01 nats: a trend of +-0.03 at the ends moves the PIT ranks far along N
    table = bs.check_residuals(_with_trend(chinchilla_fit, slope)).set_index("covariate")
    assert not table.attrs["passes"] and table.loc["log10 N", "flagged"]
    assert np.sign(table.loc["log10 N", "rho"]) == np.sign(slope) and abs(table.loc["log10 N", "rho"]) > 0.5
    assert f"log10 N (Spearman rho {table.loc['log10 N', 'rho']:+.2f}" in table.attrs["message"]
    assert f"observed {side} the prediction where it is large" in table.attrs["message"]


def test_points_of_one_run_are_tested_as_one(chinchilla_fit):
    grouped = chinchilla_fit.copy(deep=True)
    const = grouped["constant_data"].to_dataset()
    sizes = const["N"].values
    const = const.assign_coords(run=("point", [f"N{np.round(np.log10(n), 1)}" for n in sizes]))
    grouped["constant_data"] = xr.DataTree(const)
    table = bs.check_residuals(grouped)
    n_runs = np.unique(const["run"].values).size
    assert table.attrs["unit"] == "run" and (table["n"] == n_runs).all() and n_runs < 240


def test_errors(chinchilla_fit, shared_fit):
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got 0"):
        bs.check_residuals(chinchilla_fit, alpha=0)
    with pytest.raises(ValueError, match=r"min_rho must be in \[0, 1\), got 1.5"):
        bs.check_residuals(chinchilla_fit, min_rho=1.5)
    with pytest.raises(ResultError, match=r"check_residuals does not apply to a 'baseline' result.*predictive"):
        bs.check_residuals(shared_fit("baseline"))
    bare = chinchilla_fit.copy(deep=True)
    del bare["posterior_predictive"]
    with pytest.raises(ResultError, match=r"check_residuals needs the result's 'posterior_predictive' group"):
        bs.check_residuals(bare)


def test_plan_and_report_warn_of_a_trend(chinchilla_fit, tmp_path, capsys):
    from bayescale.cli import main

    trended = _with_trend(chinchilla_fit, 0.06)
    path = bs.save(trended, tmp_path / "trend.nc")
    assert main(["plan", str(path), "--compute", "1e22"]) == 0
    err = capsys.readouterr().err
    assert "warning: the fit misses systematically along log10 N" in err
    bs.write_report(trended, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "> **WARNING: Residual structure: the fit misses systematically along log10 N" in md
    assert 'id="residual-warning"' in (tmp_path / "report" / "report.html").read_text()
