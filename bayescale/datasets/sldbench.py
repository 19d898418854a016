"""The SLDBench / ScaleBench training splits bundled in ``sldbench/`` (CC-BY-4.0, see README.md here), as validated
run tables for the catalogue law that fits each.

Each task is one :class:`Task`: its file, the law, the column mapping onto the law's inputs, the target kind and the
column that splits the table into separate fits (a corpus, a model size, a validation domain). :func:`load_task`
returns one validated dataset per such group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data import DataError, load_runs
from bayescale.datasets.datablations import described_by_law

__all__ = ["TASKS", "Task", "sldbench_table", "load_task"]


@dataclass(frozen=True)
class Task:
    """One SLDBench task: the file, the law that fits it and how its columns map onto the law's inputs."""

    file: str
    law: str
    columns: dict[str, str]
    description: str
    target: str = "loss"
    group: str | None = None  # column whose values are separate fits
    nonnegative: tuple[str, ...] = ()
    #: input -> divisor applied before fitting (a dimensionless axis for laws that need one)
    scale: dict[str, float] = field(default_factory=dict)
    #: likelihood to fit with: a dozen points per fit leave the Student-t's sigma free to collapse onto a few points
    #: (docs/laws.md, lr sweeps), so the smallest tables use the Normal
    likelihood: str = "student_t"
    #: a selection or conversion of the source table before its columns are mapped (e.g. Step Law's window of
    #: near-optimal runs per (N, D) cell); it returns the table to map
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None


def _data_constrained_domain(df: pd.DataFrame) -> pd.DataFrame:
    """The runs the data-constrained law describes, the rule of :func:`bayescale.datasets.datablations.datablations_table`:
    at most 100 epochs (beyond, the runs overfit and the loss rises with more tokens, which the law's saturating
    effective data cannot follow) and a loss of at most 6 nats (runs that never left the initial plateau); 113 of the
    161 rows. docs/laws.md shows what the other 48 do to a fit of all rows."""
    return df[described_by_law(df["tokens"] / df["unique_tokens"], df["loss"])].reset_index(drop=True)


def _steplaw_window(df: pd.DataFrame) -> pd.DataFrame:
    """The lr / batch-size grid as ``steplaw2025`` fits it: batch size in tokens (2,048 per sequence) and the runs
    within 3% of their (N, D) cell's best (:func:`bayescale.analyses.steplaw.steplaw_table`: the law's quadratic bowl
    describes the runs near the optimum; 1,999 of the 2,702 rows)."""
    from bayescale.analyses.steplaw import steplaw_table  # the analysis module loads the catalogue: import late

    table = steplaw_table(df.rename(columns={"non_embedding_param_size": "N", "data_size": "D", "bsz": "bs",
                                             "lm_loss": "smooth loss"}))
    return table.drop(columns=["run", "bs"])  # no run column: each row is a separate training run, not a checkpoint


#: The tasks, by name. ``domain_mixture`` is a multi-output task: one fit per (model size, validation domain), each
#: with the same law (ye2024_mixing); its groups are ``<size>/domain_<i>``.
TASKS: dict[str, Task] = {
    "moe": Task("moe_scaling_law.csv", "clark2022_moe",
                {"N": "dense_parameter_count", "E": "num_experts", "loss": "loss_validation"},
                "MoE: validation loss over dense parameters and number of experts (193 runs)"),
    "vocab": Task("vocab_scaling_law.csv", "tao2024_vocab",
                  {"N": "non_vocab_parameters", "V": "vocab_size", "D": "num_characters",
                   "loss": "unigram_normalized_loss"},
                  "vocabulary: unigram-normalised loss (negative) over parameters, vocabulary and characters (1080)",
                  target="real"),
    "parallel": Task("parallel_scaling_law.csv", "chen2025_parscale", {"N": "num_params", "P": "parallel_size"},
                     "ParScale: loss over parameters and parallel streams, per corpus (stack, pile; 18 runs each)",
                     group="group"),
    "sparsity": Task("sparsity_scaling_law.csv", "frantar2023_sparsity", {"N_active": "N_active", "P": "P", "D2": "D2"},
                     "sparsity: loss over active parameters (billions), total/active ratio and tokens (70 runs)"),
    "domain_mixture": Task("domain_mixture_scaling_law.csv", "ye2024_mixing",
                           {f"r{j}": f"proportion_domain_{j}" for j in range(1, 5)},
                           "data mixing: loss on each of 5 domains over the mixture, per model size (20 mixtures)",
                           group="group", nonnegative=("r1", "r2", "r3", "r4")),
    "farseer": Task("farseer_scaling_law.csv", "li2025_farseer", {"N": "N", "D": "D"},
                    "Farseer: loss over parameters and tokens (404 rows, 4 exact duplicates dropped)"),
    "data_constrained": Task("data_constrained_scaling_law.csv", "muennighoff2023",
                             {"N": "params", "D": "tokens", "U_D": "unique_tokens"},
                             "data-constrained: loss over parameters, tokens and unique tokens (C4 runs; the 113 of "
                             "161 with at most 100 epochs and a loss of at most 6 nats)",
                             prepare=_data_constrained_domain),
    "lr_bsz": Task("lr_bsz_scaling_law.csv", "steplaw2025",
                   {"N": "N", "D": "D", "lr": "lr", "batch_size": "batch_size"},
                   "Step Law grid: loss over parameters, tokens, peak learning rate and batch size (tokens), the "
                   "runs within 3% of each (N, D) cell's best (1,999 of 2,702)", prepare=_steplaw_window),
    "lr_sweep": Task("lr_sweep.csv", "caballero2023_bpl", {"x": "lr", "loss": "lm_loss"},
                     "learning-rate sweeps (Step Law runs, N = 5.4e8, D = 2.84e10): U-shaped loss over lr, per batch "
                     "size", group="bsz", scale={"x": float(np.exp(np.mean(np.log([3.45e-4, 1.56e-2]))))},
                     likelihood="normal"),
}


def sldbench_table(task: str) -> pd.DataFrame:
    """The bundled training split of ``task`` (one of :data:`TASKS`), as in the source (exact duplicates dropped)."""
    if task not in TASKS:
        raise DataError(f"unknown SLDBench task {task!r}: must be one of {sorted(TASKS)}")
    with resources.files(__package__).joinpath("sldbench", TASKS[task].file).open() as fh:
        return pd.read_csv(fh).drop_duplicates().reset_index(drop=True)


def load_task(task: str) -> dict[str, xr.Dataset]:
    """Validated datasets of ``task``, one per group (a single ``"all"`` group when the task has none).

    ``domain_mixture`` is melted from its five loss columns to one table per (model size, domain): the data-mixing
    law is one law per validation domain (models/ye2024_mixing.toml)."""
    spec = TASKS[task] if task in TASKS else sldbench_table(task)  # the latter raises the error
    df = sldbench_table(task)
    if spec.prepare is not None:
        df = spec.prepare(df)
    for name, divisor in spec.scale.items():
        df[spec.columns[name]] = df[spec.columns[name]] / divisor
    source = f"SLDBench {task} ({spec.file}; PlanarG/active-sl @ e0a58ff, CC-BY-4.0)"
    groups = {"all": df} if spec.group is None else {str(k): g for k, g in df.groupby(spec.group, sort=False)}
    out = {}
    for name, table in groups.items():
        targets = ([(name, spec.columns.get("loss", "loss"))] if task != "domain_mixture" else
                   [(f"{name}/domain_{i}", f"loss_domain_{i}") for i in range(1, 6)])
        for label, column in targets:
            columns = {k: v for k, v in spec.columns.items() if k != "loss"} | {"loss": column}
            out[label] = load_runs(table.reset_index(drop=True), columns=columns, inputs=tuple(c for c in columns if c != "loss"),
                                   nonnegative=spec.nonnegative, check_units=False, source=f"{source}, {label}",
                                   target=spec.target)
    return out
