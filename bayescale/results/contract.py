"""The result contract: what kind of result a DataTree is, and which read-outs apply to it.

Every fit function stamps ``attrs["result_kind"]`` on its result, one of :data:`RESULT_KINDS`. Each kind lists the
generic read-outs it supports (:data:`READOUTS`); a read-out first calls :func:`require`, which either passes or
raises one :class:`ResultError` that names the kind, what it lacks and what to use instead (spelled as the public
API, ``bs`` being ``import bayescale as bs``). So every read-out works
on every result or says clearly why not, and the knowledge of "which result supports what" lives here only.

Results written before ``result_kind`` existed are recognised from their older attributes (``schedule_law``,
``kind``, ``law_id``, ``inference``, ``batch_fit``), so old files keep loading and reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import xarray as xr

from bayescale.errors import ResultError

__all__ = ["READOUTS", "RESULT_KINDS", "ResultError", "ResultKind", "observed_name", "require", "require_group", "result_kind",
           "run_labels"]

#: The generic read-outs of a result.
READOUTS = ("summary", "predict", "plot_ppc", "loo", "check_coverage", "check_residuals", "check_reference", "plan",
            "report", "save")


@dataclass(frozen=True)
class ResultKind:
    """A kind of result: what made it, which read-outs it supports, and what to use for the others."""

    name: str
    made_by: str
    readouts: frozenset[str]
    instead: Mapping[str, str] = field(default_factory=dict)


_ALL = frozenset(READOUTS)
_POSTERIOR_ONLY = frozenset({"summary", "predict", "check_reference", "plan", "save"})
_MODEL = frozenset({"summary", "loo", "check_coverage", "check_residuals", "check_reference", "save"})

def _model_kind(name: str, made_by: str, *, predict: str, figure: str, plan: str, report: str | None = None
                ) -> ResultKind:
    """A kind of result of a model that is not a law of (N, D) with per-point groups (the :data:`_MODEL` read-outs):
    its own prediction, figure (in place of the PPC plot, and of the report unless ``report`` names another) and
    planning function."""
    return ResultKind(name, made_by, _MODEL,
                      {"predict": predict, "plot_ppc": figure, "plan": plan, "report": report or figure})


#: Every kind of result bayescale makes.
RESULT_KINDS: dict[str, ResultKind] = {
    k.name: k
    for k in (
        ResultKind("law", "bayescale.fit (a law file or a Python-function law)", _ALL),
        ResultKind(
            "law_batch",
            "bayescale.fit_batch (one law fitted to many tables in one vectorised run)",
            frozenset({"save"}),
            {r: "bs.select_fit(result, i) for fit i (its posterior), or fit_diagnostics for all fits"
             for r in READOUTS if r != "save"},
        ),
        ResultKind(
            "law_batch_member",
            "bs.select_fit (one fit of a fit_batch; posterior only)",
            _POSTERIOR_ONLY,
            {r: "bayescale.fit on that table (a batch member keeps no per-point groups)"
             for r in ("plot_ppc", "loo", "check_coverage", "check_residuals", "report")},
        ),
        ResultKind(
            "baseline",
            "bayescale.fit_baseline (Huber/L-BFGS fit with a bootstrap over runs)",
            _POSTERIOR_ONLY,
            {r: "a Bayesian fit (bayescale.fit): a bootstrap has no predictive distribution"
             for r in ("plot_ppc", "loo", "check_coverage", "check_residuals", "report")},
        ),
        _model_kind("per_token", "bs.kaplan.fit_per_token (hierarchical per-token loss over model sizes)",
                    predict="bs.kaplan.predict_per_token", figure="bs.kaplan.plot_per_token",
                    plan="a fit of a law of (N, D)"),
        _model_kind("shape", "bs.kaplan.fit_shape (L(N, D) with a shape penalty)",
                    predict="bs.kaplan.shape_summary / compute_equivalent", figure="bs.kaplan.plot_shape",
                    plan="bs.kaplan.compute_equivalent"),
        _model_kind("critical_batch", "bs.kaplan.fit_critical_batch (Kaplan's batch-size hyperbolae)",
                    predict="the posterior of B_crit over cells (result['posterior']['B_crit'])",
                    figure="bs.kaplan.plot_hyperbolae / plot_critical_batch",
                    plan="bs.kaplan.fit_loss_steps + compute_frontier", report="bs.kaplan.plot_critical_batch"),
        ResultKind(
            "loss_steps",
            "bs.kaplan.fit_loss_steps (L(N, S_min) with the implicit batch adjustment)",
            frozenset({"summary", "check_reference", "save"}),
            {"predict": "bs.kaplan.solve_loss on the posterior draws",
             "plot_ppc": "bs.kaplan.plot_frontier", "plan": "bs.kaplan.compute_frontier",
             "loo": "an exact refit (its likelihood is on log loss of a solved implicit equation; no pointwise group)",
             "check_coverage": "bs.kaplan.plot_frontier (no posterior predictive group)",
             "check_residuals": "bs.kaplan.plot_frontier (no posterior predictive group)",
             "report": "bs.kaplan.plot_frontier"},
        ),
        _model_kind("schedule_law", "bs.schedules.fit_schedule (loss over a learning-rate schedule)",
                    predict="bs.schedules.predict_schedule", figure="bs.schedules.predict_schedule",
                    plan="a fit of a law of (N, D)"),
    )
}

_LEGACY_LAW_IDS = {
    "kaplan2020_per_token": "per_token",
    "kaplan2020_shape": "shape",
    "kaplan2020_critical_batch": "critical_batch",
    "kaplan2020_loss_steps": "loss_steps",
}


def result_kind(result: Any) -> str:
    """The kind of a result (a key of :data:`RESULT_KINDS`); :class:`ResultError` if it is not a bayescale result."""
    if not isinstance(result, xr.DataTree):
        raise ResultError(f"expected a bayescale result (xarray.DataTree from a fit or bayescale.load), got "
                          f"{type(result).__name__}")
    attrs = result.attrs
    if "result_kind" in attrs:
        kind = str(attrs["result_kind"])
        if kind not in RESULT_KINDS:
            raise ResultError(f"result_kind {kind!r}: must be one of {sorted(RESULT_KINDS)}")
        return kind
    if "schedule_law" in attrs:
        return "schedule_law"
    if attrs.get("kind") in RESULT_KINDS:
        return str(attrs["kind"])
    if attrs.get("law_id") in _LEGACY_LAW_IDS:
        return _LEGACY_LAW_IDS[attrs["law_id"]]
    if attrs.get("inference") == "huber_bootstrap":
        return "baseline"
    if "batch_fit" in attrs:
        return "law_batch_member"
    if "data_hashes" in attrs:
        return "law_batch"
    if "law_id" in attrs and "posterior" in result.children:
        return "law"
    raise ResultError("this DataTree is not a bayescale result (no 'result_kind' or 'law_id' attribute and no "
                      "posterior)")


def require(result: Any, readout: str, groups: tuple[str, ...] = ()) -> str:
    """Check that ``readout`` applies to ``result`` and that it has ``groups``; return the result's kind.

    Raises :class:`ResultError` naming the kind, what is missing and what to use instead.
    """
    if readout not in READOUTS:
        raise ValueError(f"readout {readout!r}: must be one of {list(READOUTS)}")
    kind = result_kind(result)
    spec = RESULT_KINDS[kind]
    if readout not in spec.readouts:
        hint = spec.instead.get(readout)
        raise ResultError(f"{readout} does not apply to a {kind!r} result (made by {spec.made_by})"
                          + (f"; use {hint}" if hint else ""))
    for group in groups:
        require_group(result, group, readout, kind)
    return kind


def require_group(result: xr.DataTree, group: str, needed_by: str, kind: str | None = None) -> xr.Dataset:
    """The group ``group`` of a result, or one :class:`ResultError` naming ``needed_by``, the group and the result's
    kind (a bootstrap baseline, ``fit(..., pointwise=False)`` and a batch member lack the per-point groups)."""
    if group not in result.children:
        kind = kind or result_kind(result)
        raise ResultError(f"{needed_by} needs the result's {group!r} group, which this {kind!r} result does not have"
                          + ("; refit with bayescale.fit(..., pointwise=True)" if kind == "law" else ""))
    return result[group].to_dataset()


def observed_name(result: xr.DataTree) -> str:
    """The observed variable of a result: ``loss`` for laws, or the one variable its ``observed_data`` holds (e.g.
    ``log_S``, steps to a loss level, for the critical-batch fit)."""
    obs = result["observed_data"].to_dataset()
    if "loss" in obs:
        return "loss"
    names = [n for n in obs.data_vars if n != "run"]
    if len(names) != 1:
        raise ResultError(f"observed_data holds {names}; expected one observed variable")
    return str(names[0])


def run_labels(result: xr.DataTree) -> Any:
    """The run of every observed point (checkpoints of one run share a label), or ``None`` when the result records
    none (then every point is its own unit). Read from ``observed_data["run"]``, or the per-point run labels that
    schedule-law (``point_run``), shape (``run_of_point``), per-token (``model_of_point``: one curve per model) and
    critical-batch (``constant_data["run"]``) results keep."""
    for group, name in (("observed_data", "run"), ("observed_data", "point_run"), ("constant_data", "run_of_point"),
                        ("constant_data", "model_of_point"), ("constant_data", "run")):
        if group in result.children and name in result[group].to_dataset():
            values = result[group].to_dataset()[name]
            if values.dims == ("point",):
                return values.values
    return None
