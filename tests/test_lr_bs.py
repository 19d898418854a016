"""Step Law (learning rate and batch size) and the data-constrained law: law files, data preparation, the optimum
read from a fit, parameter recovery from simulated data, and the example scripts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescale as bs
from bayescale.analyses import steplaw as lr_bs
from bayescale.datasets.datablations import datablations_table, load_datablations
from bayescale.laws.catalogue import LawError, parse_law_text

ROOT = Path(__file__).resolve().parents[1]
#: The Step Law CSV has no licence, so it is not bundled: the tests that read it are marked slow (`make test-slow`) and
#: look for the project's shared data next to the checkout, then at /work/shared (BAYESCALE_SHARED_DATA overrides).
_SHARED = [Path(p) for p in (os.environ.get("BAYESCALE_SHARED_DATA", ""),) if p] + [ROOT.parent / "shared" / "data",
                                                                                Path("/work/shared/data")]
STEPLAW_CSV = next((d / "steplaw_lr_bs" / "data" / "dense_lr_bs_loss.csv" for d in _SHARED
                    if (d / "steplaw_lr_bs" / "data" / "dense_lr_bs_loss.csv").is_file()),
                   _SHARED[-1] / "steplaw_lr_bs" / "data" / "dense_lr_bs_loss.csv")

#: Truth for the Step Law recovery: near the real-data fit (docs/lr_batch_data.md).
STEP_TRUTH = dict(E=1.55, A=350.0, alpha=0.34, B=210.0, beta=0.27, c_lr=0.4, a_N=-0.59, a_D=0.26, c_bs=0.3, d_bs=0.59,
                  k_lr_low=0.004, k_lr_high=0.01, k_bs=0.006, rho=-0.4)
#: Muennighoff et al. 2023, datablations README (log A, log B, log E printed there).
MUENNIGHOFF = dict(E=np.exp(0.6254804), A=np.exp(6.255414), B=np.exp(7.3049974), alpha=0.3526596, beta=0.3526596,
                   R_D_star=15.387756, R_N_star=5.309743)


# ---------------------------------------------------------------------------------------------------------
# Law files
# ---------------------------------------------------------------------------------------------------------
def test_muennighoff2023_reproduces_the_authors_reference_predictions():
    """The datablations README prints L(6.34e9, 242e9, U=25e9) = 2.2256440889984477 and L(8.67e9, 178e9, 25e9) =
    2.2269634075087867 (Figure 1, right); the law file must give the same digits."""
    law = bs.load_law("muennighoff2023")
    got = law.predict(MUENNIGHOFF, N=np.array([6.34e9, 8.67e9]), D=np.array([242e9, 178e9]), U_D=np.array([25e9, 25e9]))
    np.testing.assert_allclose(np.asarray(got), [2.2256440889984477, 2.2269634075087867], rtol=1e-12)
    # one epoch and N below U_N: Chinchilla's form
    one = law.predict(MUENNIGHOFF, N=1e8, D=1e10, U_D=1e10)
    p = MUENNIGHOFF
    assert float(one) == pytest.approx(p["E"] + p["A"] / 1e8 ** p["alpha"] + p["B"] / 1e10 ** p["beta"], rel=1e-12)


def test_steplaw2025_optimum_is_the_bowl_minimum():
    """At fixed (N, D) the law's minimum over (lr, batch size) sits at (eta_opt, B_opt) for any tilt |rho| < 1."""
    law = bs.load_law("steplaw2025")
    N, D = 4e8, 2e10
    eta = STEP_TRUTH["c_lr"] * N ** STEP_TRUTH["a_N"] * D ** STEP_TRUTH["a_D"]
    bopt = STEP_TRUTH["c_bs"] * D ** STEP_TRUTH["d_bs"]
    lr, b = np.meshgrid(eta * np.geomspace(0.2, 5, 41), bopt * np.geomspace(0.2, 5, 41))
    for rho in (-0.9, 0.0, 0.9):
        loss = np.asarray(law.predict(STEP_TRUTH | {"rho": rho}, N=N, D=D, lr=lr.ravel(), batch_size=b.ravel()))
        i = int(np.argmin(loss))
        assert lr.ravel()[i] == pytest.approx(eta, rel=1e-9) and b.ravel()[i] == pytest.approx(bopt, rel=1e-9)
    # asymmetric: a factor 2 above the optimal lr costs more than a factor 2 below
    hi, lo = (float(law.predict(STEP_TRUTH, N=N, D=D, lr=eta * f, batch_size=bopt)) for f in (2.0, 0.5))
    assert hi / lo == pytest.approx(np.exp((0.01 - 0.004) * np.log(2) ** 2), rel=1e-12)


_LAW = """
id = "t"
formula = "E + A / N_eff**alpha"
[definitions]
{defs}
[inputs.N]
[parameters.E]
prior = "Uniform(0, 1)"
[parameters.A]
prior = "LogNormal(0, 1)"
[parameters.alpha]
prior = "LogNormal(0, 1)"
"""


def test_definitions_are_substituted_in_order():
    law = parse_law_text(_LAW.format(defs='half = "N / 2"\nN_eff = "half + 1"'))
    got = float(law.predict(dict(E=0.5, A=3.0, alpha=0.5), N=8.0))
    assert got == pytest.approx(0.5 + 3.0 / 5.0**0.5, rel=1e-12)


@pytest.mark.parametrize(
    ("defs", "match"),
    [
        ('N_eff = "N + foo"', r"definition 'N_eff': .*unknown symbols \['foo'\]"),
        ('N_eff = "later + 1"\nlater = "N"', r"definition 'N_eff': .*unknown symbols \['later'\]"),  # order matters
        ('A = "N"\nN_eff = "N"', r"definition 'A' is also an input or a parameter"),
        ('other = "N"', r"unknown symbols \['N_eff'\]"),  # the formula names an undefined symbol
    ],
)
def test_definition_errors(defs, match):
    with pytest.raises(LawError, match=match):
        parse_law_text(_LAW.format(defs=defs))


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------
def _grid_table() -> pd.DataFrame:
    rows = []
    for n, d, off in [(2e8, 4e9, 0.0), (5e8, 1e10, 0.1)]:
        for i, lr in enumerate([1e-3, 2e-3, 4e-3]):
            for j, bsz in enumerate([64, 128, 256]):
                loss = 2.5 + off + 0.01 * (i - 1) ** 2 + 0.02 * (j - 1) ** 2
                rows.append(dict(N=n, D=d, lr=lr, bs=bsz, loss=loss, **{"smooth loss": loss}))
    rows.append(dict(N=2e8, D=4e9, lr=2e-2, bs=64, loss=9.0, **{"smooth loss": 9.0}))  # diverged
    return pd.DataFrame(rows)


def test_steplaw_table_units_window_and_divergence():
    t = lr_bs.steplaw_table(_grid_table(), window=0.005)
    # 2.5 * 1.005 = 2.5125 keeps the best run and the 4 runs 0.01 away in lr; not the 0.02 ones (batch) nor 9.0
    assert len(t) == 2 * 3
    assert set(t["batch_size"] / t["bs"]) == {2048.0}  # tokens = sequences x 2048
    assert t["run"].nunique() == 2 and t["loss"].max() < 4
    assert "1 with smooth loss >= 4 dropped" in t.attrs["selection"]
    assert len(lr_bs.steplaw_table(_grid_table(), window=None)) == 18


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(data=pd.DataFrame({"N": [1.0]})), bs.DataError, r"lacks columns \['D', 'lr', 'bs', 'smooth loss'\]"),
        (dict(data="/nonexistent/steplaw.csv"), bs.DataError, r"does not exist"),
        (dict(data=[1, 2]), bs.DataError, r"must be a path or a DataFrame, got list"),
        (dict(data=None, window=-0.1), ValueError, r"window must be a positive number or None"),
        (dict(data=None, seq_len=0), ValueError, r"seq_len must be a positive integer"),
    ],
)
def test_steplaw_table_rejects(kwargs, error, match):
    data = kwargs.pop("data")
    with pytest.raises(error, match=match):
        lr_bs.steplaw_table(_grid_table() if data is None else data, **kwargs)


@pytest.mark.slow
@pytest.mark.skipif(not STEPLAW_CSV.is_file(), reason="the Step Law CSV is not bundled (no licence); shared data only")
def test_load_steplaw_real_grid():
    ds = lr_bs.load_steplaw(STEPLAW_CSV)
    assert ds.sizes["point"] == 1225 and np.unique(ds["run"].values).size == 17  # docs/lr_batch_data.md
    assert float(ds["batch_size"].min()) == 24 * 2048  # the 16-sequence runs are all outside the window


def test_datablations_bundle():
    every = datablations_table(max_epochs=None, max_loss=None)
    assert len(every) == 229
    assert (every["U_D"] <= every["D"] * (1 + 1e-9)).all()
    fixed = every.set_index("name").loc["2b855b1b25"]  # the corrected row (module docstring)
    assert fixed["U_D"] == 1.25e9
    ds = load_datablations()
    assert ds.sizes["point"] == 156 and float(ds["loss"].max()) <= 6 and {"N", "D", "U_D"} <= set(ds.data_vars)


# ---------------------------------------------------------------------------------------------------------
# Recovery from simulated data (module-scoped fits, tiny NUTS settings)
# ---------------------------------------------------------------------------------------------------------
def _steplaw_simulated(rng_seed: int = 0, sigma: float = 0.002) -> pd.DataFrame:
    """3 x 3 (N, D) cells, 5 learning rates (x sqrt 2) x 4 batch sizes (x 2) around the true optimum, as the real grid."""
    law = bs.load_law("steplaw2025")
    rng = np.random.default_rng(rng_seed)
    rows = []
    for n in (2e8, 5e8, 1.2e9):
        for d in (5e9, 2e10, 8e10):
            eta = STEP_TRUTH["c_lr"] * n ** STEP_TRUTH["a_N"] * d ** STEP_TRUTH["a_D"]
            bopt = STEP_TRUTH["c_bs"] * d ** STEP_TRUTH["d_bs"]
            # grid points offset from the optimum by a random shift, as a real grid does not hit it exactly
            shift_lr, shift_b = rng.uniform(-0.35, 0.35, size=2)
            for lr in eta * np.exp(shift_lr) * 2.0 ** np.arange(-1.0, 1.1, 0.5):
                for b in bopt * np.exp(shift_b) * 2.0 ** np.arange(-1.5, 2.0):
                    rows.append(dict(N=n, D=d, lr=lr, batch_size=b, run=f"{n:g}/{d:g}"))
    t = pd.DataFrame(rows)
    mu = np.asarray(law.predict(STEP_TRUTH, **{k: t[k].to_numpy() for k in ("N", "D", "lr", "batch_size")}))
    t["loss"] = mu * np.exp(rng.normal(0, sigma, len(t)))
    return t


@pytest.fixture(scope="module")
def steplaw_fit():
    ds = bs.load_runs(_steplaw_simulated(), inputs=("N", "D", "lr", "batch_size"))
    # chains from the prior median: the multi-start MAP search, not what these tests check, took 27 of the fit's 64 s
    # (measured 2026-11-30 on the shared machine; 121 leapfrog steps per draw either way)
    return bs.fit("steplaw2025", ds, noise="iid", likelihood="normal", num_chains=2, num_warmup=200, num_samples=200,
                  num_prior_samples=50, rng_key=3, init="median")


# Widths: at sigma = 0.002 and 180 runs the optimum exponents are pinned to a few hundredths; the 90% interval
# must be narrower than these bounds (about a tenth of the prior's 90% width, 1.6) to count as informative.
STEP_WIDTH = {"a_N": 0.15, "a_D": 0.15, "d_bs": 0.15, "k_lr_low": 0.004, "k_lr_high": 0.01, "rho": 0.5}


@pytest.mark.parametrize("name", ["a_N", "a_D", "d_bs", "c_lr", "c_bs", "k_lr_low", "k_lr_high", "k_bs", "rho"])
def test_steplaw_recovery(steplaw_fit, name):
    draws = steplaw_fit["posterior"][name].values.ravel()
    lo, hi = np.quantile(draws, [0.005, 0.995])  # 99%: 9 parameters are checked, so 90% would fail ~1 in 2 runs
    assert lo <= STEP_TRUTH[name] <= hi, (name, lo, hi)
    lo90, hi90 = np.quantile(draws, [0.05, 0.95])
    if name in STEP_WIDTH:
        assert hi90 - lo90 < STEP_WIDTH[name], (name, lo90, hi90)
    elif name.startswith("c_"):
        assert hi90 / lo90 < 20, (name, lo90, hi90)  # intercepts at log N ~ 20 trade off with the exponents


def test_optimal_lr_batch_from_fit(steplaw_fit):
    N, D = np.array([3e8, 1e9]), np.array([1e10, 5e10])
    opt = lr_bs.optimal_lr_batch(steplaw_fit, N, D)
    assert opt["eta_opt"].dims == ("chain", "draw", "point") and opt.sizes["point"] == 2
    true_eta = STEP_TRUTH["c_lr"] * N ** STEP_TRUTH["a_N"] * D ** STEP_TRUTH["a_D"]
    true_b = STEP_TRUTH["c_bs"] * D ** STEP_TRUTH["d_bs"]
    q = opt.quantile([0.005, 0.995], dim=("chain", "draw"))
    assert (q["eta_opt"][0] <= true_eta).all() and (true_eta <= q["eta_opt"][1]).all()
    assert (q["B_opt"][0] <= true_b).all() and (true_b <= q["B_opt"][1]).all()
    # the same numbers as the formula on the draws
    post = steplaw_fit["posterior"]
    first = float(post["c_lr"][0, 0] * N[0] ** post["a_N"][0, 0] * D[0] ** post["a_D"][0, 0])
    assert float(opt["eta_opt"][0, 0, 0]) == pytest.approx(first, rel=1e-12)
    pub = lr_bs.steplaw_published(N, D)
    np.testing.assert_allclose(pub["eta_opt"], 1.79 * N**-0.713 * D**0.307, rtol=1e-12)
    np.testing.assert_allclose(pub["B_opt"], 0.58 * D**0.571, rtol=1e-12)


def test_plan_reports_the_optimal_lr_and_batch(steplaw_fit):
    """A law with an [optimum] plans over (N, D) at the optimal lr and batch size and reports both at (N*, D*)."""
    from bayescale.planning.optimum import compute_optimal, format_plan

    c = 6 * 6e8 * 2e10  # inside the simulated grid: no extrapolation
    opt = compute_optimal(steplaw_fit, c)
    n_opt, d_opt = opt["N_opt"].values[..., 0], opt["D_opt"].values[..., 0]
    post = steplaw_fit["posterior"]
    np.testing.assert_allclose(opt["lr_opt"].values[..., 0], post["c_lr"] * n_opt ** post["a_N"] * d_opt ** post["a_D"],
                               rtol=1e-10)
    np.testing.assert_allclose(opt["batch_size_opt"].values[..., 0], post["c_bs"] * d_opt ** post["d_bs"], rtol=1e-10)
    # at the optimal lr and batch the bowl factor is 1: the loss is E + A/N^alpha + B/D^beta
    l0 = post["E"] + post["A"] / n_opt ** post["alpha"] + post["B"] / d_opt ** post["beta"]
    np.testing.assert_allclose(opt["loss_opt"].values[..., 0], l0, rtol=1e-8)
    text = format_plan(bs.plan(steplaw_fit, c, at={"N": 6e8, "D": 2e10}))
    assert "optimal lr at (N*, D*)" in text and "optimal batch_size at (N*, D*)" in text


def test_planning_builds_its_solvers_once_per_law():
    """Repeated plans of one law reuse its jitted solvers (tracing them is most of a plan's cost, seconds for
    steplaw2025's formula at its optimum): one law at its optimum and one solver per law text; another law gets its
    own."""
    from bayescale.laws.catalogue import law_program
    from bayescale.planning import optimum

    first, again = (optimum.planning_law(bs.load_law("steplaw2025"), "plan") for _ in range(2))
    assert first is again and first.input_names == ("N", "D") and first.source_text is None
    solver = law_program(first, "compute_optimal", lambda: optimum._optimum_solver(first))
    assert law_program(again, "compute_optimal", lambda: optimum._optimum_solver(again)) is solver
    # a probe name of its own: an object stored under a read-out's name would serve that read-out in this process
    hoffmann = law_program(bs.load_law("hoffmann2022"), "test_probe", lambda: object())
    assert hoffmann is not law_program(first, "test_probe", lambda: object())
    assert law_program(bs.load_law("hoffmann2022"), "test_probe", lambda: object()) is hoffmann


def test_report_of_a_steplaw_fit_has_the_plan(steplaw_fit, tmp_path):
    path = bs.write_report(steplaw_fit, tmp_path / "report", budgets=[6 * 6e8 * 2e10])
    text = path.read_text()  # report.md
    assert "optimal lr at (N*, D*)" in text and (tmp_path / "report" / "plan.png").is_file()


def test_optimal_lr_batch_rejects(steplaw_fit):
    with pytest.raises(ValueError, match="fitted DataTree with a posterior"):
        lr_bs.optimal_lr_batch(object(), 1e9, 1e10)
    hoff = xr.DataTree.from_dict({"posterior": xr.Dataset({"E": (("chain", "draw"), np.ones((1, 3)))})})
    hoff.attrs.update(law_id="hoffmann2022", law_source=bs.load_law("hoffmann2022").source_text)
    with pytest.raises(ValueError, match=r"an \[optimum\] for lr and batch_size \(steplaw2025\); law 'hoffmann2022' has \[\]"):
        lr_bs.optimal_lr_batch(hoff, 1e9, 1e10)
    with pytest.raises(ValueError, match="N must be finite and > 0"):
        lr_bs.optimal_lr_batch(steplaw_fit, -1.0, 1e10)


@pytest.fixture(scope="module")
def muennighoff_fit():
    """Published constants on the real design (156 C4 runs), 1% noise on the loss (about the seed noise)."""
    table = datablations_table()
    law = bs.load_law("muennighoff2023")
    mu = np.asarray(law.predict(MUENNIGHOFF, **{k: table[k].to_numpy() for k in ("N", "D", "U_D")}))
    table = table.assign(loss=mu * np.exp(np.random.default_rng(1).normal(0, 0.01, len(table))))
    ds = bs.load_runs(table.drop(columns="name"), inputs=("N", "D", "U_D"))
    return bs.fit("muennighoff2023", ds, noise="iid", likelihood="normal", num_chains=2, num_warmup=200,
                  num_samples=200, num_prior_samples=50, rng_key=5, pointwise=False,  # read: posterior only
                  init="median")  # no multi-start MAP search: not what is tested here


@pytest.mark.parametrize("name", list(MUENNIGHOFF))
def test_muennighoff_recovery(muennighoff_fit, name):
    draws = muennighoff_fit["posterior"][name].values.ravel()
    lo, hi = np.quantile(draws, [0.005, 0.995])  # 99%: 7 parameters checked
    assert lo <= MUENNIGHOFF[name] <= hi, (name, lo, hi)
    lo90, hi90 = np.quantile(draws, [0.05, 0.95])
    # informative: the 90% interval is narrower than the prior's (LogNormal sd 1 on R*: ratio 27; exponents 0.6: 7)
    limit = {"R_D_star": 4.0, "R_N_star": 6.0, "alpha": 1.5, "beta": 1.5, "E": 1.3, "A": 30.0, "B": 30.0}[name]
    assert hi90 / lo90 < limit, (name, lo90, hi90)


# ---------------------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------------------
def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_constrained_example(tmp_path):
    """The example end to end with tiny sampler settings (its fit is the small 156-run one)."""
    # the least to compile: no multi-start MAP, the 2 chains in one program, no per-point groups (nothing reads them)
    out = _example("data_constrained").main(["--quick", "--init", "median", "--chain-method", "sequential",
                                             "--no-pointwise", "--out", str(tmp_path)])
    assert (out / "dataconstr_epochs.png").is_file() and (out / "fit.nc").is_file()


def test_steplaw_example_figures(steplaw_fit, tmp_path):
    """The Step Law example's table and figures on the simulated fit (its real-data run is the slow test below)."""
    example = _example("steplaw_lr_bs")
    table = _steplaw_simulated()
    paths = example.plot(steplaw_fit, table, tmp_path)
    assert [p.name for p in paths] == ["steplaw_lr.png", "steplaw_bs.png"] and all(p.is_file() for p in paths)
    text = example.comparison_table(steplaw_fit)
    assert text.count("\n") == 6 and "| a_N |" in text and "-0.713" in text


@pytest.mark.slow
@pytest.mark.skipif(not STEPLAW_CSV.is_file(), reason="the Step Law CSV is not bundled (no licence); shared data only")
def test_steplaw_example(tmp_path):
    """Real Step Law grid, tiny sampler settings: 1,225 runs with cell effects take ~1 min of CPU, hence slow."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "steplaw_lr_bs.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "steplaw_lr.png").is_file() and (tmp_path / "steplaw_bs.png").is_file()
