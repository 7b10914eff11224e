"""Split unit tests into what the solution computes (probes) and what the tests decide (the judge).

    plan = plan_tests(["assert add(1, 2) == 3", "assert abs(area(2) - 12.566) < 1e-3"])
    plan.probes   # ['add(1, 2)', 'area(2)']           evaluated in the solution's sandbox
    plan.checks   # ['__probe__[0] == 3', 'abs(__probe__[1] - 12.566) < 1e-3']   evaluated by the judge

A probe is a smallest sub-expression that needs the solution: a call of a name the tests do not define, an
attribute or item of such a call, or such a name itself. Comparisons, arithmetic, boolean logic, displays and
calls of built-ins or of the tests' own helpers stay with the judge, so the solution never sees an expected
value and never runs a comparison. Tests that cannot be split this way (a probe that would need a helper or a
comprehension variable, a lambda, setup that uses the solution) return None: they run whole, in one process.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

from reasonrl.rewards.code_harness import decode, split_tests

_BUILTINS = frozenset(dir(builtins))
_JUDGE_SIDE = (
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.IfExp,
    ast.Tuple,
    ast.List,
    ast.Set,
    ast.Dict,
    ast.Constant,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.Starred,
)


@dataclass(frozen=True)
class Plan:
    setup: list[str]
    checks: list[str]
    """Each test's expression with its probes replaced by __probe__[k]."""
    uses: list[list[int]]
    """The probes each check reads."""
    probes: list[str]

    @property
    def local(self) -> bool:
        """No setup and checks made of operators on probe values and constants only (no calls, no names): the
        reward worker can judge them itself, without a second sandbox."""
        trees = [ast.parse(c, mode="eval") for c in self.checks]
        return not self.setup and all(
            _free_names(tree) <= {"__probe__"}
            and not any(isinstance(n, (ast.Call, ast.Lambda, ast.comprehension)) for n in ast.walk(tree))
            for tree in trees
        )

    def judge(self, answers: list[dict]) -> list[tuple[bool, str]]:
        """Verdicts of a local plan from the probes' answers ({"value": encoded} or {"error": reason})."""
        values = [decode(a["value"]) if "value" in a else None for a in answers]
        results = []
        for check, uses in zip(self.checks, self.uses):
            errors = [answers[k]["error"] for k in uses if "error" in answers[k]]
            if errors:
                results.append((False, errors[0]))
                continue
            try:
                ok = bool(eval(check, {"__builtins__": {}, "__probe__": values}))  # noqa: S307  (operators only)
            except Exception as e:  # e.g. a probe value of the wrong type for an operator
                results.append((False, f"{type(e).__name__}: {e}"[:300]))
                continue
            results.append((ok, "" if ok else "AssertionError"))
        return results


class _CannotSplit(Exception):
    pass


def _free_names(node: ast.AST) -> set[str]:
    """Names a node reads that it does not bind itself (comprehension and lambda variables are bound)."""
    loaded = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    bound = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {
        a.arg for n in ast.walk(node) if isinstance(n, ast.Lambda) for a in ast.walk(n.args) if isinstance(a, ast.arg)
    }
    return loaded - bound


def _bound_by(statements: list[str]) -> set[str]:
    names: set[str] = set()
    for source in statements:
        for node in ast.parse(source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            else:
                names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


class _Splitter(ast.NodeTransformer):
    def __init__(self, known: frozenset[str], probes: list[str]) -> None:
        self.known, self.probes = known, probes
        self.used: list[int] = []

    def visit(self, node: ast.AST) -> ast.AST:
        if not isinstance(node, ast.expr):
            return self.generic_visit(node)
        needs = _free_names(node) - self.known
        if not needs:
            return node
        judge_call = isinstance(node, ast.Call) and not (_free_names(node.func) - self.known)
        if isinstance(node, _JUDGE_SIDE) or judge_call:
            return self.generic_visit(node)
        if isinstance(
            node,
            (
                ast.Lambda,
                ast.ListComp,
                ast.SetComp,
                ast.DictComp,
                ast.GeneratorExp,
                ast.NamedExpr,
                ast.Await,
                ast.Yield,
                ast.YieldFrom,
            ),
        ) or (_free_names(node) & (self.known - _BUILTINS)):
            raise _CannotSplit
        source = ast.unparse(node)
        if source not in self.probes:
            self.probes.append(source)
        self.used.append(self.probes.index(source))
        return ast.Subscript(
            value=ast.Name("__probe__", ast.Load()), slice=ast.Constant(self.probes.index(source)), ctx=ast.Load()
        )


def plan_tests(tests: str | list[str]) -> Plan | None:
    """The split of tests into probes and judged checks; None when they must run whole. Raises SyntaxError
    (a ValueError for callers) when the tests do not parse."""
    setup, checks = split_tests(tests)
    known = _BUILTINS | _bound_by(setup)
    if any(_free_names(ast.parse(s)) - known for s in setup):
        return None  # the setup itself uses the solution
    probes: list[str] = []
    judged, uses = [], []
    for check in checks:
        body = ast.parse(check).body
        if len(body) != 1 or not isinstance(body[0], ast.Assert):
            return None
        splitter = _Splitter(known, probes)
        try:
            expression = splitter.visit(body[0].test)
        except _CannotSplit:
            return None
        judged.append(ast.unparse(expression))
        uses.append(sorted(set(splitter.used)))
    return Plan(setup=setup, checks=judged, uses=uses, probes=probes)
