"""The one rule: `common/` imports neither Flask nor Celery (queue.py excepted), and
adapters never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_common_imports_neither_flask_nor_celery():
    offenders = []
    for path in _modules("common"):
        if path.name == "queue.py":
            continue
        for name in _imports(path):
            if name.split(".")[0] in {"flask", "celery", "werkzeug", "kombu"}:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_common_never_imports_services_or_dashboard():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules("common")
        for name in _imports(path)
        if name.split(".")[0] in {"services", "dashboard"}
    ]
    assert offenders == []


def test_adapters_do_not_import_each_other():
    rules = {
        "services/api": ("services.worker", "services.scheduler"),
        "services/worker": ("services.api", "services.scheduler", "dashboard"),
        "services/scheduler": ("services.api", "services.worker", "dashboard"),
        "dashboard": ("services",),
    }
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder, banned in rules.items()
        for path in _modules(folder)
        for name in _imports(path)
        if name.startswith(banned)
    ]
    assert offenders == []


def test_common_is_grouped_by_domain():
    """A newcomer finds a behaviour from the tree in one step: the top level keeps
    only what every domain uses; each domain package says what it holds."""
    top_level = {p.stem for p in (ROOT / "common").glob("*.py")} - {"__init__"}
    assert top_level <= {
        "config",
        "errors",
        "logging",
        "clock",
        "queue",
        "task_names",
        "broker",
        "demo",
        "process_state",
        "memory",  # the processes' own: glibc's heap, API and worker alike
    }, "put new modules in a domain package (common/<domain>/)"
    for package in ("models", "monitoring", "rollouts", "jobs", "data", "storage"):
        init = ROOT / "common" / package / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), package
