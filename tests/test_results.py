"""Results are self-describing, saved atomically, reload to predict identically, and fits are reproducible."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import bayescale as bs

from .conftest import simulate_table
from .quick import TINY

TRUTH = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36)


@pytest.fixture(scope="module")
def small_table():
    return simulate_table("hoffmann2022", TRUTH, sigma=0.01, seed=3)


def _small_fit(table, key):
    # reproducibility is a mechanics question: the suite's TINY settings on its standard 6 x 6 table, whose sampler
    # program the suite's other TINY fits of hoffmann2022 share
    return bs.fit("hoffmann2022", table, rng_key=key, sampler=TINY)


def test_same_key_gives_identical_draws_and_other_key_differs(small_table):
    a, b, c = _small_fit(small_table, 7), _small_fit(small_table, 7), _small_fit(small_table, 8)
    for name in TRUTH:
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values)
        assert not np.array_equal(a.posterior[name].values, c.posterior[name].values)
    np.testing.assert_array_equal(a.posterior_predictive["loss"].values, b.posterior_predictive["loss"].values)


def test_groups_and_provenance(chinchilla_fit):
    expected = {"posterior", "posterior_predictive", "log_likelihood", "sample_stats", "observed_data",
                "constant_data", "prior", "prior_predictive", "references"}
    assert expected <= set(chinchilla_fit.children)
    prov = bs.provenance(chinchilla_fit)
    law = bs.load_law("hoffmann2022")
    assert prov["law_id"] == "hoffmann2022" and prov["law_hash"] == law.source_hash
    assert prov["data_hash"] == bs.datasets.load_chinchilla().attrs["data_hash"]
    assert prov["priors"]["E"] == "Uniform(0, min_loss)"
    assert prov["sampler"]["num_chains"] == 4 and prov["sampler"]["rng_key"] == 0
    assert {"jax", "numpyro", "arviz-base", "xarray"} <= set(prov["versions"])
    assert prov["creation_library"] == "ArviZ"


def test_save_load_predict_identical(chinchilla_fit, tmp_path):
    path = bs.save(chinchilla_fit, tmp_path / "fit.nc")
    loaded = bs.load(path)
    inputs = dict(N=np.array([1e9, 7e10, 1e12]), D=np.array([2e10, 1.4e12, 3e13]))
    for kind in ("law", "predictive"):
        before = bs.predict(chinchilla_fit, kind=kind, rng_key=3, **inputs)["loss"].values
        after = bs.predict(loaded, kind=kind, rng_key=3, **inputs)["loss"].values
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(
        bs.compute_optimal(chinchilla_fit, 1e23)["N_opt"].values, bs.compute_optimal(loaded, 1e23)["N_opt"].values
    )
    assert loaded.attrs["law_source"] == chinchilla_fit.attrs["law_source"]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_save_is_atomic(chinchilla_fit, tmp_path, monkeypatch):
    path = tmp_path / "fit.nc"
    bs.save(chinchilla_fit, path)
    previous = path.read_bytes()

    def broken(self, target, **kwargs):
        with open(target, "wb") as fh:
            fh.write(b"half a file")
        raise KeyboardInterrupt  # interrupted mid-write

    monkeypatch.setattr(xr.DataTree, "to_netcdf", broken)
    with pytest.raises(KeyboardInterrupt):
        bs.save(chinchilla_fit, path)
    assert path.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]


def test_load_rejects_non_results(tmp_path):
    with pytest.raises(bs.FileError, match="no fit result at"):
        bs.load(tmp_path / "missing.nc")
    xr.Dataset({"x": ("a", [1.0])}).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    with pytest.raises(bs.FileError, match="is not a bayescale result"):
        bs.load(tmp_path / "other.nc")


def test_predict_errors(chinchilla_fit):
    with pytest.raises(ValueError, match=r"missing \['D'\]"):
        bs.predict(chinchilla_fit, N=1e9)
    with pytest.raises(ValueError, match=r"unknown \['T_m'\]"):
        bs.predict(chinchilla_fit, N=1e9, D=1e10, T_m=2)
    with pytest.raises(ValueError, match="kind 'mean': must be one of"):
        bs.predict(chinchilla_fit, kind="mean", N=1e9, D=1e10)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        bs.predict(chinchilla_fit, N=-1.0, D=1e10)


def test_summary_table(chinchilla_fit):
    table = bs.summary(chinchilla_fit)
    assert list(table.index) == ["E", "A", "B", "alpha", "beta", "sigma", "nu"]
    assert {"median", "q0.05", "q0.95", "rhat", "ess_bulk", "ess_tail", "besiroglu2024"} <= set(table.columns)
    assert table.attrs["divergences"] == 0
    assert json.loads(chinchilla_fit.attrs["warnings"]) == table.attrs["warnings"]


def test_plot_ppc_writes_figure(chinchilla_fit, tmp_path):
    fig = bs.plot_ppc(chinchilla_fit, path=tmp_path / "ppc.png")
    assert (tmp_path / "ppc.png").stat().st_size > 10_000
    assert "coverage of the 90% band" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="x 'T': must be one of"):
        bs.plot_ppc(chinchilla_fit, x="T")


def test_release_compiled_clears_only_past_the_threshold(monkeypatch):
    import sys

    import jax

    from bayescale.infer.fit import release_compiled

    # JAX's clear_caches recorded, not run: clearing them would make every later test of this worker compile its
    # small programs again (about 10 s of the suite)
    cleared = []
    monkeypatch.setattr(jax, "clear_caches", lambda: cleared.append(True))
    assert release_compiled(1.0) is False  # no process holds every mapping the kernel allows
    assert cleared == []
    linux = sys.platform.startswith("linux")  # Linux: /proc tells the count
    assert release_compiled(0.0) is linux
    assert cleared == [True] * linux


def test_every_sampler_run_checks_the_memory_maps(monkeypatch):
    # The check sits in run_nuts, the one sampler path, so fit functions that build their own groups
    # (fit_critical_batch, fit_loss_steps) cannot run a long loop of fits out of memory mappings: before it did, 70
    # critical-batch fits in one process ended in "LLVM compilation error: Cannot allocate memory" and a crash.
    import numpyro
    import numpyro.distributions as dist

    import bayescale.infer.fit as F

    calls = []
    monkeypatch.setattr(F, "release_compiled", lambda *a: calls.append(a) or False)

    def model():
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    F.run_nuts(model, rng_key=F.as_key(0)[0], sampler=bs.NUTS(num_warmup=5, num_samples=5, num_chains=1,
                                                              progress_bar=False))
    assert calls == [()]
