"""Trust (issue 16): no silent wrong number, no lost file, no plan from a broken fit.

Every case of the issue, each asserting the error type and message and that nothing on disk was lost or changed
(the sha256 of every file in the working folder, before and after). Two small fits serve all cases: one that converges
(2 chains x 300 + 300 draws on 36 simulated points, tests/quick.py QUICK) and one that truly does not
(2 chains x 8 warmup steps: the step size and mass matrix are never adapted, so the chains stay where they started).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescale as bs
from bayescale.cli import main
from bayescale.datasets import chinchilla_table, gemstones_dir, load_chinchilla
from bayescale.datasets.datablations import load_datablations
from bayescale.validation.holdout import crps_score, score

from .conftest import simulate_table
from .quick import QUICK

TRUTH = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36)
ROOT = Path(__file__).resolve().parents[1]
SHARED = next((d for d in [Path(p) for p in (os.environ.get("BAYESCALE_SHARED_DATA", ""),) if p]
               + [ROOT.parent / "shared" / "data", Path("/work/shared/data")] if d.is_dir()), Path("/work/shared/data"))


# ---------------------------------------------------------------------------------------------------------
# helpers and fixtures
def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden temp files included): what must survive a failed command."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Unchanged:
    """``with Unchanged(folder):`` asserts that no file under ``folder`` appeared, vanished or changed."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __enter__(self):
        self.before = snapshot(self.folder)
        return self

    def __exit__(self, *exc):
        assert snapshot(self.folder) == self.before, "files on disk changed"
        return False


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate_table("hoffmann2022", TRUTH, sigma=0.01, seed=3)


@pytest.fixture(scope="module")
def good(table):
    # the suite's QUICK settings (tests/quick.py): test_results fits this table with them too, so they share programs
    return bs.fit("hoffmann2022", table, rng_key=3, sampler=QUICK)


@pytest.fixture(scope="module")
def broken(table):
    with pytest.warns(bs.SamplingWarning):
        return bs.fit("hoffmann2022", table, rng_key=1, num_chains=2, num_warmup=8, num_samples=60, progress_bar=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory, table, good, broken):
    folder = tmp_path_factory.mktemp("fits")
    table.to_csv(folder / "runs.csv", index=False)
    pd.DataFrame({"N": [1e9, 2e9], "D": [2e10, 4e10]}).to_csv(folder / "candidates.csv", index=False)
    bs.save(good, folder / "good.nc")
    bs.save(broken, folder / "broken.nc")
    return folder


def test_the_two_fits_get_the_verdicts_they_should(good, broken):
    assert bs.convergence(good).converged and bs.convergence(good).reasons == ()
    verdict = bs.convergence(broken)
    assert not verdict.converged and any("R-hat" in r or "effective sample size" in r for r in verdict.reasons)
    assert broken.attrs["converged"] == 0 and good.attrs["converged"] == 1


# ---------------------------------------------------------------------------------------------------------
# 1. silent wrong results in the run table
def chinchilla() -> pd.DataFrame:
    return chinchilla_table()[["N_params", "D_tokens", "loss"]].rename(columns={"N_params": "N", "D_tokens": "D"})


WRONG_UNITS = [
    ("parameters-in-millions", lambda df: df.assign(N=df.N / 1e6),
     r"column 'N' \(N\) looks like it is not in parameters: its largest value is 16183(\.\d+)?, below 100000"),
    ("tokens-in-millions", lambda df: df.assign(D=df.D / 1e6), r"D < N in 240 of 240 rows"),
    ("N-and-D-swapped", lambda df: df.rename(columns={"N": "D", "D": "N"}),
     r"D < N in 234 of 240 rows \(median D/N 0\.0433\): N and D look swapped"),
    ("N-1e30", lambda df: df.assign(N=df.N.where(df.index != 5, 1e30)),
     r"column 'N' \(N\) has values above 1e\+14 parameters at rows \[5\]"),
    ("N-and-D-scaled-by-1e20", lambda df: df.assign(N=df.N * 1e20, D=df.D * 1e20),
     r"column 'N' \(N\) has values above 1e\+14 parameters.*column 'D' \(D\) has values above 1e\+16 tokens"),
    ("perplexity-all-below-2.9-nats", lambda df: df[df.loss < 2.9].assign(loss=lambda d: np.exp(d.loss)),
     r"column 'loss' \(loss\): every value is above 4\.5 \(best \d\.\d+\); it looks like a perplexity"),
    ("loss-in-bits-by-name", lambda df: df.rename(columns={"loss": "loss_bits"}),
     r"column 'loss_bits' \(loss\) is named like a bits column; declare loss_unit='bits'"),
    ("perplexity-by-name", lambda df: df.rename(columns={"loss": "val_ppl"}),
     r"column 'val_ppl' \(loss\) is named like a perplexity column"),
]


@pytest.mark.parametrize(("change", "match"), [pytest.param(c, m, id=i) for i, c, m in WRONG_UNITS])
def test_implausible_units_raise_and_the_csv_is_untouched(tmp_path, change, match):
    path = tmp_path / "runs.csv"
    change(chinchilla()).to_csv(path, index=False)
    columns = {"loss": "loss_bits"} if "loss_bits" in path.read_text().splitlines()[0] else {}
    columns = {"loss": "val_ppl"} if "val_ppl" in path.read_text().splitlines()[0] else columns
    with Unchanged(tmp_path):
        with pytest.raises(bs.DataError, match=match):
            bs.load_runs(path, columns=columns)
        assert main(["fit", str(path), "--law", "hoffmann2022", "--out", str(tmp_path / "fit.nc"),
                     *(["--column", f"loss={columns['loss']}"] if columns else [])]) == 2


def test_allow_unusual_accepts_real_data_with_a_warning_and_a_record():
    swapped = chinchilla().rename(columns={"N": "D", "D": "N"})
    with pytest.warns(bs.UnusualDataWarning, match=r"unusual data accepted \(allow_unusual=True\): D < N in 234 of 240"):
        ds = bs.load_runs(swapped, allow_unusual=True)
    assert "D < N in 234 of 240" in ds.attrs["unusual"]


def test_loss_unit_converts_bits_and_perplexity_to_nats():
    df = chinchilla()
    nats = bs.load_runs(df)["loss"].values
    np.testing.assert_allclose(bs.load_runs(df.assign(loss=df.loss / np.log(2)), loss_unit="bits")["loss"].values, nats)
    np.testing.assert_allclose(bs.load_runs(df.assign(loss=np.exp(df.loss)), loss_unit="perplexity")["loss"].values, nats)
    with pytest.raises(bs.DataError, match=r"loss_unit 'nat': must be one of \['nats', 'bits', 'perplexity'\]"):
        bs.load_runs(df, loss_unit="nat")
    with pytest.raises(bs.DataError, match=r"declared a perplexity but rows \[0\] are below 1"):
        bs.load_runs(df.assign(loss=df.loss.where(df.index != 0, 0.5)), loss_unit="perplexity")


def test_small_models_and_a_few_undertrained_rows_are_not_unusual():
    # a real study may have 1e6-parameter models and a few runs with D < N (Porian et al.'s isoFLOP sweeps: 21%)
    n = np.array([3e5, 1e6, 3e6, 1e7, 3e7])
    df = pd.DataFrame({"N": np.repeat(n, 4), "D": np.tile([1e5, 1e8, 1e9, 1e10], 5)})
    df["loss"] = 2.0 + 50 / df.N**0.3 + 60 / df.D**0.3
    ds = bs.load_runs(df)
    assert "unusual" not in ds.attrs and float(ds["N"].max()) == 3e7


def test_curves_normalised_per_run_are_unusual(tmp_path):
    """Training curves that each start at one loss (divided by their first value, as ColPret's copy of Alabdulmohsin
    et al.'s LM curves is) are not raw losses: refused with a clear reason, accepted with allow_unusual."""
    n, d = np.repeat([1e8, 3e8, 1e9, 3e9], 5), np.tile([1e9, 3e9, 1e10, 3e10, 1e11], 4)
    raw = pd.DataFrame({"N": n, "D": d, "loss": 1.8 + 400 / n**0.34 + 1500 / d**0.32, "run": np.repeat(list("abcd"), 5)})
    assert "unusual" not in bs.load_runs(raw).attrs  # raw curves start at different losses
    normalised = raw.assign(loss=0.999 * raw.loss / raw.groupby("run").loss.transform("first"))
    path = tmp_path / "curves.csv"
    normalised.to_csv(path, index=False)
    match = r"every one of the 4 curves in column 'loss' \(loss\) starts at the same loss, 0\.999, at its first checkpoint"
    with Unchanged(tmp_path):
        with pytest.raises(bs.DataError, match=match):
            bs.load_runs(path)
        assert main(["fit", str(path), "--law", "hoffmann2022", "--out", str(tmp_path / "fit.nc")]) == 2
    with pytest.warns(bs.UnusualDataWarning, match=match):
        bs.load_runs(normalised, allow_unusual=True)
    assert "unusual" not in bs.load_runs(normalised[normalised.run.isin(["a", "b"])]).attrs  # 2 curves: too few to say


def _gemstones(name: str) -> pd.DataFrame:
    return pd.read_json(gemstones_dir() / "wandb_dfs" / name, lines=True)


GEMSTONES_COLUMNS = {"N": "params_active_precise", "D": "tokens", "loss": "final_loss", "run": "run_name"}


def test_bundled_real_tables_load_without_override():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tables = [load_chinchilla(), load_chinchilla(include_excluded=True), load_datablations(),
                  load_datablations(max_epochs=None, max_loss=None),
                  *(bs.load_runs(_gemstones(p.name), columns=GEMSTONES_COLUMNS)
                    for p in sorted((gemstones_dir() / "wandb_dfs").glob("*.jsonl")))]
    assert not [w for w in record if issubclass(w.category, bs.UnusualDataWarning)]
    assert all("unusual" not in ds.attrs for ds in tables) and len(tables) >= 6


def _load_gemstones(df: pd.DataFrame):
    """Some Gemstones tables have no run column: map what is there (their repeated rows are the duplicate check's)."""
    columns = {k: v for k, v in GEMSTONES_COLUMNS.items() if v in df.columns}
    return bs.load_runs(df[list(columns.values())].drop_duplicates(), columns=columns)


@pytest.mark.slow
def test_shared_real_tables_load_without_override():
    """Every table of ../shared/data the checks can touch (unlicensed ones are not bundled: slow, like test_lr_bs)."""
    sys.path.insert(0, str(ROOT / "examples"))
    import real_curves

    from bayescale.analyses.steplaw import load_steplaw

    porian = pd.read_csv(SHARED / "porian_resolving_discrepancies" / "derived_isoflop_points.csv")
    sld = SHARED / "sldbench_train"
    loaded = [
        bs.load_runs(porian.drop(columns=["source_file"]).assign(run=np.arange(len(porian))),
                     columns={"N": "N_params", "D": "D_tokens"}),
        # (SLDBench tables repeat a few rows exactly: the duplicate check, not the plausibility rules, objects)
        bs.load_runs(pd.read_csv(sld / "farseer_scaling_law.csv").drop_duplicates()),
        bs.load_runs(pd.read_csv(sld / "data_constrained_scaling_law.csv").drop_duplicates(),
                     columns={"N": "params", "D": "tokens"}),
        bs.load_runs(pd.read_csv(sld / "lr_bsz_scaling_law.csv").drop_duplicates(),
                     columns={"N": "non_embedding_param_size", "D": "data_size", "loss": "lm_loss"}),
        load_steplaw(SHARED / "steplaw_lr_bs" / "data" / "dense_lr_bs_loss.csv"),
        bs.load_runs(real_curves.load_colpret(SHARED)[0], columns=real_curves.load_colpret(SHARED)[1]),
        *(_load_gemstones(pd.read_json(p, lines=True)) for p in sorted((SHARED / "gemstones" / "wandb_dfs").glob("*.jsonl"))),
    ]
    assert all("unusual" not in ds.attrs for ds in loaded)


def test_corrupt_parquet_and_binary_csv_are_data_errors(tmp_path):
    (tmp_path / "runs.parquet").write_bytes(b"PAR1" + os.urandom(2000))
    (tmp_path / "runs.csv").write_bytes(b"\xff\xfe\x00" + os.urandom(3000))
    with Unchanged(tmp_path):
        with pytest.raises(bs.DataError, match=r"cannot read '.*runs\.parquet' as Parquet \(damaged or not a Parquet"):
            bs.load_runs(tmp_path / "runs.parquet")
        with pytest.raises(bs.DataError, match=r"cannot read '.*runs\.csv' as a table"):
            bs.load_runs(tmp_path / "runs.csv")


# ---------------------------------------------------------------------------------------------------------
# 2. law files checked at load
LAW = """
id = "mylaw"
formula = "{formula}"
[inputs.N]
[inputs.D]
[parameters.E]
prior = "Uniform(0, min_loss)"
[parameters.A]
prior = "LogNormal(6, 2.5)"
[parameters.alpha]
prior = "LogNormal(-1, 0.5)"
[parameters.B]
prior = "LogNormal(6, 2.5)"
[parameters.beta]
prior = "LogNormal(-1, 0.5)"
"""

BAD_LAWS = [
    ("one-over-zero", "E + A / N**alpha + B / D**beta + 1/0", r"the constant expression \(1 / 0\) is inf"),
    ("zero-to-minus-one", "E + A / N**alpha + B / D**beta * 0 ** (-1)", r"the constant expression \(0 \*\* -1\) is inf"),
    ("log-of-negative", "E + A / N**alpha + B / D**beta + log(-1)", r"the constant expression log\(-1\) is nan"),
    ("unused-parameters-and-input", "E + A / N**alpha",
     r"parameters \['B', 'beta'\] and inputs \['D'\] declared but not used by the formula"),
]


@pytest.mark.parametrize(("formula", "match"), [pytest.param(f, m, id=i) for i, f, m in BAD_LAWS])
def test_law_files_are_checked_at_load(tmp_path, formula, match):
    path = tmp_path / "mylaw.toml"
    path.write_text(LAW.format(formula=formula))
    with Unchanged(tmp_path):
        with pytest.raises(bs.LawError, match=match):
            bs.load_law(path)


def test_every_catalogue_law_passes_the_load_checks():
    assert all(bs.load_law(name).id == name for name in bs.list_laws())


# ---------------------------------------------------------------------------------------------------------
# 3. one error type per family
def test_error_families():
    assert issubclass(bs.DataError, bs.BayescaleError) and issubclass(bs.DataError, ValueError)
    assert issubclass(bs.LawError, bs.BayescaleError) and issubclass(bs.LawError, ValueError)
    assert issubclass(bs.ArgumentError, bs.BayescaleError) and issubclass(bs.ArgumentError, ValueError)
    assert issubclass(bs.FileError, bs.BayescaleError) and issubclass(bs.FileError, OSError)
    assert issubclass(bs.ConvergenceError, bs.BayescaleError) and issubclass(bs.SamplingError, bs.BayescaleError)


@pytest.mark.parametrize("key", ["abc", 1.5, True, None])
def test_bad_rng_key_is_an_argument_error_before_sampling(table, key):
    with pytest.raises(bs.ArgumentError, match=r"rng_key must be an int seed or a jax\.random key, got"):
        bs.fit("hoffmann2022", table, rng_key=key, num_chains=1, num_warmup=10, num_samples=10)


def test_predict_at_zero_and_negative_flops_are_clear_errors(good):
    with pytest.raises(bs.ArgumentError, match=r"law 'hoffmann2022' has no finite loss at N=0, D=1e\+10"):
        bs.predict(good, N=0.0, D=1e10)
    with pytest.raises(bs.ArgumentError, match=r"flops_per_param_token must be a positive finite number.*got -6"):
        bs.compute_optimal(good, 1e23, flops_per_param_token=-6)
    with pytest.raises(bs.ArgumentError, match=r"rng_key must be an int seed"):
        bs.predict(good, kind="predictive", rng_key="abc", N=1e9, D=1e10)


# ---------------------------------------------------------------------------------------------------------
# 5. files
def test_fit_refuses_to_overwrite_its_input_and_checks_the_destination_before_sampling(files, monkeypatch, capsys):
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampling started before the destination was checked")

    monkeypatch.setattr(bs, "fit", no_sampling)
    runs = files / "runs.csv"
    (files / "notes.txt").write_text("my notes")
    cases = [(str(runs), "is also an input: writing it would destroy"),
             ("/proc/bayescale-trust/x.nc", "is not writable"),
             (str(files), "is a folder"),
             (str(runs / "x.nc"), "is a file, not a folder"),
             (str(files / "notes.txt"), "is not a netCDF result; refusing to overwrite")]
    with Unchanged(files):
        for out, match in cases:
            assert match in _last_error(capsys, main, ["fit", str(runs), "--law", "hoffmann2022", "--out", out])


def _last_error(capsys, fn, argv) -> str:
    capsys.readouterr()
    assert fn(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err  # one line, no traceback
    return err[0]


def test_save_rejects_bad_destinations_and_non_results(good, tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "runs.csv").write_text("N,D,loss\n")
    cases = [
        (lambda: bs.save(pd.DataFrame({"a": [1]}), tmp_path / "x.nc"), bs.ArgumentError,
         r"save needs a fit result \(xarray.DataTree\), got DataFrame"),
        (lambda: bs.save(good, tmp_path), bs.FileError, r"is a folder; give a file path such as"),
        (lambda: bs.save(good, tmp_path / "a_file" / "x.nc"), bs.FileError, r"'.*a_file' is a file, not a folder"),
        (lambda: bs.save(good, "/proc/bayescale-trust/x.nc"), bs.FileError, r"folder '/proc/bayescale-trust' is not writable"),
        (lambda: bs.save(good, tmp_path / "runs.csv"), bs.FileError, r"exists and is not a netCDF result; refusing"),
        (lambda: bs.save(good, tmp_path / "x.nc", inputs=[tmp_path / "x.nc"]), bs.FileError, r"is also an input"),
    ]
    with Unchanged(tmp_path):
        for call, error, match in cases:
            with pytest.raises(error, match=match):
                call()


def test_saved_files_respect_the_umask_and_round_trip_the_checksum(good, tmp_path):
    old = os.umask(0o022)
    try:
        path = bs.save(good, tmp_path / "fit.nc")
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert bs.save(good, tmp_path / "private.nc").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    loaded = bs.load(path)
    assert loaded.attrs["content_sha256"] == bs.results.io.content_hash(good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc", "private.nc"]


def test_load_rejects_damaged_and_foreign_files(good, tmp_path):
    path = bs.save(good, tmp_path / "fit.nc")
    data = path.read_bytes()
    (tmp_path / "truncated.nc").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    middle = len(data) // 2
    flipped[middle:middle + 4096] = bytes(b ^ 0xFF for b in flipped[middle:middle + 4096])  # 4 KiB of flipped bytes
    (tmp_path / "flipped.nc").write_bytes(bytes(flipped))
    (tmp_path / "notes.txt").write_text("not a fit")
    (tmp_path / "runs.csv").write_text("N,D,loss\n1e8,2e9,3.0\n")
    xr.DataTree(xr.Dataset({"x": ("a", [1.0])})).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    cases = [
        ("truncated.nc", r"cannot read '.*truncated\.nc': the file is truncated or corrupt"),
        ("flipped.nc", r"flipped\.nc' is corrupt: its content does not match the checksum|flipped\.nc': the file is "
                       r"truncated or corrupt"),
        ("notes.txt", r"notes\.txt' is not a netCDF file"),
        ("runs.csv", r"runs\.csv' is not a netCDF file .*is it the run table\?"),
        ("other.nc", r"other\.nc' is not a bayescale result"),
        ("missing.nc", r"no fit result at '.*missing\.nc'"),
        (".", r"is a folder, not a fit result"),
    ]
    with Unchanged(tmp_path):
        for name, match in cases:
            with pytest.raises(bs.FileError, match=match):
                bs.load(tmp_path / name)


def test_cli_summary_of_damaged_files_is_one_line(tmp_path, capsys):
    (tmp_path / "runs.csv").write_text("N,D,loss\n1e8,2e9,3.0\n")
    (tmp_path / "t.nc").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with Unchanged(tmp_path):
        assert "is not a netCDF file" in _last_error(capsys, main, ["summary", str(tmp_path / "runs.csv")])
        assert "truncated or corrupt" in _last_error(capsys, main, ["summary", str(tmp_path / "t.nc")])
        with pytest.raises(bs.FileError):  # --debug: the exception itself, with its traceback
            main(["summary", str(tmp_path / "t.nc"), "--debug"])


def test_interrupted_saves_leave_no_temp_file_and_keep_the_old_result(good, tmp_path, monkeypatch):
    path = tmp_path / "fit.nc"
    bs.save(good, path)
    before = snapshot(tmp_path)
    real = xr.DataTree.to_netcdf

    def killed(self, target, **kwargs):  # SIGTERM arrives mid-write
        real(self, target, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)

    def interrupted(self, target, **kwargs):
        Path(target).write_bytes(b"half a file")
        raise KeyboardInterrupt

    for broken_write, error in [(killed, SystemExit), (interrupted, KeyboardInterrupt)]:
        monkeypatch.setattr(xr.DataTree, "to_netcdf", broken_write)
        with pytest.raises(error):
            bs.save(good, path)
        assert snapshot(tmp_path) == before  # old result intact, no hidden temp file
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the save's handler is gone


def test_a_killed_process_temp_file_is_removed_by_the_next_save(good, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".fit.nc.{dead.pid}.abcd.tmp"
    stale.write_bytes(b"x" * 1000)
    mine = tmp_path / f".fit.nc.{os.getpid()}.live.tmp"  # a live process's temp is not touched
    mine.write_bytes(b"y")
    bs.save(good, tmp_path / "fit.nc")
    assert not stale.exists() and mine.exists()


def test_report_out_must_be_a_folder(files, capsys):
    existing = files / "runs.csv"
    with Unchanged(files):
        assert "exists and is a file, not a folder" in _last_error(
            capsys, main, ["report", str(files / "good.nc"), "--out", str(existing)])


# ---------------------------------------------------------------------------------------------------------
# 6. diagnostics that flow
def test_plan_predict_compare_next_refuse_a_fit_that_did_not_converge(good, broken):
    candidates = pd.DataFrame({"N": [1e9, 2e9], "D": [2e10, 4e10]})
    calls = {
        "plan": lambda **kw: bs.plan(broken, 1e21, **kw),
        "compute_optimal": lambda **kw: bs.compute_optimal(broken, 1e21, **kw),
        "predict": lambda **kw: bs.predict(broken, N=1e9, D=1e10, **kw),
        "compare": lambda **kw: bs.compare_fits(good, broken, 1e21, **kw),
        r"next \(rank_next_experiments\)": lambda **kw: bs.rank_next_experiments(
            broken, candidates, target=dict(N=7e9, D=1.4e11), **kw),
    }
    for what, call in calls.items():
        with pytest.raises(bs.ConvergenceError, match=rf"^{what} refused: the fit of 'hoffmann2022' did not converge"):
            call()
        with pytest.warns(bs.ConvergenceWarning, match=rf"NOT CONVERGED: {what} computed anyway"):
            call(allow_unconverged=True)
    assert bs.predict(good, N=1e9, D=1e10)["loss"].shape == (2, 300, 1)  # the converged fit is not refused
    with pytest.raises(bs.ArgumentError, match="allow_unconverged must be True or False, got 'yes'"):
        bs.predict(broken, N=1e9, D=1e10, allow_unconverged="yes")


def test_cli_refuses_unconverged_fits_unless_asked_loudly(files, capsys):
    broken = str(files / "broken.nc")
    commands = [["plan", broken, "--compute", "1e21"], ["predict", broken, "--at", "N=1e9", "--at", "D=1e10"],
                ["compare", str(files / "good.nc"), broken, "--compute", "1e21"],
                ["next", broken, str(files / "candidates.csv"), "--target-at", "N=7e9,D=1.4e11"]]
    with Unchanged(files):
        for argv in commands:
            capsys.readouterr()
            assert main(argv) == 3
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "refused: the fit of 'hoffmann2022' did not converge" in err[0]
            assert main([*argv, "--allow-unconverged"]) == 0
            captured = capsys.readouterr()
            assert "!! NOT CONVERGED" in captured.out and "NOT trustworthy" in captured.out
            assert main([*argv, "--allow-unconverged", "--strict"]) == 4  # --strict: any warning fails a script


def test_cli_warnings_are_one_clean_line(files, capsys):
    capsys.readouterr()
    assert main(["summary", str(files / "broken.nc")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("warning: ") for line in err)
    assert not any("Warning:" in line or ".py:" in line for line in err)  # no raw Python warnings
    assert any("did NOT converge" in line for line in err)
    assert main(["summary", str(files / "broken.nc"), "--strict"]) == 4
    # the converged fit warns only if its diagnostics list sampler warnings (R-hat just above 1.01, say)
    assert main(["summary", str(files / "good.nc"), "--strict"]) == (4 if json.loads(good_warnings(files)) else 0)


def test_cli_verdict_says_which_parameters_missed_the_targets(good, tmp_path, capsys):
    # A fit inside the refusal limits (R-hat <= 1.1, ESS >= 50) whose recorded diagnostics miss the targets (R-hat
    # <= 1.01, ESS >= 100 per chain with 2 chains): "converged" alone would contradict its warnings. The names come
    # from attrs["diagnostics"], the numbers the warnings were written from; the warning text is left empty.
    near = good.copy()
    near.attrs["converged"], near.attrs["convergence"], near.attrs["warnings"] = 1, "[]", "[]"

    def diagnostics(E=(1.005, 900.0), nu=(1.002, 900.0)):
        rows = [{"parameter": n, "rhat": r, "ess_bulk": e, "ess_tail": 449.0, "contraction": 0.9}
                for n, (r, e) in (("E", E), ("nu", nu), ("gamma", (1.001, 700.0)))]
        return json.dumps({"divergences": 0, "chains": 2, "parameters": rows})

    near.attrs["diagnostics"] = diagnostics(E=(1.017, 900.0), nu=(1.002, 148.0))
    bs.save(near, tmp_path / "near.nc")
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "near.nc")]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("convergence:")]
    assert line and "but E, nu missed the R-hat (<= 1.01) or effective-sample-size targets" in line[0], line
    assert "--samples" in line[0]
    near.attrs["diagnostics"] = diagnostics()
    bs.save(near, tmp_path / "near.nc")  # control: every parameter on target, the plain verdict
    assert main(["summary", str(tmp_path / "near.nc")]) == 0
    assert "convergence: converged\n" in capsys.readouterr().out
    # the report says the same
    near.attrs["diagnostics"] = diagnostics(E=(1.017, 900.0))
    text = bs.write_report(near, tmp_path / "report", budgets=[1e21]).read_text()
    assert "Convergence: converged within the limits plan and predict accept" in text and "but E missed" in text


def good_warnings(files: Path) -> str:
    return bs.load(files / "good.nc").attrs["warnings"]


def test_report_of_a_non_converged_fit_opens_with_a_banner_and_shows_no_plan(broken, good, tmp_path):
    bad = bs.write_report(broken, tmp_path / "bad")
    md, page = bad.read_text(), (tmp_path / "bad" / "report.html").read_text()
    assert md.splitlines()[2].startswith("> **WARNING: This fit did NOT converge")
    assert page.index('id="convergence-banner"') < page.index("<h2>Data</h2>")
    assert 'id="key-numbers"' not in page and "N* =" not in page and "N* =" not in md
    assert "Not shown: the fit did not converge" in md and not (tmp_path / "bad" / "plan.png").exists()

    ok = bs.write_report(good, tmp_path / "ok")
    page = html.unescape((tmp_path / "ok" / "report.html").read_text())
    assert 'id="convergence-banner"' not in page and 'id="key-numbers"' in page
    # a fit of its own law's data: the residual check finds no trend and says so, with no warning over the plan
    assert "Residual structure: the misses do not trend along log10 N, log10 D" in page
    assert 'id="residual-warning"' not in page
    assert "Budget C = 5.76e+23 FLOP: the default (Chinchilla's training compute" in page
    assert "Budgets C = 1e+21 FLOP (as given)" in bs.write_report(good, tmp_path / "given", budgets=[1e21]).read_text()


def test_published_constants_are_references_only_for_the_data_they_were_fitted_on(good):
    table = bs.summary(good)
    assert "hoffmann2022" not in table.columns and "besiroglu2024" not in table.columns
    assert table.attrs["published_elsewhere"] == ["hoffmann2022", "besiroglu2024"]
    same_data = good.copy()
    same_data.attrs = {**good.attrs, "data_hash": load_chinchilla().attrs["data_hash"]}
    assert {"hoffmann2022", "besiroglu2024"} <= set(bs.summary(same_data).columns)
    from bayescale.report import _reference_optima

    assert _reference_optima(good, 5.76e23, 6.0) == {}
    assert set(_reference_optima(same_data, 5.76e23, 6.0)) == {"hoffmann2022", "besiroglu2024"}


def test_ppc_figure_reads_its_range_from_the_data_and_says_how_many_groups(broken):
    fig = bs.plot_ppc(broken, max_groups=4)
    y = broken["observed_data"]["loss"].values
    low, high = fig.axes[0].get_ylim()
    span = y.max() - y.min()
    assert low == pytest.approx(y.min() - 0.15 * span) and high == pytest.approx(y.max() + 0.15 * span)
    assert "4 of 6 N groups shown" in fig.axes[0].get_title()


# ---------------------------------------------------------------------------------------------------------
# 8. validation scores
def test_crps_is_on_log_loss_finite_and_flagged_when_a_few_draws_dominate(good, table):
    rng = np.random.default_rng(0)
    y = np.zeros(20)
    assert crps_score(0.01 * rng.standard_normal((4000, 20)), y)[1] is False
    assert crps_score(0.01 * rng.standard_t(0.5, (4000, 20)), y)[1] is True  # no mean: a few draws decide
    test = bs.load_runs(table.iloc[:6])
    law = bs.load_law("hoffmann2022")
    metrics, _ = score(good, test, law)
    assert np.isfinite(metrics["crps"]) and metrics["crps"] < 0.05 and metrics["crps_dominated"] is False
    heavy = good.copy()
    heavy["posterior"] = xr.DataTree(good["posterior"].to_dataset().assign(
        nu=lambda p: xr.full_like(p["nu"], 0.4), sigma=lambda p: p["sigma"] * 5))
    metrics, _ = score(heavy, test, law)
    assert np.isfinite(metrics["crps"]) and metrics["crps_dominated"] is True
