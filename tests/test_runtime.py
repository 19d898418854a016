"""Process-wide JAX setup on import (bayescale._runtime): host devices, chain layout, persistent compilation cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

import bayescale  # noqa: F401  (configures JAX)
from bayescale._runtime import host_device_count
from bayescale.inference import resolve_chain_method


def _run(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "BAYESCALE_HOST_DEVICES")}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=base | env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


DEVICES = "import bayescale, jax; print(jax.local_device_count())"


def test_host_devices_on_import():
    assert _run(DEVICES) == str(max(4, min(os.cpu_count(), 16)))
    assert _run(DEVICES, BAYESCALE_HOST_DEVICES="1") == "1"
    assert _run(DEVICES, BAYESCALE_HOST_DEVICES="6") == "6"
    # the user's own XLA_FLAGS win
    assert _run(DEVICES, XLA_FLAGS="--xla_force_host_platform_device_count=2") == "2"
    # too late once JAX's backend has started: nothing changes, nothing breaks
    assert _run("import jax; jax.numpy.zeros(1); import bayescale; print(jax.local_device_count())") == "1"


@pytest.mark.parametrize("value", ["zero", "0"])
def test_host_devices_bad_env(value, monkeypatch):
    monkeypatch.setenv("BAYESCALE_HOST_DEVICES", value)
    with pytest.raises(ValueError, match="BAYESCALE_HOST_DEVICES must be"):
        host_device_count()


def test_chain_method_auto():
    assert jax.local_device_count() >= 4  # this test process imported bayescale before JAX started
    assert resolve_chain_method("auto", 4) == "parallel"
    assert resolve_chain_method("auto", 1) == "sequential"
    assert resolve_chain_method("auto", jax.local_device_count() + 1) == "sequential"  # CPU: no lockstep
    assert resolve_chain_method("vectorized", 4) == "vectorized"
    with pytest.raises(ValueError, match=r"chain_method 'threads': must be one of \['auto', 'parallel'"):
        resolve_chain_method("threads", 4)


FIT = """
    import json, warnings, jax, numpy as np
    hits = []
    jax.monitoring.register_event_listener(lambda name, **kw: hits.append(name))
    import bayescale as bs
    N = np.geomspace(1e7, 1e9, 8)
    data = dict(N=N, D=np.full(8, 1e10), loss=(8.8e13 / N) ** 0.076)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bs.fit("kaplan2020_n", data, num_chains=2, num_warmup=20, num_samples=20, progress_bar=False)
    print(json.dumps([json.loads(r.attrs["sampler"])["chain_method"], hits.count("/jax/compilation_cache/cache_hits")]))
"""


def test_persistent_compilation_cache(tmp_path):
    """A second process fitting the same law to data of the same shape reads the compiled programs from disk."""
    first = json.loads(_run(FIT, BAYESCALE_CACHE_DIR=str(tmp_path)))
    assert first == ["parallel", 0] and any(tmp_path.iterdir())
    second = json.loads(_run(FIT, BAYESCALE_CACHE_DIR=str(tmp_path)))
    assert second[1] >= 2  # at least the sampler's warmup and draw programs
    off = json.loads(_run(FIT, BAYESCALE_CACHE_DIR=""))
    assert off[1] == 0


def test_float32_opt_in():
    dtype = "import bayescale, jax.numpy as jnp; print(jnp.zeros(1).dtype)"
    assert _run(dtype) == "float64"
    assert _run(dtype, BAYESCALE_X64="0") == "float32"
    with pytest.raises(subprocess.CalledProcessError):
        _run(dtype, BAYESCALE_X64="yes")
