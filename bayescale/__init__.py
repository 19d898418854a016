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
from bayescale.diagnostics import ConvergenceWarning, SamplingError, SamplingWarning, convergence  # noqa: E402
from bayescale.inference import fit  # noqa: E402
from bayescale.settings import NUTS  # noqa: E402
from bayescale.laws import Law, list_laws, load_law  # noqa: E402
from bayescale.results import load, provenance, save  # noqa: E402
from bayescale._formula import FormulaError  # noqa: E402
from bayescale.checks import check_coverage, check_reference  # noqa: E402
from bayescale.extrapolation import ExtrapolationWarning, extrapolation  # noqa: E402
from bayescale.planning import (  # noqa: E402
    budget_for_target,
    compare_fits,
    compute_optimal,
    loss_at,
    near_optimal_region,
    plan,
    prob_below,
)
from bayescale.design import rank_next_experiments  # noqa: E402
from bayescale.plots import plot_ppc  # noqa: E402
from bayescale.predict import predict  # noqa: E402
from bayescale.report import write_report  # noqa: E402
from bayescale.summary import describe, summary  # noqa: E402
from bayescale.baseline import fit_baseline  # noqa: E402
from bayescale.calibration import check_calibration  # noqa: E402
from bayescale.comparison import compare_laws, loo, predict_averaged, stacking_weights  # noqa: E402
from bayescale.validation import LawValidation, plot_validation, validate, validate_laws  # noqa: E402
from bayescale.batch import fit_batch  # noqa: E402
from bayescale.scaleout import FitJob, fit_many, job_grid  # noqa: E402  (Dask is imported only by fit_many)
from bayescale.batchsize import (  # noqa: E402
    compute_frontier,
    fit_critical_batch,
    fit_loss_steps,
    simulate_batch_scan,
    steps_to_loss,
)
from bayescale.downstream import predict_chained  # noqa: E402
from bayescale.pertoken import (  # noqa: E402
    fit_per_token,
    fit_per_token_steps,
    predict_per_token,
    predict_per_token_steps,
    simulate_per_token,
    simulate_per_token_steps,
)
from bayescale.shape import (  # noqa: E402
    compute_equivalent,
    fit_shape,
    flat_region_probability,
    read_gemstones,
    shape_summary,
    simulate_shape,
)
from bayescale.schedules import (  # noqa: E402
    fit_schedule,
    load_schedule_law,
    lr_schedule,
    predict_schedule,
    schedule_from_array,
    simulate_schedule_curves,
)

__version__ = "0.1.0"

__all__ = [
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
    "check_coverage",
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
    "predict_chained",
    "prob_below",
    "provenance",
    "rank_next_experiments",
    "save",
    "summary",
    "validate",
    "validate_laws",
    "LawValidation",
    "stacking_weights",
    "compute_frontier",
    "fit_critical_batch",
    "fit_loss_steps",
    "simulate_batch_scan",
    "steps_to_loss",
    "write_report",
    # loss curves under learning-rate schedules (Luo et al. 2025, Tissue et al. 2024)
    "fit_schedule",
    "load_schedule_law",
    "lr_schedule",
    "predict_schedule",
    "schedule_from_array",
    "simulate_schedule_curves",
    # per-token loss and shape sensitivity (Kaplan et al. 2020, Fig. 20 and Fig. 5)
    "compute_equivalent",
    "fit_per_token",
    "fit_per_token_steps",
    "fit_shape",
    "flat_region_probability",
    "predict_per_token",
    "predict_per_token_steps",
    "read_gemstones",
    "shape_summary",
    "simulate_per_token",
    "simulate_per_token_steps",
    "simulate_shape",
]
