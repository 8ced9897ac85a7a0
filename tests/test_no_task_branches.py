"""Outside the task modules (``elp/tasks/``) no code branches on a task's name or lists the tasks:
what a task does is asked of its ``TaskSpec``. Scans the syntax trees of the packages in
``SCANNED`` for comparisons with a registered task's name or endpoint (``task == "asr"``,
``task in ("emotion", "intent")``, ``case "verify":``) and for literal lists or dicts of two or more
of them (a copy of the registry)."""

from __future__ import annotations

import ast
from pathlib import Path

from elp.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("elp", "server", "clients", "training", "benchmarks")
EXEMPT = (ROOT / "elp" / "tasks",)
#: modules that describe data sets (which tasks' manifests the generated corpus and the evaluation
#: suites hold, how their rows are made): their tables may be keyed by task name; they never branch on one
DATA_SET_TABLES = (ROOT / "training" / "corpus", ROOT / "training" / "suites")
NAMES = frozenset({spec.name for spec in TASKS} | {spec.endpoint for spec in TASKS})


def _is_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in NAMES


def _names_in(node: ast.AST) -> int:
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return sum(_is_name(element) for element in node.elts)
    if isinstance(node, ast.Dict):
        return sum(key is not None and _is_name(key) for key in node.keys)
    return 0


def task_name_uses(source: str, tables_allowed: bool = False) -> list[tuple[int, str]]:
    """(line, what) for every comparison with a task name and (unless ``tables_allowed``) every
    literal collection of task names."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_is_name(o) or _names_in(o) for o in operands):
                found.append((node.lineno, "compares with a task name"))
        elif isinstance(node, ast.MatchValue) and _is_name(node.value):
            found.append((node.value.lineno, "matches a task name"))
        elif (not tables_allowed and isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict)
              and _names_in(node) >= 2):
            found.append((node.lineno, "lists task names"))
    return sorted(found)


def _sources() -> list[Path]:
    return sorted(path for package in SCANNED for path in (ROOT / package).rglob("*.py")
                  if not any(path.is_relative_to(exempt) for exempt in EXEMPT))


def test_the_scan_finds_what_it_looks_for() -> None:
    source = ('if task == "asr": pass\nx = t in ("emotion", "intent")\nLIST = ["asr", "verify"]\n'
              'match t:\n    case "intent": pass\nfine = task == spec.name\n')
    assert [line for line, _ in task_name_uses(source)] == [1, 2, 2, 3, 5]
    assert [line for line, _ in task_name_uses(source, tables_allowed=True)] == [1, 2, 5]  # branches still count


def test_no_code_outside_the_task_modules_branches_on_a_task_name() -> None:
    sources = _sources()
    assert len(sources) > 20  # the scan sees the packages
    offenders = [f"{path.relative_to(ROOT)}:{line}: {what}" for path in sources
                 for line, what in task_name_uses(path.read_text(encoding="utf-8"),
                                                  any(path.is_relative_to(folder) for folder in DATA_SET_TABLES))]
    assert offenders == [], "ask elp.tasks instead:\n" + "\n".join(offenders)
