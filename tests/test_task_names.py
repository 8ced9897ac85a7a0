"""Outside the task modules (``elp/tasks``) no code branches on a task's name: a comparison of a
value with a registered task's name (``task == "asr"``, ``task in ("emotion", "intent")``) is a task
spread over the tree. Such code asks the registry instead (target kind, evaluation, hooks)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from elp.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
#: folders whose code must not compare with task names (clients/ joins when the registry branch migrates it)
CHECKED = ("elp", "server", "training", "benchmarks")
EXEMPT = (REPO / "elp" / "tasks",)
#: the registered tasks' config names and endpoints (``/verify`` -> ``verify``)
NAMES = frozenset({spec.name for spec in TASKS} | {spec.endpoint for spec in TASKS})


def _names_in(node: ast.AST) -> set[str]:
    """Task names written as string literals in ``node`` (a constant, or a tuple/list/set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_names_in(element) for element in node.elts)) if node.elts else set()
    return set()


def task_name_comparisons(source: str) -> list[tuple[int, str]]:
    """(line, names) of every ``==``, ``!=``, ``in`` or ``not in`` comparison with a task-name literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        if not all(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            continue
        names = set().union(*(_names_in(part) for part in (node.left, *node.comparators)))
        if names:
            found.append((node.lineno, ", ".join(sorted(names))))
    return found


def _files(folder: str) -> list[Path]:
    return sorted(path for path in (REPO / folder).rglob("*.py")
                  if not any(path.is_relative_to(exempt) for exempt in EXEMPT))


@pytest.mark.parametrize("folder", CHECKED)
def test_no_code_outside_the_task_modules_compares_with_a_task_name(folder):
    offenders = [f"{path.relative_to(REPO)}:{line}: {names}" for path in _files(folder)
                 for line, names in task_name_comparisons(path.read_text(encoding="utf-8"))]
    assert not offenders, "compare with the registry, not task names:\n" + "\n".join(offenders)


def test_the_scan_finds_each_kind_of_task_name_comparison():
    source = ('if task == "asr": pass\n'
              'ok = "verify" != endpoint\n'
              'if name in ("emotion", "intent"): pass\n'
              'x = task not in ["verification"]\n'
              'fine = task == "other" or task in ("a", "b")\n'
              'also_fine = {"asr": 1}["asr"]\n')
    assert [line for line, _ in task_name_comparisons(source)] == [1, 2, 3, 4]
