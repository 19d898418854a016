"""Shape sensitivity (Kaplan et al. 2020, Fig. 5): simulator recovery, the compute equivalent of a loss penalty
(Kaplan's "1% loss ↔ 22% compute"), the Gemstones reader, errors, and the example run with tiny settings."""

from __future__ import annotations

from pathlib import Path

import arviz_base as azb
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

import bayescale as bs
from bayescale.analyses.kaplan import shape as sh
from bayescale.datasets import gemstones_dir
from tests import fits

GEMSTONES = gemstones_dir()  # bundled (MIT); the full folder in ../shared/data/gemstones has the same layout


@pytest.fixture(scope="module")
def recovery(shared_fit):
    return fits.data("shape"), shared_fit("shape")  # tests/fits.py


def _fake(E, A, alpha, B, beta, N=1e9, D=2e10):
    """A result holding fixed constants (one draw), to test the compute read-outs against closed forms."""
    dt = azb.from_dict({"posterior": {k: np.array([[v]]) for k, v in dict(E=E, A=A, alpha=alpha, B=B, beta=beta).items()}})
    dt.attrs.update(law_id="kaplan2020_shape", shape='["aspect_ratio"]')
    import xarray as xr

    dt["constant_data"] = xr.DataTree(xr.Dataset({"N": ("point", [N]), "D": ("point", [D])}))
    return dt


def test_shape_recovers_best_shape_curvature_and_baseline(recovery):
    data, result = recovery
    truth = data.attrs["truth"]
    opt, kappa = truth["shape"]["aspect_ratio"]
    post = result["posterior"]
    # 99% intervals: seven quantities are checked at once (a calibrated 90% interval would miss one ~half the time)
    checks = {"opt_aspect_ratio": opt, "kappa_aspect_ratio": kappa, "alpha": truth["alpha"], "beta": truth["beta"],
              "E": truth["E"], "A": truth["A"], "B": truth["B"]}
    for name, value in checks.items():
        lo, hi = np.quantile(post[name].values.ravel(), [0.005, 0.995])
        assert lo <= value <= hi, (name, value, lo, hi)
    # informative: the best shape within a factor 1.5 (its prior spans x/÷12 at 90%), kappa within a factor 2
    lo, hi = np.quantile(post["opt_aspect_ratio"].values.ravel(), [0.005, 0.995])
    assert hi / lo < 1.5
    lo, hi = np.quantile(post["kappa_aspect_ratio"].values.ravel(), [0.005, 0.995])
    assert hi / lo < 2
    summary = sh.shape_summary(result)
    half = np.sqrt(0.01 / kappa)  # the true flat region: opt ·/÷ exp(sqrt(0.01/kappa)) = 12.2 ... 205
    for row, edge in (("flat_low_aspect_ratio", opt * np.exp(-half)), ("flat_high_aspect_ratio", opt * np.exp(half))):
        assert summary.loc[row, "q05"] * 0.9 <= edge <= summary.loc[row, "q95"] * 1.1, (row, edge)
    prob = sh.flat_region_probability(result, [1.0, opt, 1e4])
    assert prob.values[0] < 0.05 and prob.values[1] > 0.95 and prob.values[2] < 0.05


def test_compute_equivalent_reproduces_kaplans_22_percent():
    # no irreducible term and alpha·beta/(alpha+beta) = 0.05: L* ∝ C^-0.05 exactly, Kaplan's case
    alpha = beta = 0.1
    cost = sh.compute_equivalent(_fake(0.0, 400.0, alpha, 400.0, beta), penalty=0.01)
    assert cost["exponent"][0] == pytest.approx(0.05)
    assert cost["compute_factor"][0] == pytest.approx(1.01**20, rel=1e-9)
    assert cost["compute_factor"][0] - 1 == pytest.approx(0.22, abs=0.005)  # "22% additional compute" (Sec. 3.1)


def test_compute_equivalent_matches_a_numerical_frontier():
    E, A, alpha, B, beta = 2.0, 226.0, 0.30, 2.7e5, 0.58
    fake = _fake(E, A, alpha, B, beta)
    C = 6 * 1e9 * 2e10

    def frontier(c):  # min over N of L(N, c/6N), by a bounded 1-D search in ln N
        res = minimize_scalar(lambda x: np.log(E + A * np.exp(-alpha * x) + B * (c / 6 / np.exp(x)) ** -beta),
                              bounds=(np.log(1e6), np.log(c / 6 / 1e6)), method="bounded", options={"xatol": 1e-10})
        return float(np.exp(res.fun))

    cost = sh.compute_equivalent(fake, penalty=0.02, compute=C)
    assert cost["loss"][0] == pytest.approx(frontier(C), rel=1e-6)
    # the penalised shape at C' = factor·C reaches the best shape's loss at C
    assert 1.02 * frontier(cost["compute_factor"][0] * C) == pytest.approx(frontier(C), rel=1e-6)
    # with E > 0 the local exponent is below alpha·beta/(alpha+beta) and the approximation is close for small p
    assert cost["exponent"][0] < alpha * beta / (alpha + beta)
    assert cost["approximate_factor"][0] == pytest.approx(cost["compute_factor"][0], rel=0.02)
    # a penalty larger than the whole reducible loss can never be bought back
    assert np.isinf(sh.compute_equivalent(fake, penalty=0.5, compute=C)["compute_factor"][0])


def test_read_gemstones_counts_parameters_and_shapes():
    hot = sh.read_gemstones(GEMSTONES, "hot")
    first = hot.groupby("run").first()
    assert len(first) == 22  # CARD.md: 22 shapes
    assert np.allclose(first["aspect_ratio"], first["width"] / first["depth"])
    # non-embedding parameters: depth·(≈15·width² + 2·width) for every shape (width 384: 14.67·width², CARD check)
    per_layer = first["N"] / first["depth"] / first["width"] ** 2
    assert np.all((per_layer > 14.6) & (per_layer < 15.02))
    total = sh.read_gemstones(GEMSTONES, "hot", parameters="total").groupby("run").first()
    assert np.allclose(total["N"] - first["N"], 2 * 50304 * first["width"] + first["width"])
    assert sh.read_gemstones(GEMSTONES)["run"].nunique() == 20  # cool_end: 2 shapes have no cooldowns


def test_shape_errors(recovery):
    data, result = recovery
    with pytest.raises(ValueError, match=r"shape must name one or more of \['aspect_ratio', 'ffn_ratio', 'head_dim'\]"):
        sh.fit_shape(data, shape=("width",))
    with pytest.raises(bs.DataError, match=r"lack column\(s\) \['ffn_ratio'\]"):
        sh.fit_shape(data, shape=("aspect_ratio", "ffn_ratio"))
    bad = data.copy()
    bad.loc[4, "D"] = np.nan
    with pytest.raises(bs.DataError, match="column 'D', row 4: expected a finite number > 0"):
        sh.fit_shape(bad)
    bad = data.copy()
    bad.loc[0, "aspect_ratio"] = 7.0
    with pytest.raises(bs.DataError, match="column 'aspect_ratio': run .* has several values"):
        sh.fit_shape(bad)
    few = data[data["aspect_ratio"] < 20]
    with pytest.raises(bs.DataError, match="at least 3 distinct shapes over runs, got 2"):
        sh.fit_shape(few)
    with pytest.raises(ValueError, match=r"parameters must be one of \['non_embedding', 'total'\]"):
        sh.read_gemstones(GEMSTONES, parameters="all")
    with pytest.raises(FileNotFoundError, match="no Gemstones table 'nope'"):
        sh.read_gemstones(GEMSTONES, "nope")
    with pytest.raises(ValueError, match=r"variable must be one of \['aspect_ratio'\]"):
        sh.flat_region_probability(result, [1.0], "head_dim")
    with pytest.raises(ValueError, match=r"tolerance must be a relative loss increase in \(0, 1\)"):
        sh.shape_summary(result, tolerance=5)
    with pytest.raises(ValueError, match="penalty must be a finite number > 0"):
        sh.compute_equivalent(result, penalty=-0.01)


def test_example_gemstones_shape(tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "gemstones_shape.py"
    spec = importlib.util.spec_from_file_location("gemstones_shape", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.warns(bs.SamplingWarning):  # 1 chain x 100 draws: ESS warnings are expected at tiny settings
        figure = module.main(["--out", str(tmp_path), "--quick", "--data", str(GEMSTONES)])
    assert figure.is_file() and figure.name == "shape_gemstones.png" and figure.stat().st_size > 20_000
    assert (tmp_path / "shape_summary.csv").is_file()
