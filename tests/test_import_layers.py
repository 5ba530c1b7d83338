"""The package's shape: imports point one way through the layers, no module sits in an import cycle, and no
function hides a gan_ssl import to dodge one (issue 24). Read from the source with `ast`, nothing imported."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gan_ssl"
# Bottom to top; a module may import its own layer and those below it.
LAYERS = ["core", "nn", "models", "config", "data", "families", "engine", "inference", "evaluation", "api", "cli"]
TOP_LEVEL_API = {"gan_ssl", "gan_ssl.api", "gan_ssl.train"}  # the façade and its aliases
# Lazy on purpose: back-compatible aliases resolved on first use (`gan_ssl.config.resolve`, `gan_ssl.train`, ...).
ALIAS_HOOKS = {("gan_ssl", "__getattr__"), ("gan_ssl.config", "__getattr__")}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(mod: str) -> int:
    if mod == "gan_ssl.__main__":  # `python -m gan_ssl`: the CLI
        return LAYERS.index("cli")
    if mod in TOP_LEVEL_API:
        return LAYERS.index("api")
    return LAYERS.index(mod.split(".")[1])


class Imports(ast.NodeVisitor):
    """gan_ssl imports of one module: (target module, line, enclosing function or None)."""

    def __init__(self, mod: str, is_pkg: bool, known: set[str]) -> None:
        self.mod, self.is_pkg, self.known = mod, is_pkg, known
        self.found: list[tuple[str, int, str | None]] = []
        self.func: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.func.append(node.name)
        self.generic_visit(node)
        self.func.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def _add(self, target: str, node: ast.AST) -> None:
        while target not in self.known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in self.known and target != self.mod:
            self.found.append((target, node.lineno, self.func[-1] if self.func else None))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name.split(".")[0] == "gan_ssl":
                self._add(a.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            pkg = self.mod.split(".") if self.is_pkg else self.mod.split(".")[:-1]
            base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
        if base.split(".")[0] != "gan_ssl":
            return
        for a in node.names:
            self._add(f"{base}.{a.name}" if f"{base}.{a.name}" in self.known else base, node)


def scan() -> dict[str, list[tuple[str, int, str | None]]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    known = set(files)
    out = {}
    for mod, path in files.items():
        v = Imports(mod, path.name == "__init__.py", known)
        v.visit(ast.parse(path.read_text()))
        out[mod] = v.found
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


IMPORTS = scan()


def test_every_module_has_a_layer() -> None:
    for mod in IMPORTS:
        assert mod in TOP_LEVEL_API or mod == "gan_ssl.__main__" or mod.split(".")[1] in LAYERS, f"{mod} is outside the layers {LAYERS}"


def test_no_import_cycle() -> None:
    graph = {m: {t for t, _, func in found if (m, func) not in ALIAS_HOOKS} for m, found in IMPORTS.items()}
    found = cycles(graph)
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_imports_point_down() -> None:
    up = [f"{m}:{line} imports {t} ({LAYERS[layer(t)]} is above {LAYERS[layer(m)]})"
          for m, found in IMPORTS.items() for t, line, func in found
          if layer(t) > layer(m) and (m, func) not in ALIAS_HOOKS]
    assert not up, "\n".join(up)


def test_no_function_local_imports_outside_the_cli() -> None:
    local = [f"{m}:{line} imports {t} inside {func}()" for m, found in IMPORTS.items() for t, line, func in found
             if func is not None and LAYERS[layer(m)] != "cli" and (m, func) not in ALIAS_HOOKS]
    assert not local, "\n".join(local)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_module_size(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG)} has {n} lines (at most {MAX_LINES}: split it by concern)"


def test_top_level_api_in_a_fresh_interpreter() -> None:
    """`gan_ssl.train` and friends resolve on first use, before anything imported the submodules."""
    code = ("import gan_ssl, gan_ssl.api as api; "
            "assert callable(gan_ssl.train) and gan_ssl.train.train is api.train and gan_ssl.train.build_state; "
            "assert gan_ssl.resolve is api.resolve and gan_ssl.load is api.load and gan_ssl.load_images is api.load_images; "
            "assert gan_ssl.load_generator is api.load_generator")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent)
    assert r.returncode == 0, r.stderr


def test_public_api_and_old_paths() -> None:
    import gan_ssl
    import gan_ssl.config
    import gan_ssl.data
    import gan_ssl.train
    from gan_ssl.families.resolve import resolve

    assert gan_ssl.resolve is resolve and gan_ssl.config.resolve is resolve
    assert callable(gan_ssl.train) and gan_ssl.train.train is gan_ssl.api.train
    assert callable(gan_ssl.train.build_state) and callable(gan_ssl.train.train_step)
    assert gan_ssl.load is gan_ssl.api.load and callable(gan_ssl.load_generator)
    assert gan_ssl.load_images is gan_ssl.data.load_images
