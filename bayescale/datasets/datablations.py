"""The C4 runs of Muennighoff et al. (2023), "Scaling Data-Constrained Language Models": final validation losses over
parameters, tokens and unique tokens (the isoLoss-contour grid of their Fig. 3 and the isoFLOP runs).

Source: ``aggregated_eval/datablations_contour_losses.csv`` of github.com/IBM/ColPret (commit
``16f23bbe054277ddc4afd07a972dd7cfbe3f48c3``, MIT), compiled from github.com/huggingface/datablations (Apache-2.0).
Derived columns (``datablations_c4.csv``): ``name`` (the run name, ``{params}{tokens}{unique tokens}``), ``N``
(``num_params``), ``D`` (``token_num``), ``U_D`` = ``token_num / epochs`` (ColPret's ``tokens_per_epoch`` is a wrong
placeholder), ``epochs``, ``loss`` (``openLM_loss``, nats/token). One row is corrected: ``2b855b1b25`` (2.8B params,
55B tokens, 1.25B unique) is listed with 2.204 epochs; its name and its loss (3.42, far above the 2.57 of the
55B-unique run) say 44 epochs, so ``U_D = 1.25e9``.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd
import xarray as xr

from bayescale.data import load_runs

__all__ = ["MAX_EPOCHS", "MAX_LOSS", "datablations_table", "described_by_law", "load_datablations"]

#: The runs the data-constrained law describes (the defaults of :func:`datablations_table`; the SLDBench
#: ``data_constrained`` task keeps the same ones): past about 100 epochs the runs overfit, and runs with a loss above
#: 6 nats never left the initial plateau.
MAX_EPOCHS = 100.0
MAX_LOSS = 6.0


def described_by_law(epochs: pd.Series, loss: pd.Series, max_epochs: float | None = MAX_EPOCHS,
                     max_loss: float | None = MAX_LOSS) -> pd.Series:
    """Which runs to keep: at most ``max_epochs`` epochs and a loss of at most ``max_loss`` (``None``: no limit)."""
    keep = pd.Series(True, index=loss.index)
    if max_epochs is not None:
        keep &= epochs <= max_epochs
    if max_loss is not None:
        keep &= loss <= max_loss
    return keep


def datablations_table(max_epochs: float | None = MAX_EPOCHS, max_loss: float | None = MAX_LOSS) -> pd.DataFrame:
    """The 229 C4 runs; by default without the heavily repeated (> 100 epochs) and the barely trained (loss > 6) runs.

    Past about 100 epochs the runs overfit (loss rises with more tokens), which the data-constrained law cannot
    represent (its effective data only saturates); runs with loss > 6 nats saw too few tokens to leave the initial
    plateau (e.g. 1.1B parameters on 100M tokens). Both are ``None`` to keep every run.
    """
    with resources.files(__package__).joinpath("datablations_c4.csv").open() as fh:
        df = pd.read_csv(fh)
    return df[described_by_law(df["epochs"], df["loss"], max_epochs, max_loss)].reset_index(drop=True)


def load_datablations(max_epochs: float | None = MAX_EPOCHS, max_loss: float | None = MAX_LOSS) -> xr.Dataset:
    """:func:`datablations_table` validated by :func:`bayescale.load_runs` (inputs ``N``, ``D``, ``U_D``)."""
    table = datablations_table(max_epochs, max_loss)
    return load_runs(
        table.rename(columns={"name": "run"}),
        inputs=("N", "D", "U_D"),
        source=f"datablations_c4.csv (Muennighoff et al. 2023 C4 runs via IBM/ColPret; {len(table)} runs, "
        f"epochs <= {max_epochs}, loss <= {max_loss})",
    )
