"""Many fits across processes or machines with Dask distributed: laws × datasets × validation splits × SBC replicates.

A fit job names a bayescale fit function and its arguments (:class:`FitJob`); :func:`fit_many` sends the jobs to the
workers of a Dask cluster (a local cluster of processes by default, or any ``dask.distributed.Client``: a cluster of
machines started with ``dask scheduler`` / ``dask worker``, Kubernetes, SLURM through dask-jobqueue, ...), saves each
result on the client as soon as it arrives, and returns the results in the order of the jobs. The results are
ordinary bayescale results: each is what the same call made in this process returns, with the same seed.

Dask distributed is an optional dependency: ``pip install 'bayescale[scale]'``.

References
----------
Rocklin 2015, "Dask: Parallel Computation with Blocked algorithms and Task Scheduling", Proc. SciPy.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from bayescale.errors import ArgumentError, BayescaleError

__all__ = ["FIT_FUNCTIONS", "FitJob", "FitJobError", "fit_many", "job_grid"]

#: The functions a job may name: each returns a result DataTree that :func:`bayescale.save` writes.
FIT_FUNCTIONS = ("fit", "fit_batch")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class FitJobError(BayescaleError, RuntimeError):
    """A job failed on a worker with an error that is not one of bayescale's own (those keep their type)."""


@dataclass(frozen=True)
class FitJob:
    """One fit to run on a worker: ``bayescale.<function>(law, data, **options)``.

    Parameters
    ----------
    law
        A catalogue id, a path to a law file (readable on the workers) or a :class:`~bayescale.laws.catalogue.Law`.
    data
        What the function takes as data: a run table (DataFrame, path, validated Dataset) for ``"fit"``, a list of
        them for ``"fit_batch"``.
    options
        Keyword arguments of the function (``sampler=``, ``noise=``, ``rng_key=``, ...).
    name
        The file name (without ``.nc``) the result is saved under; letters, digits, ``.``, ``_`` and ``-``.
        ``None``: ``job<index>``.
    function
        One of :data:`FIT_FUNCTIONS`.
    """

    law: Any
    data: Any
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    function: str = "fit"

    def __post_init__(self) -> None:
        if self.function not in FIT_FUNCTIONS:
            raise ArgumentError(f"FitJob function {self.function!r}: must be one of {list(FIT_FUNCTIONS)}")
        if self.name is not None and not (isinstance(self.name, str) and _NAME.match(self.name)):
            raise ArgumentError(f"FitJob name {self.name!r}: must be letters, digits, '.', '_' or '-' (it names the "
                                "result's file)")
        if not isinstance(self.options, Mapping):
            raise ArgumentError(f"FitJob options must be a mapping of keyword arguments, got "
                                f"{type(self.options).__name__}")


def job_grid(laws: Sequence[Any], datasets: Mapping[str, Any], *, function: str = "fit",
             **options: Any) -> list[FitJob]:
    """One :class:`FitJob` per (law, dataset) pair, named ``<law>__<dataset>`` (characters other than letters, digits,
    ``.``, ``_`` and ``-`` replaced by ``_``), all with the same ``options``.

    ``datasets`` maps a name to a run table: datasets proper, the train parts of validation splits
    (:func:`bayescale.validation.holdout.make_splits`), or simulated replicates (for ``function="fit_batch"``, each value a
    list of tables)."""
    if not isinstance(datasets, Mapping):
        raise ArgumentError("datasets must map a name to a run table (a dict), so that each result has a name")
    jobs = []
    for law, (data_name, data) in itertools.product(laws, datasets.items()):
        law_name = law if isinstance(law, str) else getattr(law, "id", "law")
        law_name = Path(law_name).stem if isinstance(law_name, str) and law_name.endswith(".toml") else law_name
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{law_name}__{data_name}")  # a file name: "largest N" -> "largest_N"
        jobs.append(FitJob(law, data, dict(options), name=name, function=function))
    return jobs


def _run_job(job: FitJob) -> xr.DataTree:
    # runs on a worker: bayescale is imported there (which sets up JAX for that process)
    import bayescale
    from bayescale.infer.batch import fit_batch

    function = {"fit": bayescale.fit, "fit_batch": fit_batch}[job.function]
    return function(job.law, job.data, **dict(job.options))


def _as_jobs(jobs: Iterable[FitJob | Mapping[str, Any]]) -> list[FitJob]:
    if isinstance(jobs, (FitJob, Mapping, str)) or not isinstance(jobs, Iterable):
        raise ArgumentError("jobs must be a list of FitJob (or of dicts with law, data and options)")
    out = []
    for i, job in enumerate(jobs):
        if isinstance(job, Mapping):
            unknown = sorted(set(job) - {"law", "data", "options", "name", "function"})
            if unknown or "law" not in job or "data" not in job:
                raise ArgumentError(f"job {i}: a dict job needs 'law' and 'data' and may have 'options', 'name', "
                                    f"'function' (unknown: {unknown})")
            job = FitJob(**job)
        elif not isinstance(job, FitJob):
            raise ArgumentError(f"job {i}: expected a FitJob or a dict, got {type(job).__name__}")
        out.append(job)
    if not out:
        raise ArgumentError("jobs is empty: give at least one FitJob")
    names = [job.name or f"job{i:04d}" for i, job in enumerate(out)]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ArgumentError(f"job names must be unique (each names a file), repeated: {duplicated}")
    return out


def _job_failure(i: int, name: str, err: BaseException) -> BayescaleError:
    """One line naming the job; bayescale's own errors keep their type (a DataError stays a DataError)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, BayescaleError):
        try:
            return type(err)(f"job {i} ({name}): {first}")
        except TypeError:  # an error type with a different constructor
            pass
    return FitJobError(f"job {i} ({name}) failed on a worker: {type(err).__name__}: {first}")


def fit_many(
    jobs: Sequence[FitJob | Mapping[str, Any]],
    *,
    client: Any = None,
    out_dir: str | os.PathLike | None = None,
    n_workers: int | None = None,
    on_result: Callable[[int, xr.DataTree], None] | None = None,
) -> list[xr.DataTree]:
    """Run many fits on a Dask cluster and return their results in the order of ``jobs``.

    Parameters
    ----------
    jobs
        :class:`FitJob` values (or dicts of their fields), e.g. from :func:`job_grid`.
    client
        A ``dask.distributed.Client`` of a running cluster (its workers need bayescale installed and the law files
        and data paths the jobs name). ``None``: a local cluster of ``n_workers`` processes (one thread each: JAX
        uses the cores of a process itself) started for this call and closed after it. Worker processes are started
        fresh and import the calling script's main module: a script needs ``if __name__ == "__main__":`` around its
        work (as for Python's multiprocessing).
    out_dir
        A folder (created if missing) where each result is saved as ``<name>.nc`` (:func:`bayescale.save`, atomic)
        by this process as soon as it arrives, so an interrupted run loses only the fits still running. A job whose
        file is already there is not run again: its result is loaded (:func:`bayescale.load` verifies it), so a
        second call with the same jobs resumes.
    n_workers
        Processes of the local cluster (``None``: the number of cores, at most the number of jobs to run).
    on_result
        Called as ``on_result(index, result)`` for each result as it arrives (after it is saved), e.g. for progress.

    Returns
    -------
    list of xarray.DataTree
        ``result[i]`` is job ``i``'s result.

    Raises
    ------
    ArgumentError
        Malformed jobs, repeated names, a bad ``client`` or ``n_workers``.
    BayescaleError
        The first job that failed, as one line naming it: bayescale's own errors keep their type (``DataError``,
        ``LawError``, ...), others become :class:`FitJobError`. The jobs still pending are cancelled; finished ones
        are already saved.

    Examples
    --------
    >>> jobs = bs.job_grid(["hoffmann2022", "besiroglu2024"], {"a": table_a, "b": table_b},
    ...                    sampler=bs.NUTS(num_chains=2))                                  # doctest: +SKIP
    >>> results = bs.fit_many(jobs, out_dir="fits")                                       # doctest: +SKIP
    """
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - the test extra installs it
        raise ArgumentError("fit_many needs Dask distributed: pip install 'bayescale[scale]'") from None
    from bayescale.results.io import load, save

    jobs = _as_jobs(jobs)
    names = [job.name or f"job{i:04d}" for i, job in enumerate(jobs)]
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1):
        raise ArgumentError(f"n_workers must be a positive integer or None, got {n_workers!r}")
    if client is not None and not isinstance(client, Client):
        raise ArgumentError(f"client must be a dask.distributed.Client or None, got {type(client).__name__}")
    folder = None if out_dir is None else Path(out_dir)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    results: list[xr.DataTree | None] = [None] * len(jobs)
    todo = []
    for i, name in enumerate(names):
        if folder is not None and (folder / f"{name}.nc").exists():
            results[i] = load(folder / f"{name}.nc")  # done by an earlier, interrupted call
        else:
            todo.append(i)
    if not todo:
        return results  # type: ignore[return-value]

    own = client is None
    if own:
        workers = n_workers or max(1, min(os.cpu_count() or 1, len(todo)))
        try:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
        except Exception as err:  # e.g. a script without `if __name__ == "__main__":` (worker processes re-import it)
            raise FitJobError(f"could not start a local Dask cluster of {workers} processes: {err} (a script that "
                              "calls fit_many needs `if __name__ == \"__main__\":` around its work)") from None
        client = Client(cluster)
    try:
        futures = {client.submit(_run_job, jobs[i], key=f"bayescale-{names[i]}-{i}", pure=False): i
                   for i in todo}
        for future in as_completed(futures):
            i = futures[future]
            if future.status == "error":
                err = future.exception()
                for other in futures:
                    other.cancel()
                raise _job_failure(i, names[i], err) from None
            result = future.result()
            if folder is not None:
                save(result, folder / f"{names[i]}.nc")
            results[i] = result
            future.release()
            if on_result is not None:
                on_result(i, result)
    finally:
        if own:
            client.close()
            cluster.close()
    return results  # type: ignore[return-value]

