"""The formula compiler: catalogue laws against hand-written numpy, parser safety, log-space evaluation.

Tolerance. Every comparison below is float64 (bayescale turns on JAX's x64 mode on import; test_x64_is_on checks
it). The log-space evaluation and the direct numpy formula differ only by rounding: each log/exp/logaddexp adds a
few ulp (~1e-16), and the largest amplification is a product such as ``alpha * log N`` with ``|log N| <= 30``, so
the two agree to ~1e-14 relative. rtol = 1e-12 leaves a 100x margin for that, yet is five orders of magnitude
tighter than float32 (~1e-7) could reach, so an accidental float32 path, a wrong sign or a dropped term all fail.
Log values are compared with the same bound as an absolute tolerance: an absolute error of 1e-12 in log L is a
relative error of 1e-12 in L (and log L can be ~0, where a relative bound on it would mean nothing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayescale as bs
from bayescale.laws.formula import FORMULA_FUNCTIONS, FormulaError, compile_log_formula, parse_formula

RTOL = 1e-12  # see the module docstring
ATOL_LOG = 1e-12

# ---------------------------------------------------------------------------------------------------------
# Catalogue laws against hand-written numpy formulas
# ---------------------------------------------------------------------------------------------------------
#: One numpy implementation per catalogue law, written from the paper (not from the law file).
REFERENCE = {
    # Hoffmann et al. 2022, Eq. 2
    "hoffmann2022": lambda p, N, D: p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"],
    # Kaplan et al. 2020, Eq. 1.1, 1.2, 1.5
    "kaplan2020_n": lambda p, N: (p["N_c"] / N) ** p["alpha_N"],
    "kaplan2020_d": lambda p, D: (p["D_c"] / D) ** p["alpha_D"],
    "kaplan2020_nd": lambda p, N, D: ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"],
    # Zhu et al. 2025 (Ouro), App. D.2
    "ouro2025": lambda p, N, D, T_m: (p["E"] + p["A"] / (N + p["t1"]) ** p["alpha"] + p["B"] / (D + p["t2"]) ** p["beta"]
                                      + p["C"] / (T_m + p["t3"]) ** p["gamma"]),
    # Li et al. 2025 (Step Law): L0(N, D) times a bowl in log(lr / eta_opt), log(B / B_opt); asymmetric in lr
    "steplaw2025": lambda p, N, D, lr, batch_size: _steplaw_np(p, N, D, lr, batch_size),
    # Muennighoff et al. 2023, Eq. 5 with U_N from the authors' code (datablations README)
    "muennighoff2023": lambda p, N, D, U_D: _muennighoff_np(p, N, D, U_D),
    # Kaplan et al. 2020 Fig. 20 per-token law a + b*T^-c with the context exponent growing over steps (bayescale's form)
    "kaplan2020_per_token_steps": lambda p, T, S: (p["a"] + p["b"] * T ** (-p["c"] * S / (S + p["S_h"]))
                                                   + (p["S_c"] / S) ** p["alpha_S"]),
}

def _steplaw_bowl(p, N, D, lr, batch_size):
    x = np.log(lr) - np.log(p["c_lr"] * N ** p["a_N"] * D ** p["a_D"])
    y = np.log(batch_size) - np.log(p["c_bs"] * D ** p["d_bs"])
    u = np.where(x < 0, np.sqrt(p["k_lr_low"]), np.sqrt(p["k_lr_high"])) * x
    v = np.sqrt(p["k_bs"]) * y
    return u**2 + v**2 + 2 * p["rho"] * u * v


def _steplaw_np(p, N, D, lr, batch_size):
    return (p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]) * np.exp(_steplaw_bowl(p, N, D, lr, batch_size))


def _muennighoff_effective(p, N, D, U_D):
    """(N', D') of Muennighoff et al. 2023, as their README's scaling_law()."""
    G = ((p["alpha"] * p["A"]) / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    R_D = np.maximum(D / U_D - 1, 0)
    U_N = np.minimum(N, (U_D * G) ** (p["beta"] / p["alpha"]) * G)
    R_N = np.maximum(N / U_N - 1, 0)
    N_eff = U_N + U_N * p["R_N_star"] * (1 - np.exp(-R_N / p["R_N_star"]))
    D_eff = U_D + U_D * p["R_D_star"] * (1 - np.exp(-R_D / p["R_D_star"]))
    return N_eff, D_eff


def _muennighoff_np(p, N, D, U_D):
    N_eff, D_eff = _muennighoff_effective(p, N, D, U_D)
    return p["E"] + p["A"] / N_eff ** p["alpha"] + p["B"] / D_eff ** p["beta"]


#: Parameter sets besides the published ones: far from them, to exercise every term at other magnitudes.
EXTRA_PARAMS = {
    "hoffmann2022": [
        dict(E=0.5, A=1.0e4, B=1.0e5, alpha=0.6, beta=0.7),  # steep, large amplitudes
        dict(E=3.0, A=50.0, B=20.0, alpha=0.1, beta=0.05),  # flat, small amplitudes
        dict(E=1e-3, A=1.0e7, B=3.0, alpha=0.9, beta=0.2),  # E negligible
    ],
    "kaplan2020_n": [dict(N_c=1.0e9, alpha_N=0.3), dict(N_c=1.0e15, alpha_N=0.02)],
    "kaplan2020_d": [dict(D_c=1.0e10, alpha_D=0.3), dict(D_c=1.0e16, alpha_D=0.01)],
    "kaplan2020_nd": [
        dict(N_c=1.0e9, D_c=1.0e11, alpha_N=0.3, alpha_D=0.2),
        dict(N_c=1.0e15, D_c=1.0e10, alpha_N=0.05, alpha_D=0.5),
    ],
    "ouro2025": [
        dict(E=1.6, A=60.0, alpha=0.25, t1=1e6, B=24650.0, beta=0.45, t2=5e7, C=0.5, gamma=0.7, t3=1.0),
        dict(E=0.1, A=1e5, alpha=0.6, t1=1e9, B=10.0, beta=0.05, t2=1.0, C=20.0, gamma=2.0, t3=0.01),  # offsets dominate
    ],
    "steplaw2025": [
        dict(E=1.5, A=350.0, alpha=0.34, B=210.0, beta=0.27, c_lr=0.4, a_N=-0.59, a_D=0.26, c_bs=0.3, d_bs=0.59,
             k_lr_low=0.004, k_lr_high=0.01, k_bs=0.006, rho=-0.4),  # near the real-data fit
        dict(E=0.5, A=1e4, alpha=0.6, B=20.0, beta=0.05, c_lr=1e3, a_N=-1.2, a_D=0.1, c_bs=10.0, d_bs=0.3,
             k_lr_low=0.5, k_lr_high=0.05, k_bs=0.2, rho=0.9),  # sharp, tilted the other way
    ],
    "muennighoff2023": [
        dict(E=1.2, A=110.0, B=50.0, alpha=0.25, beta=0.17, R_D_star=14.0, R_N_star=1.8),  # alpha != beta
        dict(E=0.1, A=1e5, B=1e3, alpha=0.6, beta=0.3, R_D_star=0.5, R_N_star=50.0),
    ],
    "kaplan2020_per_token_steps": [
        dict(a=2.3, b=5.4, c=0.62, S_c=2.1e3, alpha_S=0.76, S_h=3e3),  # the simulator's truth (largest Fig. 20 model)
        dict(a=0.5, b=20.0, c=1.5, S_c=10.0, alpha_S=0.2, S_h=1e6),  # the context benefit still growing at 1e6 steps
    ],
}

#: Grid spanning the data of real scaling studies: N 1e6-1e12 parameters, D 1e8-1e13 tokens.
GRID = dict(zip(("N", "D"), (m.ravel() for m in np.meshgrid(np.geomspace(1e6, 1e12, 13), np.geomspace(1e8, 1e13, 11)))))
GRID["T_m"] = np.resize([1.0, 2.0, 4.0, 8.0, 16.0], GRID["N"].size)  # loop counts, cycling over the grid
GRID["lr"] = np.resize(np.geomspace(1e-4, 3e-2, 7), GRID["N"].size)  # peak learning rates
GRID["batch_size"] = np.resize(np.geomspace(3e4, 1e7, 5), GRID["N"].size)  # tokens per batch
GRID["U_D"] = GRID["D"] / np.resize([0.5, 1.0, 3.0, 10.0, 40.0, 200.0], GRID["N"].size)  # unique tokens (epochs 0.5-200)
GRID["T"] = np.resize(np.geomspace(1.0, 1024.0, 11), GRID["N"].size)  # token positions in the context
GRID["S"] = np.resize(np.geomspace(1e2, 1e6, 7), GRID["N"].size)  # optimizer steps


# The laws of issue 17 (MoE, vocabulary, ...) have their numpy references, parameter sets and input grids in
# tests/test_law_catalogue.py (CASES), checked there eagerly and under jit; this module covers the others.
from tests.test_law_catalogue import CASES as _NEW_CASES  # noqa: E402

NEW_LAWS = set(_NEW_CASES)
OLD_LAWS = [law_id for law_id in bs.list_laws() if law_id not in NEW_LAWS]


def _law_cases():
    cases = []
    for law_id in OLD_LAWS:
        law = bs.load_law(law_id)
        # a source that publishes only some parameters (Step Law: the optimum laws, not L0) is no full parameter set
        sets = [(pub.source, dict(pub.values)) for pub in law.published if set(pub.values) == set(law.parameter_names)]
        sets += [(f"extra{i}", p) for i, p in enumerate(EXTRA_PARAMS.get(law_id, []))]
        cases += [pytest.param(law_id, p, id=f"{law_id}-{label}") for label, p in sets]
    return cases


def test_x64_is_on():
    assert jnp.asarray(1.0).dtype == jnp.float64


def test_reference_covers_catalogue():
    """Adding a law to models/ without a reference implementation here fails."""
    assert sorted(set(REFERENCE) | NEW_LAWS) == bs.list_laws()
    # and each law has at least one parameter set besides its published ones, or published ones
    for law_id in OLD_LAWS:
        assert bs.load_law(law_id).published or EXTRA_PARAMS.get(law_id), law_id


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(("law_id", "params"), _law_cases())
def test_law_matches_numpy(law_id, params, jit):
    law = bs.load_law(law_id)
    assert set(params) == set(law.parameter_names)
    inputs = {n: GRID[n] for n in law.input_names}
    want = REFERENCE[law_id](params, **inputs)
    fn = jax.jit(law.log_fn) if jit else law.log_fn
    got_log = np.asarray(fn(params, {n: jnp.log(v) for n, v in inputs.items()}))
    assert got_log.dtype == np.float64 and got_log.shape == want.shape
    np.testing.assert_allclose(got_log, np.log(want), rtol=0, atol=ATOL_LOG)
    np.testing.assert_allclose(np.exp(got_log), want, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(law.predict(params, **inputs)), want, rtol=RTOL)


#: The same laws written in log space by hand (log-sum-exp over the terms, as Hoffmann et al. and Besiroglu et al.
#: fit them), and parameter sets where the linear formula over- or underflows float64 (exp(+-709) is its range).
LOG_REFERENCE = {
    "hoffmann2022": lambda p, N, D: np.logaddexp.reduce(
        np.broadcast_arrays(np.log(p["E"]), np.log(p["A"]) - p["alpha"] * np.log(N), np.log(p["B"]) - p["beta"] * np.log(D))
    ),
    "kaplan2020_n": lambda p, N: p["alpha_N"] * (np.log(p["N_c"]) - np.log(N)),
    "kaplan2020_d": lambda p, D: p["alpha_D"] * (np.log(p["D_c"]) - np.log(D)),
    "kaplan2020_nd": lambda p, N, D: p["alpha_D"] * np.logaddexp(
        p["alpha_N"] / p["alpha_D"] * (np.log(p["N_c"]) - np.log(N)), np.log(p["D_c"]) - np.log(D)
    ),
    "ouro2025": lambda p, N, D, T_m: np.logaddexp.reduce(np.broadcast_arrays(
        np.log(p["E"]),
        np.log(p["A"]) - p["alpha"] * np.logaddexp(np.log(N), np.log(p["t1"])),
        np.log(p["B"]) - p["beta"] * np.logaddexp(np.log(D), np.log(p["t2"])),
        np.log(p["C"]) - p["gamma"] * np.logaddexp(np.log(T_m), np.log(p["t3"])),
    )),
    "steplaw2025": lambda p, N, D, lr, batch_size: np.logaddexp.reduce(np.broadcast_arrays(
        np.log(p["E"]), np.log(p["A"]) - p["alpha"] * np.log(N), np.log(p["B"]) - p["beta"] * np.log(D)
    )) + _steplaw_bowl(p, N, D, lr, batch_size),
    "muennighoff2023": lambda p, N, D, U_D: np.logaddexp.reduce(np.broadcast_arrays(
        np.log(p["E"]),
        np.log(p["A"]) - p["alpha"] * np.log(_muennighoff_effective(p, N, D, U_D)[0]),
        np.log(p["B"]) - p["beta"] * np.log(_muennighoff_effective(p, N, D, U_D)[1]),
    )),
    "kaplan2020_per_token_steps": lambda p, T, S: np.logaddexp.reduce(np.broadcast_arrays(
        np.log(p["a"]), np.log(p["b"]) - p["c"] * S / (S + p["S_h"]) * np.log(T),
        p["alpha_S"] * (np.log(p["S_c"]) - np.log(S)),
    )),
}
EXTREME_PARAMS = {
    # E ~ 0 and both power terms ~1e-90..1e-60: N**alpha = 1e360 overflows, so A / N**alpha is lost in linear arithmetic
    "hoffmann2022": dict(E=1e-200, A=1e300, B=1e300, alpha=30.0, beta=30.0),
    "kaplan2020_n": dict(N_c=1e13, alpha_N=60.0),  # (1e13 / 1e6)**60 = 1e420
    "kaplan2020_d": dict(D_c=1e16, alpha_D=100.0),  # (1e16 / 1e8)**100 = 1e800
    "kaplan2020_nd": dict(N_c=1e13, D_c=1e16, alpha_N=60.0, alpha_D=0.5),
    # as hoffmann2022: (N + t1)**30 = 1e360 overflows while A / (N + t1)**30 = 1e-60 is the largest term
    "ouro2025": dict(E=1e-200, A=1e300, alpha=30.0, t1=1.0, B=1e300, beta=30.0, t2=1.0, C=1e-200, gamma=1.0, t3=1.0),
    # as hoffmann2022 for L0; the bowl is an ordinary factor
    "steplaw2025": dict(E=1e-200, A=1e300, alpha=30.0, B=1e300, beta=30.0, c_lr=1.79, a_N=-0.713, a_D=0.307, c_bs=0.58,
                        d_bs=0.571, k_lr_low=0.004, k_lr_high=0.01, k_bs=0.006, rho=-0.4),
    # as hoffmann2022 on the effective N', D' (>= U_N, U_D up to 1e13): N'**30 overflows
    "muennighoff2023": dict(E=1e-200, A=1e300, B=1e300, alpha=30.0, beta=30.0, R_D_star=15.4, R_N_star=5.3),
    # (S_c / S)**3 = 1e600 / S**3 overflows at every step count of the grid (S <= 1e6)
    "kaplan2020_per_token_steps": dict(a=1e-200, b=1e300, c=100.0, S_c=1e200, alpha_S=3.0, S_h=1.0),
}


def test_log_reference_covers_catalogue():
    assert sorted(LOG_REFERENCE) == sorted(EXTREME_PARAMS) == OLD_LAWS


@pytest.mark.parametrize("law_id", OLD_LAWS)
def test_law_is_evaluated_in_log_space(law_id):
    """Positive parameters are carried as logarithms, so the law stays exact where linear arithmetic cannot."""
    law = bs.load_law(law_id)
    params = EXTREME_PARAMS[law_id]
    inputs = {n: GRID[n] for n in law.input_names}
    with np.errstate(over="ignore", under="ignore"):
        linear = np.log(REFERENCE[law_id](params, **inputs))
    want = LOG_REFERENCE[law_id](params, **inputs)
    assert np.isfinite(want).all()
    assert not np.allclose(linear, want, rtol=1e-6), "bad test case: the linear formula should break down somewhere"
    got = np.asarray(jax.jit(law.log_fn)(params, {n: jnp.log(v) for n, v in inputs.items()}))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL_LOG)
    # and at ordinary constants the log-space reference is the linear one
    for pub in (p for p in law.published if set(p.values) == set(law.parameter_names)):
        np.testing.assert_allclose(
            LOG_REFERENCE[law_id](pub.values, **inputs), np.log(REFERENCE[law_id](pub.values, **inputs)), rtol=RTOL, atol=ATOL_LOG
        )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("hoffmann2022", 1.9366),  # Hoffmann et al.'s rounded constants at Chinchilla's N, D
        ("besiroglu2024", 1.9739),  # Besiroglu et al.'s refit
    ],
)
def test_chinchilla_known_value(source, expected):
    law = bs.load_law("hoffmann2022")
    params = dict(law.reference(source).values)
    value = float(law.predict(params, N=70e9, D=1.4e12))
    assert round(value, 4) == expected
    log_value = float(jax.jit(law.log_fn)(params, {"N": jnp.log(70e9), "D": jnp.log(1.4e12)}))
    assert round(float(np.exp(log_value)), 4) == expected


# ---------------------------------------------------------------------------------------------------------
# Parser safety
# ---------------------------------------------------------------------------------------------------------
NAMES = {"E", "A", "B", "alpha", "beta", "N", "D"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        # attribute access, subscripts, lambdas, comparisons, strings, other syntax
        ("N.__class__", r"unsupported syntax 'N\.__class__'"),
        ("N.__class__.__bases__", r"unsupported syntax 'N\.__class__\.__bases__'"),
        ("N.conjugate()", r"unsupported syntax 'N\.conjugate\(\)'"),
        ("N[0]", r"unsupported syntax 'N\[0\]'"),
        ("lambda: N", r"unsupported syntax 'lambda: N'"),
        ("(lambda x: x)(N)", r"unsupported syntax .*lambda"),
        ("N < D", r"unsupported syntax 'N < D'"),
        ("N == D", r"unsupported syntax 'N == D'"),
        ("'N'", r"unsupported syntax \"'N'\""),
        ("N + 'x'", r"unsupported syntax \"'x'\""),
        ("True + N", r"unsupported syntax 'True'"),
        ("N if D else E", r"unsupported syntax 'N if D else E'"),
        ("N and D", r"unsupported syntax 'N and D'"),
        ("not N", r"unsupported syntax 'not N'"),
        ("~N", r"unsupported syntax '~N'"),
        ("N // D", r"unsupported syntax 'N // D'"),
        ("N % D", r"unsupported syntax 'N % D'"),
        ("N @ D", r"unsupported syntax 'N @ D'"),
        ("[N, D]", r"unsupported syntax '\[N, D\]'"),
        ("(N, D)", r"unsupported syntax '\(N, D\)'|unsupported syntax 'N, D'"),
        ("f'{N}'", r"unsupported syntax"),
        ("(N := 1)", r"unsupported syntax 'N := 1'"),
        ("exp(**N)", r"'\*\*' arguments are not allowed"),
        # calls of functions outside the whitelist
        ("eval(N)", r"unknown functions \['eval'\] \(allowed: .*'exp'"),
        ("__import__(N)", r"unknown functions \['__import__'\]"),
        ("__import__('os')", r"unsupported syntax \"'os'\""),
        ("open(N) + exec(D)", r"unknown functions \['exec', 'open'\]"),
        ("getattr(N, D)", r"unknown functions \['getattr'\]"),
        # unknown symbols: all named at once, with the known ones listed
        ("E + Q / N**zeta", r"unknown symbols \['Q', 'zeta'\] \(known: \['A', 'B', 'D', 'E', 'N', 'alpha', 'beta'\]\)"),
        ("__builtins__", r"unknown symbols \['__builtins__'\]"),
        ("Q + foo(N)", r"unknown symbols \['Q'\].*; unknown functions \['foo'\]"),
        # syntax errors
        ("E +", r"cannot parse formula 'E \+'"),
        ("A / (N", r"cannot parse formula 'A / \(N'"),
        ("N D", r"cannot parse formula 'N D'"),
        ("N; D", r"cannot parse formula 'N; D'"),
        ("import os", r"cannot parse formula 'import os'"),
        ("", r"the formula must be a non-empty string, got ''"),
        ("   ", r"the formula must be a non-empty string, got '   '"),
        # arity
        ("exp(N, D)", r"exp\(\) takes 1 positional argument\(s\) in 'exp\(N, D\)'"),
        ("exp()", r"exp\(\) takes 1 positional argument"),
        ("exp(x=N)", r"exp\(\) takes 1 positional argument"),
        ("logaddexp(N)", r"logaddexp\(\) takes 2 positional argument"),
        ("E + maximum(N, D, A)", r"maximum\(\) takes 2 positional argument"),
        ("log(exp(N, D))", r"exp\(\) takes 1 positional argument"),
    ],
)
def test_parse_formula_rejects(text, match):
    with pytest.raises(FormulaError, match=match):
        parse_formula(text, NAMES)


def test_formula_error_is_value_error():
    # callers (and the CLI) may catch ValueError
    assert issubclass(FormulaError, ValueError)
    with pytest.raises(ValueError, match=r"unknown symbols \['Q'\]"):
        parse_formula("Q", NAMES)


@pytest.mark.parametrize("text", [None, 3.0, ["N"]])
def test_parse_formula_rejects_non_strings(text):
    with pytest.raises(FormulaError, match=r"the formula must be a non-empty string"):
        parse_formula(text, NAMES)


@pytest.mark.parametrize("func", sorted(FORMULA_FUNCTIONS))
def test_every_whitelisted_function_parses(func):
    args = ", ".join(["N"] * FORMULA_FUNCTIONS[func])
    parse_formula(f"{func}({args})", NAMES)


# ---------------------------------------------------------------------------------------------------------
# Log-space evaluation of arbitrary formulas
# ---------------------------------------------------------------------------------------------------------
P = dict(E=1.7, A=406.4, B=410.7, alpha=0.34, beta=0.28)
N_GRID = GRID["N"]
D_GRID = GRID["D"]

# (formula, reference log-value as numpy, inputs). References are written in linear space and logged, except where
# the linear value underflows (exp of a large negative number), where the exact log is written out.
LOG_CASES = [
    ("E + A / N**alpha + B / D**beta", lambda p, N, D: np.log(p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]), None),
    ("E - A / N**alpha", lambda p, N, D: np.log(p["E"] - p["A"] / N ** p["alpha"]), dict(N=np.geomspace(1e9, 1e12, 7))),
    ("E + B / D**beta - A / N**alpha", lambda p, N, D: np.log(p["E"] + p["B"] / D ** p["beta"] - p["A"] / N ** p["alpha"]), dict(N=np.geomspace(1e9, 1e12, 7), D=np.geomspace(1e9, 1e13, 7))),
    ("A * exp(-alpha * N)", lambda p, N, D: np.log(p["A"] * np.exp(-p["alpha"] * N)), dict(N=np.linspace(0.01, 50.0, 9))),
    ("exp(-N)", lambda p, N, D: -N, dict(N=np.linspace(0.5, 1e3, 9))),
    ("sqrt(N) + log(D)", lambda p, N, D: np.log(np.sqrt(N) + np.log(D)), None),
    ("sqrt(E - A / N**alpha)", lambda p, N, D: np.log(np.sqrt(p["E"] - p["A"] / N ** p["alpha"])), dict(N=np.geomspace(1e9, 1e12, 7))),
    ("maximum(N, D)", lambda p, N, D: np.log(np.maximum(N, D)), None),
    ("minimum(N, D)", lambda p, N, D: np.log(np.minimum(N, D)), None),
    ("maximum(E - A / N**alpha, B / D**beta)", lambda p, N, D: np.log(np.maximum(p["E"] - p["A"] / N ** p["alpha"], p["B"] / D ** p["beta"])), dict(N=np.geomspace(1e9, 1e12, 11), D=np.geomspace(1e8, 1e13, 11))),
    ("logaddexp(N, D)", lambda p, N, D: np.log(np.logaddexp(N, D)), None),
    ("logaddexp(log(N), log(D))", lambda p, N, D: np.log(np.log(N + D)), None),
    ("log1p(1 / N) * N", lambda p, N, D: np.log(np.log1p(1 / N) * N), None),
    ("expm1(alpha) * N", lambda p, N, D: np.log(np.expm1(p["alpha"]) * N), None),
    ("N**-0.5", lambda p, N, D: -0.5 * np.log(N), None),
    ("N**(-alpha) * D**-beta", lambda p, N, D: np.log(N ** (-p["alpha"]) * D ** (-p["beta"])), None),
    ("1 / N**alpha", lambda p, N, D: np.log(1 / N ** p["alpha"]), None),
    ("(N - D)**2", lambda p, N, D: np.log((N - D) ** 2), dict(D=1.5 * D_GRID)),  # base of either sign
    ("-(N - D)**3", lambda p, N, D: np.log(-((N - D) ** 3)), dict(N=np.geomspace(1e6, 1e9, 7), D=np.geomspace(1e10, 1e13, 7))),  # negative base, odd power
    ("(1 - E)**2 * N", lambda p, N, D: np.log((1 - p["E"]) ** 2 * N), None),
    ("(D / N - 1)**3", lambda p, N, D: np.log((D / N - 1) ** 3), dict(N=np.geomspace(1e6, 1e9, 7), D=np.geomspace(1e10, 1e13, 7))),
    ("A + -E", lambda p, N, D: np.log(p["A"] - p["E"]), dict(N=np.array([1.0]))),
    ("-(E - A) * N", lambda p, N, D: np.log(-(p["E"] - p["A"]) * N), None),
    ("2 * N + 0 * D", lambda p, N, D: np.log(2 * N + 0 * D), None),
    ("+N - 0.5", lambda p, N, D: np.log(N - 0.5), None),
    ("exp(alpha * log(N))", lambda p, N, D: p["alpha"] * np.log(N), None),
    ("E * (D / N)**alpha", lambda p, N, D: np.log(p["E"] * (D / N) ** p["alpha"]), None),
    ("A / (N + D)**alpha", lambda p, N, D: np.log(p["A"] / (N + D) ** p["alpha"]), None),
    ("(E - 1)**2 + N / D", lambda p, N, D: np.log((p["E"] - 1) ** 2 + N / D), None),
    ("(A / N)**(alpha / beta) * 3", lambda p, N, D: np.log((p["A"] / N) ** (p["alpha"] / p["beta"]) * 3), None),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("positive", ["all", "none"], ids=["params-in-log", "params-linear"])
@pytest.mark.parametrize(("text", "ref", "inputs"), LOG_CASES, ids=[f"{i}:{c[0]}" for i, c in enumerate(LOG_CASES)])
def test_log_formula_matches_numpy(text, ref, inputs, positive, jit):
    """Whether parameters are carried in log space (positive priors) or not must not change the numbers."""
    inputs = {**{"N": N_GRID, "D": D_GRID}, **(inputs or {})}
    n = min(v.size for v in inputs.values())
    inputs = {k: v[:n] for k, v in inputs.items()}
    node = parse_formula(text, NAMES)
    fn = compile_log_formula(node, set(P) if positive == "all" else set(), {"N", "D"})
    fn = jax.jit(fn) if jit else fn
    got = np.asarray(fn(P, {k: jnp.log(v) for k, v in inputs.items()}))
    want = ref(P, **inputs) * np.ones(n)
    assert np.all(np.isfinite(want)), "bad test case: the reference must be finite"
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL_LOG)


def test_log_space_avoids_underflow():
    """With positive parameters the product stays in log space: A * exp(-alpha * N) at N = 1e12 is exp(-3.4e11),
    which underflows to 0 in linear arithmetic, yet its log is exact."""
    fn = compile_log_formula(parse_formula("A * exp(-alpha * N)", NAMES), {"A", "alpha"}, {"N", "D"})
    got = np.asarray(fn(P, {"N": jnp.log(N_GRID), "D": jnp.log(D_GRID)}))
    np.testing.assert_allclose(got, np.log(P["A"]) - P["alpha"] * N_GRID, rtol=RTOL)


@pytest.mark.parametrize("positive", [{"E", "B", "beta", "t2"}, set()], ids=["params-in-log", "params-linear"])
def test_zero_input_with_offset(positive):
    """D = 0 (log D = -inf) with an offset is finite: E + B / t2**beta, and so is its gradient."""
    node = parse_formula("E + B / (D + t2)**beta", {"E", "B", "beta", "t2", "D"})
    fn = compile_log_formula(node, positive, {"D"})
    p = dict(E=1.7, B=410.7, beta=0.28, t2=1e6)
    D = np.array([0.0, 1e3, 1e9, 1e13])
    with np.errstate(divide="ignore"):
        log_D = jnp.log(D)
    got = np.asarray(jax.jit(fn)(p, {"D": log_D}))
    want = p["E"] + p["B"] / (D + p["t2"]) ** p["beta"]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(np.exp(got), want, rtol=RTOL)
    np.testing.assert_allclose(np.exp(got[0]), p["E"] + p["B"] / p["t2"] ** p["beta"], rtol=RTOL)
    grads = jax.grad(lambda q: fn(q, {"D": log_D}).sum())(p)
    assert all(np.isfinite(float(g)) for g in grads.values()), grads


def test_compiled_formula_needs_every_input():
    fn = compile_log_formula(parse_formula("N + D", {"N", "D"}), set(), {"N", "D"})
    with pytest.raises(KeyError, match="D"):
        fn({}, {"N": jnp.log(2.0)})


def test_log_sum_exp_is_nested_logaddexp_with_its_derivatives():
    """The n-ary log-sum-exp of a chain of positive terms gives nested logaddexp's value, first and second
    derivatives (to rounding: a shift held constant for differentiation changes none of them), and its infinities."""
    from bayescale.laws.formula import log_sum_exp

    rng = np.random.default_rng(0)
    terms = [rng.normal(0, 30, 200), rng.normal(0, 3, 200), np.float64(0.4)]  # terms 1e-30 to 1e30 apart
    nested = lambda t: jnp.logaddexp(jnp.logaddexp(t[0], t[1]), t[2])  # noqa: E731
    np.testing.assert_allclose(log_sum_exp(terms), nested(terms), rtol=1e-14)
    g1, g2 = (jax.grad(lambda t: f(t).sum())(tuple(terms)) for f in (lambda t: log_sum_exp(list(t)), nested))
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)
    h1, h2 = (jax.hessian(lambda x: f([x[0], x[1], x[2]]))(jnp.array([0.3, -0.2, 1.1]))
              for f in (log_sum_exp, nested))
    np.testing.assert_allclose(h1, h2, rtol=1e-12)
    inf = np.inf
    cases = [[-inf, -inf, -inf], [2.0, -inf, 0.5], [inf, 1.0, -inf]]
    np.testing.assert_array_equal(log_sum_exp([jnp.array(c) for c in zip(*cases)]),
                                  nested([jnp.array(c) for c in zip(*cases)]))
