"""Import contracts: the engine never imports a front end or the lab, the lab never imports the
UI, and the engine's import graph has no cycle.

The graph is read from the source with `ast`, so an import inside a function counts; only
imports under `if TYPE_CHECKING:` are left out (they never run). The folders are found from this
file's location, and each check first asserts it saw the files it should, so none can pass
because it looked in the wrong place.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "probes"
LAB = ROOT / "mxlens_lab"
UI = ROOT / "tui"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Every module `path` imports at run time, as absolute dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from probes.checks import session` imports probes.checks.session too.
            found.update(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _sources(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*.py"))
    assert len(files) >= 5, f"no sources found under {folder}"
    return files


def _offenders(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in _sources(folder):
        for module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


def test_engine_imports_no_front_end_and_no_lab() -> None:
    assert _offenders(ENGINE, ("textual", "rich", "tui", "mxlens_lab")) == []


def test_lab_imports_no_ui() -> None:
    assert _offenders(LAB, ("textual", "rich", "tui")) == []


def test_the_contract_checker_sees_a_violation(tmp_path: Path) -> None:
    # The checker itself must be able to fail: a planted import, in a function, is found.
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from textual.app import App\n", encoding="utf-8")
    planted_root = ROOT / "probes" / "planted_contract_probe.py"
    try:
        planted_root.write_text(planted.read_text(), encoding="utf-8")
        assert any("textual" in line for line in _offenders(ENGINE, ("textual",)))
    finally:
        planted_root.unlink()


def _engine_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in _sources(ENGINE)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            if imported in modules and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodule is not a cycle
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = dfs(node)
            if found:
                return found
    return None


def test_engine_import_graph_has_no_cycle() -> None:
    graph = _engine_graph()
    assert "probes.diagnose" in graph and "probes.checks.session" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


# The engine's layers, lowest first: a layer may import itself and the layers below it.
LAYERS = ("probes.model", "probes.net", "probes.checks")


def _layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        own = next((i for i, layer in enumerate(LAYERS) if module.startswith(layer + ".")), None)
        if own is None:
            continue
        for target in targets:
            if not any(target == lay or target.startswith(lay + ".") for lay in LAYERS[: own + 1]):
                bad.append(f"{module} imports {target}")
    return bad


def test_layers_point_one_way() -> None:
    # model imports nothing of ours outside model; net only model; checks only net and model.
    graph = _engine_graph()
    assert any(m.startswith("probes.checks.") for m in graph)
    assert _layer_violations(graph) == []


def test_layer_checker_sees_a_violation() -> None:
    assert _layer_violations({"probes.model.events": {"probes.net.dns"}}) == [
        "probes.model.events imports probes.net.dns"
    ]


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.lab
def test_a_real_headless_check_never_loads_textual_or_rich() -> None:
    # After a whole `mxlens check` on the lab, in a fresh interpreter, neither Textual nor
    # rich nor any tui module but the CLI and its headless command handlers (tui.commands)
    # is in sys.modules.
    code = (
        "import sys\n"
        "from tui.cli import main\n"
        "try:\n"
        "    main(['check', 'healthy.lab.test', '--lab', '--json'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')\n"
        "                or (m.startswith('tui.') and m != 'tui.cli'\n"
        "                    and m.partition('.')[2].partition('.')[0] != 'commands'))\n"
        "assert 'probes.diagnose' in sys.modules, 'the check did not run'\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert "LOADED []" in proc.stderr, proc.stderr[-2000:]
    assert '"schema"' in proc.stdout, proc.stdout[:500]


TESTS = ROOT / "tests"


def _test_module_importers() -> list[str]:
    """Files under tests/ that import a test module (tests.test_x, tests.integration.test_y):
    helpers belong in tests/support/, fixtures in a conftest.py."""
    bad = []
    for path in _sources(TESTS):
        for module in _imports(path):
            if module.startswith("tests.") and module.rpartition(".")[2].startswith("test_"):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


def test_no_test_module_imports_another() -> None:
    assert len(list(TESTS.rglob("test_*.py"))) >= 30, "the test modules were not found"
    assert _test_module_importers() == []


def test_the_test_import_checker_sees_a_violation() -> None:
    planted = TESTS / "support" / "planted_import_probe.py"
    try:
        planted.write_text("def f():\n    from tests import test_cli\n", encoding="utf-8")
        assert _test_module_importers() == [
            "tests/support/planted_import_probe.py imports tests.test_cli"
        ]
    finally:
        planted.unlink()
