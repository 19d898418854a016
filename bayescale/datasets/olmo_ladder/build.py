"""Rebuild ``olmo_ladder.csv`` from a checkout of allenai/OLMo-ladder (not run at import; kept for provenance).

    python bayescale/datasets/olmo_ladder/build.py /path/to/OLMo-ladder

Reads ``src/scripts/paper/data/ladder-runs/`` (the runs of the paper's ``configs/final.json``), keeps the eight tasks
of its ``v2_main`` set (task bits-per-byte on the correct continuation and ranked-classification accuracy; MMLU is
the test-split average of its four groups with the repository's weights), thins each ladder run to at most 40
evenly spaced checkpoints plus its last 5, and rounds values to 6 significant digits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: Non-embedding parameter counts of the ladder and target models (the repository's configs/final.json).
PARAMS = {"190M": 190354176, "370M": 371262464, "760M": 758220288, "1B": 1279395840,
          "7B": 6887575552, "13B": 13202396160}
#: MMLU group weights (the repository's WEIGHT_BY_KEY: shares of test questions).
MMLU = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}
#: task -> (bpb column, accuracy column) stems; accuracy is length-normalised as in the paper.
TASKS = {t: (f"eval/downstream_bpb/{t}_rc_5shot_bpb", f"eval/downstream/{t}_rc_5shot_len_norm")
         for t in ("hellaswag_val", "arc_challenge_test", "arc_easy_test", "piqa_val", "csqa_val", "socialiqa_val",
                   "openbookqa_test")}
KEEP, LAST = 40, 5


def _tasks(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {}
    w = np.array(list(MMLU.values()))
    for kind, stem in (("bpb", "eval/downstream_bpb/mmlu_{g}_test_rc_5shot_bpb"),
                       ("acc", "eval/downstream/mmlu_{g}_test_rc_5shot_len_norm")):
        cols = np.stack([frame[stem.format(g=g)].to_numpy(float) for g in MMLU], axis=1)
        out[f"mmlu_avg_test_{kind}"] = cols @ w / w.sum()
    for task, (bpb, acc) in TASKS.items():
        out[f"{task}_bpb"] = frame[bpb].to_numpy(float)
        out[f"{task}_acc"] = frame[acc].to_numpy(float)
    return out


def _tokens(frame: pd.DataFrame) -> np.ndarray:
    if "throughput/total_tokens" in frame:
        return frame["throughput/total_tokens"].to_numpy(float)
    return frame["_step"].to_numpy(float) * frame["batch_size_in_tokens"].to_numpy(float)


def build(repo: Path) -> pd.DataFrame:
    data = repo / "src/scripts/paper/data/ladder-runs"
    parts = []
    for size in ("190M", "370M", "760M", "1B"):
        for mult in ("1xC", "2xC", "5xC", "10xC"):
            frame = pd.read_csv(data / f"{size}-{mult}.csv")
            n = len(frame)
            keep = sorted(set(np.linspace(0, n - LAST - 1, KEEP).round().astype(int)) | set(range(n - LAST, n)))
            frame = frame.iloc[keep]
            parts.append(pd.DataFrame({"run": f"{size}-{mult}", "role": "ladder", "N": PARAMS[size],
                                       "D": _tokens(frame), **_tasks(frame)}))
    for size, name in (("7B", "peteish7_eval_anneal.csv"), ("13B", "peteish13_eval_final.csv")):
        frame = pd.read_csv(data / name)
        # the 13B file's first rows are mid-training checkpoints (step 557000, then 587000-596057): keep the last 5,
        # which the repository's moving average of 5 reads for the target's accuracy
        frame = frame.iloc[-LAST:]
        parts.append(pd.DataFrame({"run": {"7B": "7B-4T", "13B": "13B-5T"}[size], "role": "target",
                                   "N": PARAMS[size], "D": _tokens(frame), **_tasks(frame)}))
    table = pd.concat(parts, ignore_index=True)
    values = [c for c in table.columns if c.endswith(("_bpb", "_acc"))]
    table[values] = table[values].map(lambda v: float(f"{v:.6g}"))
    table["D"] = table["D"].round().astype("int64")
    return table


if __name__ == "__main__":
    out = Path(__file__).with_name("olmo_ladder.csv")
    build(Path(sys.argv[1])).to_csv(out, index=False)
    print(out)
