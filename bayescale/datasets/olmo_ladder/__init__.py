"""The OLMo ladder (Bhagia et al. 2024): task losses and accuracies of 16 small models and two targets (README.md).

:func:`ladder_table` reads the bundled table; :func:`step1_table`, :func:`step2_table` and :func:`final_accuracy`
shape it for the two steps of the task law the way the paper does (final values as the mean of each run's last five
evaluations; step 2 on every checkpoint after the first 10% of each run).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["TASKS", "CHANCE", "ladder_table", "paper_errors", "step1_table", "step2_table", "final_accuracy"]

#: The eight tasks of the paper's main table (its ``v2_main`` set): MMLU (test, weighted average of the four groups)
#: and seven single tasks, all 5-shot ranked classification.
TASKS = ("mmlu_avg_test", "hellaswag_val", "arc_challenge_test", "arc_easy_test", "piqa_val", "csqa_val",
         "socialiqa_val", "openbookqa_test")
#: Chance accuracy of each task (one over the number of answer options; the repository's task minimums).
CHANCE = {"mmlu_avg_test": 0.25, "hellaswag_val": 0.25, "arc_challenge_test": 0.25, "arc_easy_test": 0.25,
          "piqa_val": 0.5, "csqa_val": 0.2, "socialiqa_val": 1 / 3, "openbookqa_test": 0.25}
#: Evaluations averaged for a run's final value (the paper's moving average of 5).
LAST = 5


def ladder_table() -> pd.DataFrame:
    """The bundled table: one row per evaluated checkpoint, columns ``run``, ``role`` (``ladder`` or ``target``),
    ``N``, ``D`` and ``<task>_bpb`` / ``<task>_acc`` for each of :data:`TASKS`."""
    with resources.files(__package__).joinpath("olmo_ladder.csv").open() as fh:
        return pd.read_csv(fh)


def paper_errors() -> pd.DataFrame:
    """The repository's reproduction of the paper's chained prediction for the 13B-5T target (``Task``, ``Actual``,
    ``Pred``, ``Rel Error``; relative error as |pred - actual| / actual)."""
    with resources.files(__package__).joinpath("paper_chained_13b.csv").open() as fh:
        table = pd.read_csv(fh)
    table["Task"] = table["Task"].str.removesuffix("_5shot")
    return table.set_index("Task")


def _check(task: str) -> None:
    if task not in TASKS:
        from bayescale.errors import ArgumentError

        raise ArgumentError(f"task {task!r}: must be one of {list(TASKS)}")


def step1_table(task: str, role: str = "ladder") -> pd.DataFrame:
    """Final task loss of each run: ``run``, ``N``, ``D`` (the last evaluation's tokens) and ``loss`` (bits per byte,
    mean of the last :data:`LAST` evaluations)."""
    _check(task)
    table = ladder_table()
    table = table[table["role"] == role].groupby("run", sort=False).tail(LAST)
    out = table.groupby("run", sort=False).agg(N=("N", "last"), D=("D", "last"), loss=(f"{task}_bpb", "mean"))
    return out.reset_index()


def final_accuracy(task: str, role: str = "target") -> pd.DataFrame:
    """Final accuracy of each run (mean of the last :data:`LAST` evaluations, as the paper's moving average): ``run``,
    ``N``, ``D``, ``accuracy``, and ``loss`` (the final task loss, as :func:`step1_table`)."""
    _check(task)
    table = ladder_table()
    table = table[table["role"] == role].groupby("run", sort=False).tail(LAST)
    out = table.groupby("run", sort=False).agg(N=("N", "last"), D=("D", "last"), accuracy=(f"{task}_acc", "mean"),
                                               loss=(f"{task}_bpb", "mean"))
    return out.reset_index()


def step2_table(task: str, skip: float = 0.1) -> pd.DataFrame:
    """Task loss and accuracy of every ladder checkpoint after the first ``skip`` share of each run: ``run``, ``L``
    (bits per byte), ``loss`` (accuracy: the target column of a unit-interval law)."""
    _check(task)
    table = ladder_table()
    table = table[table["role"] == "ladder"]
    parts = []
    for _, run in table.groupby("run", sort=False):
        start = int(-(-skip * len(run) // 1))  # ceil, as the paper's skip_perc
        parts.append(run.iloc[start:])
    table = pd.concat(parts)
    return pd.DataFrame({"run": table["run"].to_numpy(), "L": table[f"{task}_bpb"].to_numpy(),
                         "loss": table[f"{task}_acc"].to_numpy()})
