"""Shared fixtures.

The expensive fits (:mod:`tests.fits`: the golden Chinchilla fit and one fit of each special model) are built once per
test session, whichever xdist worker asks first, and loaded from the session's temporary folder by every other test
file and worker (:func:`shared_fit`). XLA's compiled programs go to a temporary cache of this session, not the user's
``~/.cache/bayescale``, so a run neither depends on nor leaves behind an earlier run's programs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# before bayescale (and JAX) are imported: one compilation cache per test session, shared by its xdist workers
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
os.environ["BAYESCALE_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"bayescale-tests-{_RUN}" / "jax")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402

import bayescale as bs  # noqa: E402
import jax  # noqa: E402

# every program into the session's cache, however quick to compile (bayescale's default keeps only those over
# bayescale._runtime.CACHE_MIN_COMPILE_SECONDS): the small programs one worker compiled, the other loads, and so does
# a worker whose in-memory caches bayescale.infer.fit.release_compiled cleared
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@pytest.fixture(scope="session")
def shared_fit(tmp_path_factory, worker_id):
    """``shared_fit(name)``: the fit ``name`` of :data:`tests.fits.FITS`, built once per session across workers."""
    from tests.fits import FITS

    root = tmp_path_factory.getbasetemp()
    root = root if worker_id == "master" else root.parent  # the folder all workers of this session share
    # BAYESCALE_TEST_FITS: a folder kept between runs, for quick iteration on a test (never set by make test or CI)
    folder = Path(os.environ.get("BAYESCALE_TEST_FITS") or root / "shared-fits")
    folder.mkdir(parents=True, exist_ok=True)
    memo: dict[str, object] = {}

    def get(name: str):
        if name not in FITS:
            raise KeyError(f"no shared fit {name!r}; must be one of {sorted(FITS)}")
        if name not in memo:
            path = folder / f"{name}.nc"
            with FileLock(str(path) + ".lock"):
                if path.is_file():
                    memo[name] = bs.load(path)
                else:
                    memo[name] = FITS[name]()
                    bs.save(memo[name], path)
        return memo[name]

    return get


@pytest.fixture(scope="session")
def chinchilla_fit(shared_fit):
    """The golden fit: hoffmann2022 on Besiroglu et al.'s 240 points, 4 chains x 1000 warmup + 1000 draws."""
    return shared_fit("chinchilla")


def simulate_table(law_id: str, truth: dict, *, sigma: float = 0.01, seed: int = 0, n_sizes: int = 6, n_tokens: int = 6):
    """Losses from a law at known constants on a (N x D) grid, with log-normal noise of scale ``sigma``."""
    law = bs.load_law(law_id)
    rng = np.random.default_rng(seed)
    if len(law.input_names) == 1:  # as many points along the one axis as the two-input grid has in all
        n_sizes = n_tokens = n_sizes * n_tokens
    grid = {"N": np.geomspace(5e7, 5e9, n_sizes), "D": np.geomspace(1e9, 1e11, n_tokens)}
    mesh = np.meshgrid(*(grid[n] for n in law.input_names), indexing="ij")
    inputs = {n: m.ravel() for n, m in zip(law.input_names, mesh)}
    mean = np.asarray(law.predict(truth, **inputs))
    loss = mean * np.exp(sigma * rng.standard_normal(mean.size))
    return pd.DataFrame({**inputs, "loss": loss})


#: The test files that take longest (seconds of test time, one run on the project's 2-core development machine,
#: 2026-11-30), most first.
#: ``make test`` hands whole files to its two workers in collection order (``--dist loadfile``), each worker taking the
#: next file when it finishes one; starting with the longest and ending with the short ones keeps the two from
#: finishing far apart (longest-first scheduling). Files not listed keep their order, after these.
LONGEST_FILES = ("test_contract", "test_calibration", "test_schedules", "test_recovery", "test_cli_and_examples",
                 "test_lr_bs", "test_downstream", "test_trust", "test_validation", "test_compare", "test_runtime",
                 "test_noise", "test_scaleout", "test_real_curves", "test_batch", "test_law_catalogue",
                 "test_targets", "test_diagnostics", "test_batchsize", "test_pertoken")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # a stable sort: each file keeps its own order
