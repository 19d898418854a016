"""Safe parsing of law formulas and prior expressions.

A formula such as ``"E + A / N**alpha + B / D**beta"`` is parsed with :mod:`ast` into a tree of frozen
nodes over a whitelist of operators and functions; nothing is ever passed to ``eval``. Unknown symbols are
all named in one error.

The compiled function evaluates the formula *in log space*: every value that is known to be positive is
carried as its logarithm, so sums of positive terms become one log-sum-exp and powers become products. For
the Chinchilla form this yields exactly the log-sum-exp parameterisation used by Hoffmann et al. (2022) and
Besiroglu et al. (2024), ``log L = LSE(log E, log A - alpha log N, log B - beta log D)``, without the law
author having to write it. Values whose sign is unknown (after a subtraction, say) fall back to ordinary
arithmetic, so any formula over the whitelist still evaluates correctly.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FormulaError", "Node", "PowerTerm", "parse_formula", "compile_log_formula", "compile_formula",
           "power_terms", "FORMULA_FUNCTIONS"]


class FormulaError(ValueError):
    """A formula or prior expression that cannot be parsed or refers to unknown symbols."""


# ---------------------------------------------------------------------------------------------------------
# Frozen node tree
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Sym:
    name: str


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / **
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Neg:
    operand: "Node"


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple["Node", ...]
    keywords: tuple[tuple[str, "Node"], ...] = ()


Node = Union[Num, Sym, BinOp, Neg, Call]

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}

#: Functions a formula may call, with their arity.
FORMULA_FUNCTIONS: dict[str, int] = {
    "exp": 1,
    "log": 1,
    "log1p": 1,
    "expm1": 1,
    "sqrt": 1,
    "logaddexp": 2,
    "minimum": 2,
    "maximum": 2,
}


def _convert(node: ast.AST, text: str) -> Node:
    if isinstance(node, ast.Expression):
        return _convert(node.body, text)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Num(float(node.value))
    if isinstance(node, ast.Name):
        return Sym(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return BinOp(_BINOPS[type(node.op)], _convert(node.left, text), _convert(node.right, text))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return Neg(_convert(node.operand, text))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _convert(node.operand, text)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        kws = []
        for kw in node.keywords:
            if kw.arg is None:
                raise FormulaError(f"'**' arguments are not allowed in {text!r}")
            kws.append((kw.arg, _convert(kw.value, text)))
        return Call(node.func.id, tuple(_convert(a, text) for a in node.args), tuple(kws))
    snippet = ast.get_source_segment(text, node) or type(node).__name__
    raise FormulaError(
        f"unsupported syntax {snippet!r} in {text!r}: only numbers, names, + - * / **, unary minus "
        f"and calls of whitelisted functions are allowed"
    )


def symbols_of(node: Node) -> tuple[set[str], set[str]]:
    """Return (names used as values, names used as functions)."""
    if isinstance(node, Num):
        return set(), set()
    if isinstance(node, Sym):
        return {node.name}, set()
    if isinstance(node, Neg):
        return symbols_of(node.operand)
    if isinstance(node, BinOp):
        a, fa = symbols_of(node.left)
        b, fb = symbols_of(node.right)
        return a | b, fa | fb
    names, funcs = set(), {node.func}
    for child in list(node.args) + [v for _, v in node.keywords]:
        n, f = symbols_of(child)
        names |= n
        funcs |= f
    return names, funcs


def parse_expression(
    text: str, *, names: set[str], functions: Mapping[str, int] | set[str], what: str = "formula"
) -> Node:
    """Parse ``text`` into a node tree, checking every symbol against the allowed ``names`` and ``functions``.

    Raises
    ------
    FormulaError
        On a syntax error, unsupported syntax, or unknown symbols (all of them are named).
    """
    if not isinstance(text, str) or not text.strip():
        raise FormulaError(f"the {what} must be a non-empty string, got {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise FormulaError(f"cannot parse {what} {text!r}: {err.msg}") from None
    node = _convert(tree, text.strip())
    used, called = symbols_of(node)
    unknown_names = sorted(used - set(names))
    unknown_funcs = sorted(called - set(functions))
    if unknown_names or unknown_funcs:
        parts = []
        if unknown_names:
            parts.append(f"unknown symbols {unknown_names} (known: {sorted(names)})")
        if unknown_funcs:
            parts.append(f"unknown functions {unknown_funcs} (allowed: {sorted(functions)})")
        raise FormulaError(f"in {what} {text!r}: " + "; ".join(parts))
    if isinstance(functions, Mapping):
        check_arity(node, functions, text)
    return node


def check_arity(node: Node, functions: Mapping[str, int], text: str) -> None:
    if isinstance(node, BinOp):
        check_arity(node.left, functions, text)
        check_arity(node.right, functions, text)
    elif isinstance(node, Neg):
        check_arity(node.operand, functions, text)
    elif isinstance(node, Call):
        if node.keywords or len(node.args) != functions[node.func]:
            raise FormulaError(
                f"{node.func}() takes {functions[node.func]} positional argument(s) in {text!r}"
            )
        for a in node.args:
            check_arity(a, functions, text)


def parse_formula(text: str, names: set[str]) -> Node:
    """Parse a law formula over ``names`` (parameters and inputs) and :data:`FORMULA_FUNCTIONS`."""
    return parse_expression(text, names=names, functions=FORMULA_FUNCTIONS, what="formula")


# ---------------------------------------------------------------------------------------------------------
# Log-space evaluation
# ---------------------------------------------------------------------------------------------------------
class FormulaValue:
    """A value carried as ``lin`` (plain) and/or ``log`` (its logarithm, only when known positive)."""

    __slots__ = ("lin", "log", "positive")

    def __init__(self, lin: Any = None, log: Any = None, positive: bool = False):
        self.lin, self.log, self.positive = lin, log, positive or log is not None

    def as_lin(self):
        return self.lin if self.lin is not None else jnp.exp(self.log)

    def as_log(self):
        return self.log if self.log is not None else jnp.log(self.lin)


def _addends(node: Node) -> list[Node]:
    """The terms of a chain of additions: ``[a, b, c]`` for ``(a + b) + c`` or ``a + (b + c)``."""
    if isinstance(node, BinOp) and node.op == "+":
        return _addends(node.left) + _addends(node.right)
    return [node]


def log_sum_exp(logs: list[Any]) -> Any:
    """``log(sum(exp(l) for l in logs))``, elementwise over broadcast arrays, shifted by their largest value.

    One n-ary sum instead of nested ``jnp.logaddexp``: the same value to rounding, and a cheaper gradient (0.75-0.88
    of the nested form's median time at 1e4-1e6 rows: ``logaddexp`` guards every pair against infinities with selects
    and ``log1p``; benchmarks/formula_gradient.py, docs/performance.md). The
    shift is a constant for differentiation (as in ``jax.nn.logsumexp``): the value does not depend on it, so
    derivatives of every order are exact. A shift that is not finite (every term ``-inf``, or one ``+inf``) is replaced
    by 0, so those cases give ``-inf`` and ``+inf`` as ``logaddexp`` does."""
    if len(logs) == 1:
        return logs[0]
    shift = logs[0]
    for value in logs[1:]:
        shift = jnp.maximum(shift, value)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
    total = jnp.exp(logs[0] - shift)
    for value in logs[1:]:
        total = total + jnp.exp(value - shift)
    return shift + jnp.log(total)


def evaluate_node(node: Node, env: Mapping[str, FormulaValue]) -> FormulaValue:
    if isinstance(node, Num):
        return FormulaValue(lin=node.value, log=math.log(node.value) if node.value > 0 else None)
    if isinstance(node, Sym):
        return env[node.name]
    if isinstance(node, Neg):
        return FormulaValue(lin=-evaluate_node(node.operand, env).as_lin())
    if isinstance(node, BinOp) and node.op == "+":
        addends = [evaluate_node(n, env) for n in _addends(node)]
        if all(v.positive for v in addends):  # a chain of positive terms: one n-ary log-sum-exp
            return FormulaValue(log=log_sum_exp([v.as_log() for v in addends]))
        total = addends[0]
        for v in addends[1:]:  # left to right, positive pairs in log space
            total = (FormulaValue(log=jnp.logaddexp(total.as_log(), v.as_log())) if total.positive and v.positive
                     else FormulaValue(lin=total.as_lin() + v.as_lin()))
        return total
    if isinstance(node, BinOp):
        a, b = evaluate_node(node.left, env), evaluate_node(node.right, env)
        both = a.positive and b.positive
        if node.op == "-":
            return FormulaValue(lin=a.as_lin() - b.as_lin())
        if node.op == "*":
            return FormulaValue(log=a.as_log() + b.as_log()) if both else FormulaValue(lin=a.as_lin() * b.as_lin())
        if node.op == "/":
            return FormulaValue(log=a.as_log() - b.as_log()) if both else FormulaValue(lin=a.as_lin() / b.as_lin())
        # power: a positive base keeps the result positive, whatever the exponent's sign
        if a.positive:
            return FormulaValue(log=b.as_lin() * a.as_log())
        return FormulaValue(lin=a.as_lin() ** b.as_lin())
    args = [evaluate_node(x, env) for x in node.args]
    f = node.func
    if f == "exp":
        return FormulaValue(log=args[0].as_lin())
    if f == "log":
        return FormulaValue(lin=args[0].as_log())
    if f == "sqrt":
        return FormulaValue(log=0.5 * args[0].as_log()) if args[0].positive else FormulaValue(lin=jnp.sqrt(args[0].as_lin()))
    if f == "logaddexp":
        return FormulaValue(lin=jnp.logaddexp(args[0].as_lin(), args[1].as_lin()))
    if f in ("minimum", "maximum"):
        op = jnp.minimum if f == "minimum" else jnp.maximum
        if args[0].positive and args[1].positive:
            return FormulaValue(log=op(args[0].as_log(), args[1].as_log()))
        return FormulaValue(lin=op(args[0].as_lin(), args[1].as_lin()))
    if f == "log1p":
        return FormulaValue(lin=jnp.log1p(args[0].as_lin()))
    if f == "expm1":
        return FormulaValue(lin=jnp.expm1(args[0].as_lin()))
    raise AssertionError(f"unreachable: {f}")  # parse_formula rejects other names


def compile_log_formula(
    node: Node, positive_params: set[str], input_names: set[str]
) -> Callable[[Mapping[str, Any], Mapping[str, Any]], Any]:
    """Compile a node tree to ``log_fn(params, log_inputs) -> log(value)``.

    Parameters
    ----------
    node
        Parsed formula.
    positive_params
        Parameters whose prior support is positive; they are carried in log space.
    input_names
        Inputs; they are passed as logarithms (inputs are validated non-negative at load time, and
        ``log(0) = -inf`` is handled exactly by ``logaddexp``).
    """

    def log_fn(params: Mapping[str, Any], log_inputs: Mapping[str, Any]):
        env: dict[str, FormulaValue] = {}
        for name, value in params.items():
            env[name] = FormulaValue(lin=value, positive=name in positive_params)
        for name in input_names:
            env[name] = FormulaValue(log=log_inputs[name])
        return evaluate_node(node, env).as_log()

    return log_fn


def compile_formula(
    node: Node, positive_params: set[str], input_names: set[str]
) -> Callable[[Mapping[str, Any], Mapping[str, Any]], Any]:
    """As :func:`compile_log_formula`, returning the value itself (for expressions of any sign, such as exponents)."""

    def fn(params: Mapping[str, Any], log_inputs: Mapping[str, Any]):
        env = {name: FormulaValue(lin=value, positive=name in positive_params) for name, value in params.items()}
        env.update({name: FormulaValue(log=log_inputs[name]) for name in input_names})
        return evaluate_node(node, env).as_lin()

    return fn


# ---------------------------------------------------------------------------------------------------------
# Power-law terms
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerTerm:
    """A term ``amplitude * base**power`` of a formula: ``amplitude`` a parameter, ``base`` an expression that uses
    at least one input (``N``, ``N + t1``), ``power`` an expression of parameters only (``-alpha``)."""

    amplitude: str
    base: Node
    power: Node


def _power_of(node: Node) -> tuple[Node, Node] | None:
    """(base, power) when ``node`` is ``base**power``."""
    if isinstance(node, BinOp) and node.op == "**":
        return node.left, node.right
    return None


def power_terms(node: Node, parameters: set[str], inputs: set[str]) -> list[PowerTerm]:
    """Every power-law term of a formula, in reading order: ``A / base**e``, ``A * base**p`` and ``base**p * A``, with
    ``A`` a parameter, ``base`` using an input and not ``A``, and ``p`` (or ``e``) using parameters other than ``A``
    and no input. Such a term is a straight line in log space, ``log A + p log base``, whose slope and intercept the
    data pin down jointly at the data's centre of ``log base``: what :mod:`bayescale.infer.reparam` uses."""
    found: list[PowerTerm] = []

    def candidate(amplitude: Node, power_node: Node, negate: bool) -> None:
        bp = _power_of(power_node)
        if not (isinstance(amplitude, Sym) and amplitude.name in parameters and bp):
            return
        base, power = bp
        base_names, power_names = symbols_of(base)[0], symbols_of(power)[0]
        if (base_names & inputs and amplitude.name not in base_names and power_names & parameters
                and not power_names & inputs and amplitude.name not in power_names):
            found.append(PowerTerm(amplitude.name, base, Neg(power) if negate else power))

    def walk(n: Node) -> None:
        if isinstance(n, BinOp):
            if n.op == "/":
                candidate(n.left, n.right, negate=True)
            elif n.op == "*":
                candidate(n.left, n.right, negate=False)
                candidate(n.right, n.left, negate=False)
            walk(n.left)
            walk(n.right)
        elif isinstance(n, Neg):
            walk(n.operand)
        elif isinstance(n, Call):
            for a in n.args:
                walk(a)

    walk(node)
    return found


def unparse(node: Node) -> str:
    """Text of a node tree (fully parenthesised where an operator is nested), for records and messages."""
    if isinstance(node, Num):
        return f"{node.value:g}"
    if isinstance(node, Sym):
        return node.name
    if isinstance(node, Neg):
        inner = unparse(node.operand)
        return f"-{inner}" if isinstance(node.operand, (Num, Sym, Call)) else f"-({inner})"
    if isinstance(node, BinOp):
        def side(n: Node) -> str:
            return unparse(n) if isinstance(n, (Num, Sym, Call)) else f"({unparse(n)})"
        return f"{side(node.left)} {node.op} {side(node.right)}"
    return f"{node.func}({', '.join(unparse(a) for a in node.args)})"


def evaluate_number(node: Node, env: Mapping[str, float]) -> float:
    """Evaluate a node tree of plain numbers (used for prior arguments), with ``exp``, ``log``, ``sqrt``.

    Computes in IEEE float64: an overflow, a division by zero or a value outside a function's domain gives
    ``inf`` or ``nan`` (never a Python exception), which :meth:`bayescale.laws.priors.Prior.distribution` reports as a
    non-finite argument.
    """
    with np.errstate(all="ignore"):
        return float(_number(node, env))


def evaluate_array(node: Node, env: Mapping[str, Any]) -> Any:
    """As :func:`evaluate_number`, with JAX arithmetic, for data statistics that are traced arrays (batched fits:
    one value per fit). No checks: validate each fit's prior with :func:`evaluate_number` first."""
    return _number(node, env, jnp)


def _number(node: Node, env: Mapping[str, Any], xp: Any = np) -> Any:
    if isinstance(node, Num):
        return xp.float64(node.value)
    if isinstance(node, Sym):
        return xp.asarray(env[node.name], dtype=xp.float64)
    if isinstance(node, Neg):
        return -_number(node.operand, env, xp)
    if isinstance(node, BinOp):
        a, b = _number(node.left, env, xp), _number(node.right, env, xp)
        if node.op == "+":
            return a + b
        if node.op == "-":
            return a - b
        if node.op == "*":
            return a * b
        if node.op == "/":
            return a / b
        return xp.power(a, b)
    fns = {"exp": xp.exp, "log": xp.log, "sqrt": xp.sqrt}
    return fns[node.func](*(_number(a, env, xp) for a in node.args))
