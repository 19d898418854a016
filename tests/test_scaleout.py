"""Fits on a Dask cluster (bayescale.infer.scaleout.fit_many): results in order and identical to fits made here, saved as
they arrive, resumed, worker errors as one-line errors; the example on a local cluster."""

from __future__ import annotations

import logging
import runpy
import sys
import warnings

import numpy as np
import pytest
from dask.distributed import Client, LocalCluster

import bayescale as bs
from bayescale.infer.scaleout import FitJob, FitJobError, _job_failure, fit_many, job_grid

from tests.conftest import simulate_table
from tests.fits import TRUTH

#: Tiny fits: the point is where they run and what comes back, not the posterior.
TINY = dict(sampler=bs.NUTS(num_chains=1, num_warmup=60, num_samples=60, init="median", progress_bar=False),
            pointwise=False)


#: The local cluster fit_many starts when given no client (n_workers=2): 2 worker processes, one thread each.
CLUSTER = dict(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of worker processes for the whole module: starting one (and importing JAX and bayescale in
    each worker) costs more than the tiny fits it runs, so the tests share it."""
    cluster = LocalCluster(**CLUSTER)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def tables():
    return {f"t{s}": simulate_table("hoffmann2022", TRUTH, seed=s) for s in range(2)}


def test_fit_many_on_a_local_cluster(cluster, tables, tmp_path, monkeypatch):
    """Two jobs on a local cluster of 2 processes (the default client): results in job order, each identical to the
    same call in this process (same seed, same machine), each saved as it arrived; a second call resumes from the
    files without running anything.

    Without a client fit_many starts a ``LocalCluster`` and closes it when done. Here that call is handed the module's
    cluster, started with the same arguments (one cluster start for the module instead of two); what fit_many asked
    for and that it closed its cluster are checked."""
    import dask.distributed

    started, closed = [], []
    monkeypatch.setattr(dask.distributed, "LocalCluster", lambda **kw: started.append(kw) or cluster)
    monkeypatch.setattr(cluster, "close", lambda *a, **kw: closed.append(True))
    jobs = job_grid(["hoffmann2022"], tables, rng_key=3, **TINY)
    assert [j.name for j in jobs] == ["hoffmann2022__t0", "hoffmann2022__t1"]
    arrived = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny fits: convergence warnings
        # the fit here first: its programs go to the session's compilation cache (tests/conftest.py), and the two
        # worker processes read them instead of each compiling them at once
        here = bs.fit("hoffmann2022", tables["t1"], rng_key=3, **TINY)
        results = fit_many(jobs, out_dir=tmp_path, n_workers=2, on_result=lambda i, r: arrived.append(i))
    assert started == [CLUSTER] and closed == [True]  # worker processes, one thread each; closed after the jobs
    assert sorted(arrived) == [0, 1]
    np.testing.assert_array_equal(results[1].posterior["alpha"].values, here.posterior["alpha"].values)
    assert not np.array_equal(results[0].posterior["alpha"].values, results[1].posterior["alpha"].values)
    assert results[1].attrs["data_hash"] == here.attrs["data_hash"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hoffmann2022__t0.nc", "hoffmann2022__t1.nc"]

    resumed = fit_many(jobs, out_dir=tmp_path, on_result=lambda i, r: pytest.fail("a saved job ran again"))
    assert len(started) == 1  # nothing left to run: no cluster started
    np.testing.assert_array_equal(resumed[0].posterior["alpha"].values, results[0].posterior["alpha"].values)


def test_worker_errors_are_one_line(client, tables, tmp_path):
    """A job that fails on a worker raises here as one line naming the job; bayescale's own errors keep their type;
    the results that finished are saved."""
    jobs = [FitJob("hoffmann2022", tables["t0"], TINY, name="good"), FitJob("no_such_law", tables["t0"], name="bad")]
    with pytest.raises(bs.LawError, match=r"^job 1 \(bad\): .*no_such_law"):
        fit_many(jobs, client=client, out_dir=tmp_path)
    other = _job_failure(4, "x", ZeroDivisionError("division by zero\n  a second line"))
    assert isinstance(other, FitJobError) and isinstance(other, bs.BayescaleError)
    assert str(other) == "job 4 (x) failed on a worker: ZeroDivisionError: division by zero"


def test_job_errors():
    with pytest.raises(bs.ArgumentError, match=r"FitJob function 'validate': must be one of \['fit', 'fit_batch'\]"):
        FitJob("hoffmann2022", None, function="validate")
    with pytest.raises(bs.ArgumentError, match=r"FitJob name 'a/b': must be letters"):
        FitJob("hoffmann2022", None, name="a/b")
    with pytest.raises(bs.ArgumentError, match="job names must be unique"):
        fit_many([FitJob("hoffmann2022", None, name="a"), FitJob("hoffmann2022", None, name="a")])
    with pytest.raises(bs.ArgumentError, match=r"job 0: a dict job needs 'law' and 'data'"):
        fit_many([{"law": "hoffmann2022"}])
    with pytest.raises(bs.ArgumentError, match="jobs is empty"):
        fit_many([])
    with pytest.raises(bs.ArgumentError, match="client must be a dask.distributed.Client or None, got str"):
        fit_many([FitJob("hoffmann2022", None)], client="tcp://localhost:8786")
    with pytest.raises(bs.ArgumentError, match="datasets must map a name to a run table"):
        job_grid(["hoffmann2022"], [None])


def test_example_scale_out(client, tmp_path, monkeypatch, capsys):
    """examples/scale_out.py against a running cluster (--scheduler), with tiny settings."""
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["scale_out.py", "--out", str(out), "--scheduler", client.scheduler.address,
                                      "--laws", "hoffmann2022", "--chains", "1", "--warmup", "40", "--samples", "40",
                                      "--init", "median", "--no-progress"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runpy.run_path("examples/scale_out.py", run_name="__main__")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["hoffmann2022__all.nc", "hoffmann2022__train_largest_N.nc"]  # "largest N": a file name
    assert "2 fits in" in capsys.readouterr().out
