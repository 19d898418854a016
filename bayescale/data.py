"""Run table → validated :class:`xarray.Dataset`.

This is the boundary of the pipeline: every check on user data happens here (and in :func:`check_identifiable`,
called by :func:`bayescale.fit` once the law is known), never inside ``jit``. Each error names the column, the rows
(0-based positions in the table, header excluded) and what was expected.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.errors import DataError

__all__ = ["load_runs", "DataError", "FewPointsWarning", "ALIASES", "check_identifiable", "check_target",
           "plausibility_problems", "UnusualDataWarning", "LOSS_UNITS"]


class UnusualDataWarning(UserWarning):
    """Data outside the plausible ranges of :func:`plausibility_problems`, accepted with ``allow_unusual=True``."""


class FewPointsWarning(UserWarning):
    """No more points than parameters: the fit runs, and its posterior leans on the priors."""


#: Canonical variable → (description, column names recognised without a mapping).
ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "N": ("parameters", ("N", "N_params", "params", "n_params", "parameters", "model_size", "Model Size")),
    "D": ("training tokens", ("D", "D_tokens", "tokens", "n_tokens", "train_tokens")),
    "loss": ("loss in nats/token", ("loss", "Loss", "final_loss", "val_loss", "eval_loss")),
    "run": ("run identifier", ("run", "run_id", "run_name")),
    "batch_size": ("batch size", ("batch_size", "bs")),
    "T_m": ("maximum loop steps", ("T_m", "Tm", "loops")),
    "seed": ("random seed", ("seed",)),
    "step": ("optimizer step", ("step", "steps")),
}

# Plausibility bounds for units (docs/errors.md has the survey of public tables behind each number).
# Largest value of a column below these: almost surely given in thousands/millions/billions. The smallest "largest
# model" of the public tables surveyed is 1.1e8 parameters (Gemstones 512x), and real studies with 1e6-parameter
# models exist (Porian et al. 2024 start at 3.3e5), so the floor sits at 1e5: Chinchilla's largest model written in
# millions (16,183) is below it.
_UNIT_FLOORS = {"N": 1e5, "D": 1e5}
# Any value above these is no language model: the largest trained have ~2e12 parameters and ~4e13 tokens (2025).
_UNIT_CEILINGS = {"N": 1e14, "D": 1e16}
# D/N: every public table surveyed has D >= N in at least 79% of its rows (Porian's isoFLOP sweeps, which include
# models far too big for their budget, are the lowest) and a median D/N between 8 and 1.8e3; a median above 1e5 is
# beyond any over-trained model (Qwen3-0.6B: 36T tokens, D/N = 6e4).
_SWAP_SHARE = 0.5
_RATIO_CEILING = 1e5
# A loss above 20 nats/token is worse than uniform over a 4.8e8-token vocabulary: it is a perplexity or in bits.
_LOSS_CEILING = 20.0
# Every loss above 4.5 nats: no public table surveyed has its best loss above 3.1 nats, while a perplexity table has
# its best value at exp(best loss) >= exp(1.5) = 4.5 for any language model of text (losses >= 1.5 nats).
_LOSS_FLOOR_OF_BEST = 4.5
# Column names that give away the unit of the loss.
_LOSS_NAME_HINTS = {"perplexity": ("ppl", "perplexity"), "bits": ("bits", "bpb", "bpc", "bpt", "bit_per", "bits_per")}
#: Units ``load_runs(loss_unit=...)`` converts to nats per token: nats (as is), bits (× ln 2), perplexity (log).
LOSS_UNITS = ("nats", "bits", "perplexity")

_MAX_ROWS_SHOWN = 8


def _rows(index: np.ndarray) -> str:
    idx = [int(i) for i in index]
    shown = ", ".join(map(str, idx[:_MAX_ROWS_SHOWN]))
    more = f", … ({len(idx) - _MAX_ROWS_SHOWN} more)" if len(idx) > _MAX_ROWS_SHOWN else ""
    return f"rows [{shown}{more}]"


def _read_table(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True)
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            raise DataError(f"run table {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            try:
                return pd.read_parquet(path)
            except Exception as err:  # pyarrow's ArrowInvalid, OSError...: a damaged or non-Parquet file
                raise DataError(f"cannot read {str(path)!r} as Parquet (damaged or not a Parquet file): "
                                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
        if suffix in (".csv", ".txt", ".tsv"):
            try:
                return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
            except pd.errors.EmptyDataError:
                raise DataError(f"run table {str(path)!r} is empty (no header, no rows)") from None
            except (pd.errors.ParserError, UnicodeDecodeError) as err:
                raise DataError(f"cannot read {str(path)!r} as a table of comma/tab-separated text: "
                                f"{str(err).splitlines()[0]}") from None
        raise DataError(
            f"cannot read {str(path)!r}: the suffix must be one of ['.csv', '.tsv', '.txt', '.parquet', '.pq']"
        )
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except ValueError as err:  # e.g. columns of different lengths
            raise DataError(f"cannot make a table of the dict of columns {list(data)}: {err}") from None
    raise DataError(f"run table must be a pandas DataFrame, a dict of columns or a CSV/Parquet path, got {type(data).__name__}")


def _resolve_columns(df: pd.DataFrame, columns: Mapping[str, str], required: tuple[str, ...]) -> dict[str, str]:
    """Map canonical names to table columns: explicit ``columns`` first, then the aliases."""
    mapping: dict[str, str] = {}
    for canonical, column in columns.items():
        if column not in df.columns:
            raise DataError(f"columns={{{canonical!r}: {column!r}}}: no column {column!r}; the table has {list(df.columns)}")
        mapping[canonical] = column
    for canonical, (_, aliases) in ALIASES.items():
        if canonical in mapping:
            continue
        found = [a for a in aliases if a in df.columns and a not in mapping.values()]
        if found:
            mapping[canonical] = found[0]
    for r in required:  # a law input outside ALIASES (say "C") is found under its own name
        if r not in mapping and r in df.columns and r not in mapping.values():
            mapping[r] = r
    missing = [r for r in required if r not in mapping]
    if missing:
        msgs = []
        for r in missing:
            desc, aliases = ALIASES.get(r, (r, (r,)))
            msgs.append(f"missing column for {r!r} ({desc}): none of {list(aliases)} is in the table")
        raise DataError(
            "; ".join(msgs) + f". The table has {list(df.columns)}; pass columns={{'{missing[0]}': '<your column>'}}"
        )
    return mapping


def _numeric(df: pd.DataFrame, canonical: str, column: str) -> np.ndarray:
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        examples = ", ".join(repr(v) for v in raw[bad].head(3))
        raise DataError(f"column {column!r} ({canonical}) must be numeric: {_rows(np.flatnonzero(bad))} hold {examples}")
    values = values.to_numpy(dtype=float)
    nonfinite = ~np.isfinite(values)
    if nonfinite.any():
        raise DataError(f"column {column!r} ({canonical}) has NaN or infinite values at {_rows(np.flatnonzero(nonfinite))}")
    return values


def load_runs(
    data: Any,
    *,
    columns: Mapping[str, str] | None = None,
    inputs: tuple[str, ...] | list[str] = ("N", "D"),
    nonnegative: tuple[str, ...] | list[str] = (),
    check_units: bool = True,
    source: str | None = None,
    allow_unusual: bool = False,
    loss_unit: str = "nats",
    target: str = "loss",
) -> xr.Dataset:
    """Validate a run table and return it as an :class:`xarray.Dataset` over the dimension ``point``.

    One row is one run (a final loss) or one checkpoint of a run; rows of the same run share a ``run`` value.

    Parameters
    ----------
    data
        A :class:`pandas.DataFrame`, a dict of columns, or a path to a CSV or Parquet file.
    columns
        Map from the canonical names (``N``, ``D``, ``loss``, ``run``, ``batch_size``, ``T_m``, ``seed``, ``step``
        or any law input) to the table's column names. Columns named as in :data:`ALIASES` are found without it.
    inputs
        Law inputs that must be present. All must be numeric, finite and > 0 (or >= 0 if named in ``nonnegative``).
    nonnegative
        Inputs that may be 0 (e.g. tokens seen at the start of a curve, for laws with an offset).
    check_units
        Check magnitudes against what real runs look like (:func:`plausibility_problems`: parameters or tokens in
        millions, N and D swapped, values no language model has, a perplexity or a loss in bits). Set False for toy
        data, where none of these rules apply.
    source
        Free text recorded in the dataset's attrs (file name by default).
    allow_unusual
        Unusual but real data: the plausibility problems warn (:class:`UnusualDataWarning`) and are recorded in
        ``attrs["unusual"]`` instead of raising.
    loss_unit
        Unit of the loss column, one of :data:`LOSS_UNITS`: ``"bits"`` is multiplied by ln 2, ``"perplexity"`` is
        logged, so the model always sees nats per token.
    target
        Kind of the target column (mapped to ``loss``), as a law file's ``[target]`` declares it
        (:data:`bayescale.laws.catalogue.TARGET_KINDS`): ``"loss"`` (> 0, nats/token), ``"real"`` (any finite number, e.g. a
        unigram-normalised loss), ``"unit_interval"`` (strictly between 0 and 1, e.g. accuracy).

    Returns
    -------
    xarray.Dataset
        Variables ``loss`` and each input over ``point``; coordinate ``run``; attrs ``data_hash`` (sha256 of the
        validated values) and ``source``.

    Raises
    ------
    DataError
        Missing column, non-numeric value, NaN/inf, non-positive input or loss, duplicate rows, implausible units.
    """
    columns = dict(columns or {})
    if isinstance(data, (str, os.PathLike)) and source is None:
        source = Path(data).name
    df = _read_table(data)
    if len(df) == 0:
        raise DataError("the run table has no rows")
    inputs = tuple(inputs)
    mapping = _resolve_columns(df, columns, (*inputs, "loss"))
    values: dict[str, np.ndarray] = {}
    numeric_names = [n for n in mapping if n != "run"]
    for name in numeric_names:
        values[name] = _numeric(df, name, mapping[name])
    check_target(values["loss"], target, mapping["loss"])
    for name in inputs:
        v = values[name]
        bad = v < 0 if name in nonnegative else v <= 0
        if bad.any():
            rel = ">= 0" if name in nonnegative else "> 0"
            examples = ", ".join(f"{x:g}" for x in v[bad][:3])
            raise DataError(f"column {mapping[name]!r} ({name}) must be {rel}: {_rows(np.flatnonzero(bad))} hold {examples}")
    if loss_unit not in LOSS_UNITS:
        raise DataError(f"loss_unit {loss_unit!r}: must be one of {list(LOSS_UNITS)}")
    values["loss"] = _loss_in_nats(values["loss"], loss_unit, mapping["loss"])
    if "run" in mapping:
        run = df[mapping["run"]].astype(str).to_numpy()
        if df[mapping["run"]].isna().any():
            raise DataError(f"column {mapping['run']!r} (run) is empty at {_rows(np.flatnonzero(df[mapping['run']].isna()))}")
    else:
        run = np.array([f"row{i}" for i in range(len(df))])
    unusual: list[str] = []
    if check_units:
        unusual = plausibility_problems(values, mapping, loss_unit=loss_unit, target=target,
                                        run=run if "run" in mapping else None)
        _report_unusual(unusual, allow_unusual)
    # A duplicate is a row that repeats an earlier one in every mapped column: same run, same inputs, same loss
    # (repeated seeds at the same (N, D) with different losses are legitimate and kept). Without a run column the
    # generated names row0, row1, ... are unique and must not take part, or no row would ever be a duplicate.
    key = pd.DataFrame({**({"run": run} if "run" in mapping else {}), **{k: values[k] for k in numeric_names}})
    dup = key.duplicated(keep="first").to_numpy()
    if dup.any():
        first = key.duplicated(keep=False).to_numpy() & ~dup
        raise DataError(
            f"duplicate rows: {_rows(np.flatnonzero(dup))} repeat earlier {_rows(np.flatnonzero(first))} in every "
            f"column ({', '.join(mapping[k] for k in ['run', *numeric_names] if k in mapping)}); drop them or add a run/seed column"
        )
    h = hashlib.sha256()
    for name in sorted(values):
        h.update(name.encode())
        h.update(np.ascontiguousarray(values[name], dtype=np.float64).tobytes())
    h.update("\x00".join(run).encode())
    ds = xr.Dataset(
        {name: ("point", v) for name, v in values.items()},
        coords={"point": np.arange(len(df)), "run": ("point", run.astype(str))},
        attrs={
            "data_hash": h.hexdigest(),
            "source": source or "in-memory table",
            "columns": ", ".join(f"{k}={v}" for k, v in mapping.items()),
            **({"loss_unit": loss_unit} if loss_unit != "nats" else {}),
            **({"unusual": "; ".join(unusual)} if unusual else {}),
            "target": target,
        },
    )
    for name in values:
        ds[name].attrs["description"] = ALIASES.get(name, (name,))[0]
        ds[name].attrs["column"] = mapping[name]
    return ds


def _loss_in_nats(loss: np.ndarray, unit: str, column: str) -> np.ndarray:
    if unit == "bits":
        return loss * np.log(2.0)
    if unit == "perplexity":
        if np.any(loss < 1):
            rows = np.flatnonzero(loss < 1)
            raise DataError(f"column {column!r} (loss) is declared a perplexity but {_rows(rows)} are below 1, "
                            "which no perplexity is")
        return np.log(loss)
    return loss


def plausibility_problems(values: Mapping[str, np.ndarray], mapping: Mapping[str, str] | None = None, *,
                          loss_unit: str = "nats", target: str = "loss", run: np.ndarray | None = None) -> list[str]:
    """What in a run table looks like wrong units or swapped columns, as one sentence per problem (empty: none).

    The rules (their numbers come from a survey of public tables, docs/errors.md):

    - ``N`` (parameters) or ``D`` (tokens) whose largest value is below 1e5: given in millions or billions;
    - any ``N`` above 1e14 or ``D`` above 1e16: no language model is that large (scaled or wrong units);
    - ``D < N`` in more than half the rows: N and D swapped, or D in millions/billions of tokens;
    - median ``D/N`` above 1e5: N in millions/billions (or D in thousands);
    - a loss above 20 (worse than uniform over any vocabulary) or every loss above 4.5 nats: a perplexity, or bits
      of a weak model; a loss column named like ``ppl``/``perplexity``/``bits``/``bpb`` without ``loss_unit``;
    - with the run labels ``run`` (a table's run column), curves that all start at one loss
      (:func:`normalised_curves`).

    A loss in bits of a reasonable model (Chinchilla's losses are 3.0–4.9 bits) is indistinguishable by value from
    nats of a weaker one; only the column name or ``loss_unit`` tells them apart. The loss rules apply to a target of
    kind ``"loss"`` only (an accuracy or a normalised loss has its own range, checked by :func:`check_target`).
    """
    mapping = dict(mapping or {})
    col = lambda name: mapping.get(name, name)  # noqa: E731
    problems = []
    for name, floor in _UNIT_FLOORS.items():
        if name in values and values[name].max() < floor:
            what = "tokens" if name == "D" else "parameters"
            problems.append(
                f"column {col(name)!r} ({name}) looks like it is not in {what}: its largest value is "
                f"{values[name].max():g}, below {floor:g}. If it is in millions or billions, multiply it out"
            )
    for name, ceiling in _UNIT_CEILINGS.items():
        if name in values and values[name].max() > ceiling:
            what = "parameters" if name == "N" else "tokens"
            rows = np.flatnonzero(values[name] > ceiling)
            problems.append(
                f"column {col(name)!r} ({name}) has values above {ceiling:g} {what} at {_rows(rows)} (largest "
                f"{values[name].max():g}): no language model is that large; check the units"
            )
    if "N" in values and "D" in values:
        ratio = values["D"] / values["N"]
        below = int(np.sum(ratio < 1))
        if below > _SWAP_SHARE * ratio.size:
            problems.append(
                f"D < N in {below} of {ratio.size} rows (median D/N {np.median(ratio):.3g}): N and D look swapped "
                f"(columns {col('N')!r} and {col('D')!r}), or D is in millions/billions of tokens; real runs see more "
                "tokens than they have parameters in most rows"
            )
        elif np.median(ratio) > _RATIO_CEILING:
            problems.append(
                f"median D/N is {np.median(ratio):.3g} tokens per parameter, above {_RATIO_CEILING:g}: column "
                f"{col('N')!r} (N) looks like it is in thousands, millions or billions of parameters"
            )
    if "loss" in values and target == "loss":
        loss = values["loss"]
        if loss.max() > _LOSS_CEILING:
            rows = np.flatnonzero(loss > _LOSS_CEILING)
            problems.append(
                f"column {col('loss')!r} (loss) has values above {_LOSS_CEILING:g} at {_rows(rows)}: losses must be "
                "cross-entropy in nats/token, not perplexity or bits (declare loss_unit= to convert)"
            )
        elif loss.min() > _LOSS_FLOOR_OF_BEST:
            problems.append(
                f"column {col('loss')!r} (loss): every value is above {_LOSS_FLOOR_OF_BEST:g} (best {loss.min():.3g}); "
                "it looks like a perplexity (declare loss_unit='perplexity' to convert)"
            )
        if loss_unit == "nats":
            name = col("loss").lower()
            for unit, hints in _LOSS_NAME_HINTS.items():
                if any(h in name for h in hints):
                    problems.append(
                        f"column {col('loss')!r} (loss) is named like a {unit} column; declare "
                        f"loss_unit={unit!r} to convert it to nats (or rename the column if it is in nats)"
                    )
                    break
        if run is not None:
            problems += normalised_curves(values, run, mapping)
    return problems


#: Curves whose first checkpoints all hold one loss (to this relative tolerance) look normalised per run.
_SAME_START_RTOL = 1e-9


def normalised_curves(values: Mapping[str, np.ndarray], run: np.ndarray,
                      mapping: Mapping[str, str] | None = None) -> list[str]:
    """The plausibility rule for training curves: 3 or more runs of 2 or more checkpoints whose losses at their first
    checkpoint (smallest ``D``) are all the same number. Raw cross-entropy of different runs never starts at one value
    to 9 digits; curves divided by (or clipped to) their first value do, and a law of raw losses does not describe them
    (ColPret's copy of Alabdulmohsin et al.'s LM curves starts every curve at 0.999). A list of one sentence or none."""
    if "D" not in values:
        return []
    col = (mapping or {}).get
    frame = pd.DataFrame({"run": run, "D": values["D"], "loss": values["loss"]})
    curves = frame.groupby("run").filter(lambda g: len(g) >= 2)
    if curves["run"].nunique() < 3:
        return []
    first = curves.loc[curves.groupby("run")["D"].idxmin(), "loss"].to_numpy()
    if not np.allclose(first, first[0], rtol=_SAME_START_RTOL, atol=0):
        return []
    return [f"every one of the {first.size} curves in column {col('loss', 'loss')!r} (loss) starts at the same loss, "
            f"{first[0]:.6g}, at its first checkpoint: the losses look normalised per run (divided by or clipped to "
            "the first value), not raw cross-entropy, which no law of raw losses describes"]


def _report_unusual(problems: list[str], allow: bool) -> None:
    if not problems:
        return
    if allow:
        warnings.warn("unusual data accepted (allow_unusual=True): " + "; ".join(problems), UnusualDataWarning,
                      stacklevel=3)
        return
    raise DataError("; ".join(problems) + ". If the data are real, load them with load_runs(..., allow_unusual=True) "
                    "(--allow-unusual); for toy data check_units=False (--no-unit-check)")
def check_target(values: np.ndarray, kind: str, column: str = "loss") -> None:
    """Check the target column against its kind (:data:`bayescale.laws.catalogue.TARGET_KINDS`), with one error naming the
    column and the rows: a loss must be > 0 (it is modelled on log scale), a unit-interval target strictly inside
    (0, 1) (modelled on its logit); a real target only needs to be finite (checked when the column is read)."""
    from bayescale.laws.catalogue import TARGET_KINDS

    if kind not in TARGET_KINDS:
        raise DataError(f"target kind {kind!r}: must be one of {list(TARGET_KINDS)}")
    values = np.asarray(values, dtype=float)
    if kind == "loss":
        bad, expected = values <= 0, "> 0"
        hint = ("; a loss is modelled on log scale: for a target that can be negative declare [target] kind = "
                "\"real\" in the law file")
    elif kind == "unit_interval":
        bad, expected = (values <= 0) | (values >= 1), "strictly between 0 and 1"
        hint = "; a unit-interval target is modelled on its logit, which an accuracy of exactly 0 or 1 does not have"
    else:
        bad, expected, hint = ~np.isfinite(values), "finite", ""
    if bad.any():
        label = "loss" if kind == "loss" else f"target of kind {kind!r}"
        examples = ", ".join(f"{x:g}" for x in values[bad][:3])
        raise DataError(f"column {column!r} ({label}) must be {expected}: {_rows(np.flatnonzero(bad))} hold "
                        f"{examples}{hint}")


def round_sig(x: np.ndarray, digits: int = 2) -> np.ndarray:
    """Values rounded to ``digits`` significant digits (0 stays 0): group keys for sizes, budgets and covariates,
    whose logged or digitised values jitter in later digits."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        mag = np.where(x != 0, np.floor(np.log10(np.abs(np.where(x != 0, x, 1.0)))), 0.0)
    return np.round(x / 10**mag, digits - 1) * 10**mag


def check_identifiable(ds: xr.Dataset, law, *, require: bool = True) -> None:
    """Check that the data can identify the law: inputs present, enough distinct values, and warn
    (:class:`FewPointsWarning`) when there are no more points than parameters.

    With ``require=False`` too few distinct values of an input only warns (:class:`UserWarning`): the priors then
    carry the parameters along that input (as when one loop count of three is held out for validation)."""
    missing = [n for n in law.input_names if n not in ds]
    if missing:
        raise DataError(
            f"law {law.id!r} needs inputs {list(law.input_names)}; the dataset lacks {missing} "
            f"(it has {sorted(v for v in ds.data_vars if v != 'loss')}); map them with load_runs(columns=...)"
        )
    for inp in law.inputs:
        distinct = np.unique(ds[inp.name].values).size
        if distinct < inp.min_distinct:
            message = (
                f"too few distinct values of {inp.name!r}: {distinct}, but law {law.id!r} needs at least "
                f"{inp.min_distinct} to identify its parameters along {inp.name} (a power law with an offset has "
                f"3 free parameters along one axis)"
            )
            if require:
                raise DataError(message)
            warnings.warn(message + "; fitting anyway, the priors carry those parameters", stacklevel=3)
    n_params = len(law.parameters) + 1  # + noise scale
    if ds.sizes["point"] <= n_params:
        # With proper priors the posterior exists for any number of points (Gadre et al. 2024 predict from 5 small
        # runs): fit, warn, and let the summary say how much of each parameter the prior supplied.
        warnings.warn(
            f"few points: {ds.sizes['point']}, not more than the {n_params} parameters of law {law.id!r} with noise; "
            f"fitting anyway, the priors carry what the data cannot identify (see the contraction and sd_ratio "
            f"columns of bayescale.results.summary)", FewPointsWarning, stacklevel=3)
