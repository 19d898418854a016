"""Declared models: what cannot be one law-file formula, stated as data with text priors.

A law file (:mod:`bayescale.laws.catalogue`) covers every closed-form law. A few models are not one formula: the hierarchical
per-token loss over model sizes (:mod:`bayescale.analyses.kaplan.pertoken`), the shape penalty with its run effects and per-variable
optima (:mod:`bayescale.analyses.kaplan.shape`), Kaplan's critical-batch hyperbolae and the implicit L(N, S_min) solve
(:mod:`bayescale.analyses.kaplan.batchsize`). Each declares itself with a :class:`DeclaredModel`: an id, its result kind, its formula
as text, a citation and its priors as prior expressions (:mod:`bayescale.laws.priors`: ``"LogNormal(log(0.25), 1)"``),
which may use the data statistics the model names (``log_B_centre``, ...). A fit function then

- resolves the priors with the user's overrides (``priors={"alpha_B": "LogNormal(log(0.2), 0.5)"}``, as
  :func:`bayescale.fit` takes them; :meth:`DeclaredModel.resolve_priors`),
- validates its table with :func:`check_table` (one error per bad column, row and value),
- and builds its result with :meth:`DeclaredModel.result` (:func:`bayescale.infer.fit.build_result` stamped with
  :meth:`DeclaredModel.attrs`: the declaration's text and hash, the prior texts, the data hash and columns, the same
  provenance as a law's result), once per fit function; a model observed on the loss (log-normal) is sampled and
  its result built by :meth:`DeclaredModel.sample`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayescale.errors import ArgumentError, DataError, LawError
from bayescale.laws.priors import Prior, parse_prior

__all__ = ["DeclaredModel", "check_result", "check_table", "posterior_draws", "table_hash"]


@dataclass(frozen=True)
class DeclaredModel:
    """A model that is not one law-file formula, declared as data.

    Parameters
    ----------
    id
        The model's id (``attrs["law_id"]`` of its results), e.g. ``"kaplan2020_per_token"``.
    result_kind
        Its key in :data:`bayescale.results.contract.RESULT_KINDS`.
    formula
        The model as text, for people and for the result's provenance.
    citation
        Where the model comes from.
    priors
        Parameter → prior expression, in the order the model samples them.
    statistics
        Data statistics the priors may use beyond :data:`bayescale.laws.priors.DATA_STATISTICS` (name → meaning); the fit
        function computes them from its table.
    """

    id: str
    result_kind: str
    formula: str
    citation: str
    priors: Mapping[str, str]
    statistics: Mapping[str, str] = field(default_factory=dict)

    def resolve_priors(self, overrides: Mapping[str, str] | None, statistics: Mapping[str, float]
                       ) -> tuple[dict[str, Prior], dict[str, Any]]:
        """The parsed priors (declared ones with ``overrides`` on top) and their numpyro distributions at the data's
        ``statistics``. As in :func:`bayescale.fit`: a :class:`~bayescale.errors.LawError` names an override of an
        unknown parameter, a ``FormulaError`` a prior that does not parse or evaluate."""
        overrides = dict(overrides or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in overrides.items()):
            raise ArgumentError(f"priors must map parameter names to prior expressions (text), got {overrides!r}")
        for name in overrides:
            if name not in self.priors:
                raise LawError(f"prior given for {name!r}, which is not a parameter of {self.id}; must be one of "
                               f"{sorted(self.priors)}")
        names = set(self.statistics)
        parsed = {k: parse_prior(overrides.get(k, text), names) for k, text in self.priors.items()}
        return parsed, {k: p.distribution(statistics) for k, p in parsed.items()}

    def source_text(self, priors: Mapping[str, Prior]) -> str:
        """The declaration as it was fitted: id, formula, citation and the prior of every parameter (TOML-like text,
        stored as the result's ``law_source`` and hashed as ``law_hash``)."""
        lines = [f'id = "{self.id}"', f'formula = "{self.formula}"', f'citation = "{self.citation}"', "", "[priors]"]
        lines += [f'{k} = "{p.text}"' for k, p in priors.items()]
        return "\n".join(lines) + "\n"

    def attrs(self, priors: Mapping[str, Prior], table: pd.DataFrame, statistics: Mapping[str, float],
              parameters: Sequence[str]) -> dict[str, Any]:
        """Provenance of a result of this model: declaration text and hash, data hash, columns and size, the data
        statistics its priors read, and the parameters :func:`bayescale.results.summary` reports."""
        text = self.source_text(priors)
        return {
            "law_id": self.id,
            "law_formula": self.formula,
            "law_citation": self.citation,
            "law_source": text,
            "law_hash": hashlib.sha256(text.encode()).hexdigest(),
            "data_hash": table_hash(table),
            "data_columns": json.dumps([str(c) for c in table.columns]),
            "n_points": int(len(table)),
            "data_statistics": json.dumps({k: float(v) for k, v in statistics.items()}),
            "parameters": json.dumps(list(parameters)),
        }

    def sample(
        self,
        model: Any,
        args: tuple,
        table: pd.DataFrame,
        *,
        rng_key: Any,
        settings: Any,
        dims: Mapping[str, list[str]],
        coords: Mapping[str, Any],
        num_prior_samples: int = 500,
        **result: Any,
    ) -> Any:
        """Sample ``model`` (observed on ``table["loss"]``, its keyword ``loss``) with NUTS and return its result: every
        group of :func:`bayescale.infer.fit.draw_groups` (posterior, predictive, log-likelihood, prior and prior
        predictive of every sampled and deterministic site) over ``point`` (the rows of ``table``), built by
        :meth:`result` (``dims``, ``coords``, ``**result``: its keywords; ``table`` is the one hashed). ``rng_key``:
        an int or a key (:func:`bayescale.infer.fit.as_key`), split into the sampler's key and that of the predictive
        and prior."""
        import jax
        import jax.numpy as jnp
        import xarray as xr

        from bayescale.infer.fit import as_key, draw_groups, run_nuts

        key, key_record = as_key(rng_key)
        k_fit, k_rest = jax.random.split(key)
        loss = jnp.asarray(table["loss"].to_numpy(float))
        mcmc = run_nuts(model, *args, rng_key=k_fit, sampler=settings, loss=loss)
        names = list(mcmc.get_samples().keys())  # sampled and deterministic sites: their prior draws too
        groups = draw_groups(model, args, mcmc, rng_key=k_rest, observed={"loss": loss}, sampled_names=names,
                             num_prior_samples=num_prior_samples)
        point = np.arange(len(table))
        return self.result(
            groups, mcmc, table=table, settings=settings, key_record=key_record,
            dims=dict(dims) | {"loss": ["point"]}, coords=dict(coords) | {"point": point},
            observed=xr.Dataset({"loss": ("point", table["loss"].to_numpy(float))}, coords={"point": point}), **result,
        )

    def result(
        self,
        groups: Mapping[str, Mapping[str, np.ndarray]],
        mcmc: Any,
        *,
        priors: Mapping[str, Prior],
        checked: Mapping[str, Any],
        table: pd.DataFrame,
        statistics: Mapping[str, float],
        dims: Mapping[str, list[str]],
        coords: Mapping[str, Any],
        observed: Any,
        constant: Any,
        settings: Any,
        key_record: Any,
        strict: bool,
        parameters: Sequence[str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        extra_groups: Mapping[str, Any] | None = None,
        vector_names: Sequence[str] = (),
    ) -> Any:
        """The result DataTree of a fit of this model: :func:`bayescale.infer.fit.build_result` with what every
        declared fit stamps, so no fit function spells it again.

        Parameters
        ----------
        groups, mcmc
            The sampled groups (:func:`bayescale.infer.fit.draw_groups`, or posterior and sample statistics only)
            and the finished run (where it ran: ``mcmc.placement``).
        priors, checked
            The parsed priors as fitted (their texts go to ``attrs["priors"]``, the declaration text to
            ``attrs["law_source"]``), and parameter → prior distribution of the parameters whose diagnostics are
            checked.
        table, statistics, parameters
            The fitted table and data statistics (hashed and recorded by :meth:`attrs`) and the parameters a summary
            reports (default: every prior's parameter).
        dims, coords, observed, constant, extra_groups, vector_names
            As in :func:`bayescale.infer.fit.build_result`.
        settings, key_record, strict
            The sampler settings, the recorded key, and whether sampler trouble raises.
        provenance
            Attrs of this fit beyond the declaration's (``n_ref``, ``L_ref``, ...); the likelihood is normal on the
            log scale for every declared model.
        """
        from bayescale.infer.fit import build_result

        return build_result(
            groups, dims=dims, coords=coords, observed=observed, constant=constant, result_kind=self.result_kind,
            provenance=self.attrs(priors, table, statistics, tuple(priors) if parameters is None else parameters)
            | {"likelihood": "normal"} | dict(provenance or {}),
            priors={k: p.text for k, p in priors.items()}, settings=settings, key_record=key_record,
            placement=mcmc.placement, start=mcmc.start_record, checked=(tuple(checked), checked),
            strict=strict, extra_groups=extra_groups,
            vector_names=vector_names,
        )


def table_hash(table: pd.DataFrame) -> str:
    """SHA-256 of a table's values (row order matters, the index does not)."""
    return hashlib.sha256(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes()).hexdigest()


def check_table(
    data: Any,
    what: str,
    *,
    numeric: Sequence[str],
    labels: Sequence[str] = (),
    constant_within: tuple[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """The one table check of the declared models: ``data`` must be a DataFrame with rows and the columns
    ``labels`` (any values) and ``numeric`` (finite numbers > 0); ``constant_within = (group, columns)``: each of
    ``columns`` takes one value within each ``group`` (a run's size, a model's N).

    Returns the table with those columns (in that order), numbers as float, index reset. Raises ``TypeError`` for a
    non-DataFrame and :class:`~bayescale.errors.DataError` naming the column, the row (the caller's index label) and
    the value otherwise.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(data).__name__}")
    columns = [*labels, *numeric]
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise DataError(f"{what} lack column(s) {missing}; columns must include {columns}")
    if len(data) == 0:
        raise DataError(f"{what} have no rows")
    table = data[columns].copy()
    for col in numeric:
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
        if bad.size:
            value = data[col].iloc[bad[0]]
            value = value.item() if isinstance(value, np.generic) else value  # -1.0, not np.float64(-1.0)
            raise DataError(f"column {col!r}, row {data.index[bad[0]]}: expected a finite number > 0, got {value!r}")
        table[col] = values
    table = table.reset_index(drop=True)
    if constant_within is not None:
        group, cols = constant_within
        per_group = table.groupby(group, sort=False)
        for col in cols:
            varies = per_group[col].nunique() > 1
            if varies.any():
                raise DataError(f"column {col!r}: {group} {varies.index[varies][0]!r} has several values; it must be "
                                f"constant within a {group}")
    return table




def check_result(result: Any, model_id: str) -> None:
    """``ValueError`` unless ``result`` is a result of the declared model ``model_id`` (its read-outs call this)."""
    import xarray as xr

    if not isinstance(result, xr.DataTree) or result.attrs.get("law_id") != model_id:
        got = result.attrs.get("law_id") if isinstance(result, xr.DataTree) else type(result).__name__
        raise ValueError(f"expected a result of the {model_id!r} fit, got {got!r}")


def posterior_draws(result: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Posterior draws of ``names`` flattened over (chain, draw), keeping any further dimensions; ``ValueError``
    naming the missing ones."""
    post = result["posterior"].to_dataset()
    missing = [n for n in names if n not in post]
    if missing:
        raise ValueError(f"result has no posterior for {missing}; is it a result of the right fit function?")
    return {n: post[n].values.reshape(post.sizes["chain"] * post.sizes["draw"], *post[n].shape[2:]) for n in names}
