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
from bayescale._runtime import host_device_count, x64_from_env, xla_flags
from bayescale.infer.fit import resolve_chain_method


def _run(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", "BAYESCALE_HOST_DEVICES", "BAYESCALE_XLA_CPU_FUSION")}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=base | env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


STATE = ("import bayescale, jax, jax.numpy as jnp; "
         "print(jax.local_device_count(), jnp.zeros(1).dtype, jax.config.jax_compilation_cache_dir)")


def test_runtime_setup_on_import(tmp_path):
    """One subprocess per setting (they only take effect before JAX starts): devices, dtype, compilation cache."""
    assert _run(STATE, BAYESCALE_CACHE_DIR=str(tmp_path)).split() == [str(max(4, min(os.cpu_count(), 16))),
                                                                      "float64", str(tmp_path)]
    assert _run(STATE, BAYESCALE_HOST_DEVICES="1", BAYESCALE_X64="0", BAYESCALE_CACHE_DIR="").split() == [
        "1", "float32", "None"]
    # too late once JAX's backend has started: nothing changes, nothing breaks
    assert _run("import jax; jax.numpy.zeros(1); import bayescale; print(jax.local_device_count())") == "1"


FLAGS = "import os, bayescale; print(os.environ.get('XLA_FLAGS', '').replace(' ', ','))"


def test_cpu_fusion_emitters_off_unless_asked(monkeypatch):
    """XLA:CPU's fusion emitters are turned off on import (faster compiles), unless the user chose either way; the
    user's own XLA_FLAGS win. On import in a fresh process (the flags only act before JAX starts), then the rule that
    builds the flags (bayescale._runtime.xla_flags), here, for each choice."""
    assert "--xla_cpu_use_fusion_emitters=false" in _run(FLAGS).split(",")
    for name in ("BAYESCALE_XLA_CPU_FUSION", "BAYESCALE_HOST_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    count = f"--xla_force_host_platform_device_count={max(4, min(os.cpu_count(), 16))}"
    assert xla_flags("").split() == [count, "--xla_cpu_use_fusion_emitters=false"]
    assert xla_flags("--xla_force_host_platform_device_count=2").split() == [
        "--xla_force_host_platform_device_count=2", "--xla_cpu_use_fusion_emitters=false"]
    assert xla_flags("--xla_cpu_use_fusion_emitters=true").split() == ["--xla_cpu_use_fusion_emitters=true", count]
    monkeypatch.setenv("BAYESCALE_XLA_CPU_FUSION", "1")
    assert xla_flags("").split() == [count]
    monkeypatch.setenv("BAYESCALE_HOST_DEVICES", "1")
    assert xla_flags("--xla_dump_to=/tmp/x") == "--xla_dump_to=/tmp/x"


def test_cpu_fusion_bad_env(monkeypatch):
    from bayescale._runtime import cpu_fusion_from_env

    monkeypatch.setenv("BAYESCALE_XLA_CPU_FUSION", "off")
    with pytest.raises(ValueError, match="BAYESCALE_XLA_CPU_FUSION must be 0 or 1, got 'off'"):
        cpu_fusion_from_env()


@pytest.mark.parametrize("value", ["zero", "0"])
def test_host_devices_bad_env(value, monkeypatch):
    monkeypatch.setenv("BAYESCALE_HOST_DEVICES", value)
    with pytest.raises(ValueError, match="BAYESCALE_HOST_DEVICES must be"):
        host_device_count()


def test_x64_env(monkeypatch):
    for value, want in [("1", True), ("0", False)]:
        monkeypatch.setenv("BAYESCALE_X64", value)
        assert x64_from_env() is want
    monkeypatch.setenv("BAYESCALE_X64", "yes")
    with pytest.raises(ValueError, match="BAYESCALE_X64 must be 0 or 1, got 'yes'"):
        x64_from_env()


def test_chain_method_auto():
    assert jax.local_device_count() >= 4  # this test process imported bayescale before JAX started
    assert resolve_chain_method("auto", 4) == "parallel"
    assert resolve_chain_method("auto", 1) == "sequential"
    assert resolve_chain_method("auto", jax.local_device_count() + 1) == "sequential"  # CPU: no lockstep
    assert resolve_chain_method("vectorized", 4) == "vectorized"
    with pytest.raises(ValueError, match=r"chain_method 'threads': must be one of \['auto', 'parallel'"):
        resolve_chain_method("threads", 4)


FIT = """
    import json, logging, re, warnings, jax, numpy as np
    hits = []

    class Hits(logging.Handler):  # the name of each program read from the persistent cache (logged with log_compiles)
        def emit(self, record):
            m = re.match(r"Persistent compilation cache hit for '([^']+)'", record.getMessage())
            if m:
                hits.append(m.group(1))

    jax.config.update("jax_log_compiles", True)
    logging.getLogger("jax").addHandler(Hits())
    import bayescale as bs
    N = np.geomspace(1e7, 1e9, 8)
    data = dict(N=N, D=np.full(8, 1e10), loss=(8.8e13 / N) ** 0.076)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the cheapest fit that still compiles the sampler: no multi-start MAP, no per-point groups
        r = bs.fit("kaplan2020_n", data, num_chains=2, num_warmup=20, num_samples=20, progress_bar=False,
                   init="median", pointwise=False)
    print(json.dumps([json.loads(r.attrs["sampler"])["chain_method"], hits]))
"""


def test_persistent_compilation_cache(tmp_path):
    """A second process fitting the same law to data of the same shape reads the compiled programs from disk."""
    first = json.loads(_run(FIT, BAYESCALE_CACHE_DIR=str(tmp_path)))
    assert first == ["parallel", []] and any(tmp_path.iterdir())
    second = json.loads(_run(FIT, BAYESCALE_CACHE_DIR=str(tmp_path)))
    # the sampler: one program (warmup and draws in one loop) mapped over the chains' devices, pmap's "_fun"
    assert any("_fun" in name for name in second[1]), second[1]

