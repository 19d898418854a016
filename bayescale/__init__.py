"""bayescale: Bayesian inference of neural scaling laws.

Pipeline: run table → :func:`load_runs` → :func:`load_law` → :func:`fit` (NUTS) → ``xarray.DataTree`` →
:func:`summary`, :func:`predict`, :func:`check_coverage`, :func:`plot_ppc`, :func:`compute_optimal`.

Importing bayescale configures JAX for the process (:mod:`bayescale._runtime`): float64, CPU host devices so chains
run in parallel, and a persistent compilation cache; each can be overridden from the environment.
"""

from bayescale import _runtime

_runtime.configure()

from bayescale.errors import (  # noqa: E402
    ArgumentError,
    BayescaleError,
    ConvergenceError,
    DataError,
    FileError,
    LawError,
    ResultError,
)
from bayescale.data import FewPointsWarning, UnusualDataWarning, load_runs  # noqa: E402
from bayescale.infer.diagnostics import ConvergenceWarning, SamplingError, SamplingWarning, convergence  # noqa: E402
from bayescale.infer.fit import fit  # noqa: E402
from bayescale.infer.settings import NUTS  # noqa: E402
from bayescale.laws.catalogue import Law, list_laws, load_law  # noqa: E402
from bayescale.results.io import load, provenance, save  # noqa: E402
from bayescale.laws.formula import FormulaError  # noqa: E402
from bayescale.results.checks import check_coverage, check_reference, check_residuals  # noqa: E402
from bayescale.results.extrapolation import ExtrapolationWarning, extrapolation  # noqa: E402
from bayescale.planning.optimum import (  # noqa: E402
    budget_for_target,
    compare_fits,
    compute_optimal,
    loss_at,
    near_optimal_region,
    plan,
    prob_below,
)
from bayescale.planning.design import rank_next_experiments  # noqa: E402
from bayescale.results.plots import plot_ppc  # noqa: E402
from bayescale.results.predict import predict  # noqa: E402
from bayescale.report import write_report  # noqa: E402
from bayescale.results.summary import describe, summary  # noqa: E402
from bayescale.validation.baseline import fit_baseline  # noqa: E402
from bayescale.validation.calibration import check_calibration, check_calibration_fit  # noqa: E402
from bayescale.validation.comparison import compare_laws, loo, predict_averaged, stacking_weights  # noqa: E402
from bayescale.validation.holdout import LawValidation, plot_validation, validate, validate_laws  # noqa: E402
from bayescale.infer.batch import fit_batch, select_fit  # noqa: E402
from bayescale.infer.scaleout import FitJob, fit_many, job_grid  # noqa: E402  (Dask is imported only by fit_many)

from bayescale.analyses import downstream, kaplan, schedules  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "downstream",
    "kaplan",
    "schedules",
    # errors (bayescale.errors) and warnings
    "ArgumentError",
    "BayescaleError",
    "ConvergenceError",
    "ConvergenceWarning",
    "FileError",
    "NUTS",
    "ResultError",
    "UnusualDataWarning",
    "convergence",
    "DataError",
    "FewPointsWarning",
    "ExtrapolationWarning",
    "FormulaError",
    "Law",
    "LawError",
    "SamplingError",
    "SamplingWarning",
    "check_calibration",
    "check_calibration_fit",
    "check_coverage",
    "check_residuals",
    "budget_for_target",
    "check_reference",
    "compare_fits",
    "compare_laws",
    "compute_optimal",
    "describe",
    "extrapolation",
    "fit",
    "fit_baseline",
    "fit_batch",
    "select_fit",
    "fit_many",
    "FitJob",
    "job_grid",
    "list_laws",
    "load",
    "load_law",
    "load_runs",
    "loo",
    "loss_at",
    "near_optimal_region",
    "plan",
    "plot_ppc",
    "plot_validation",
    "predict_averaged",
    "predict",
    "prob_below",
    "provenance",
    "rank_next_experiments",
    "save",
    "summary",
    "validate",
    "validate_laws",
    "LawValidation",
    "stacking_weights",
    "write_report",
    # loss curves under learning-rate schedules (Luo et al. 2025, Tissue et al. 2024)
    # per-token loss and shape sensitivity (Kaplan et al. 2020, Fig. 20 and Fig. 5)
]
