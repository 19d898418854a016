"""The Markdown table every benchmark prints (numbers to 3 significant digits)."""

from __future__ import annotations

import time
from contextlib import contextmanager


def markdown(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return "\n".join(lines)


@contextmanager
def timed_phases(module, names: dict[str, str]):
    """Time calls of ``module``'s functions while the block runs: ``names`` maps a function's name to the key its
    seconds are stored under in the dict this yields (the last call's). Each call waits for its results, since JAX
    dispatches asynchronously and an unwaited phase would count in the next one (an MCMC object: its draws)."""
    import jax

    phases: dict[str, float] = {}
    originals = {name: getattr(module, name) for name in names}

    def timed(name, function):
        def run(*args, **kwargs):
            t = time.perf_counter()
            out = function(*args, **kwargs)
            jax.block_until_ready(out.get_samples() if hasattr(out, "get_samples") else out)
            phases[names[name]] = time.perf_counter() - t
            return out
        return run

    for name, function in originals.items():
        setattr(module, name, timed(name, function))
    try:
        yield phases
    finally:
        for name, function in originals.items():
            setattr(module, name, function)
