"""The bigdl_py package imports without circles.

The graph is read from the source with `ast`: every `import` statement of a module,
at its top level or inside a function (a deferred import still makes the two modules
depend on each other), gives an edge to the module it names. Folders are mapped to
package names as pyproject.toml's package-dir installs them.
"""
import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_dirs():
    """{package name: folder} as setuptools installs them (pyproject.toml package-dir)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return {name: ROOT / folder for name, folder in tomllib.load(f)["tool"]["setuptools"]["package-dir"].items()}


def module_files(dirs):
    """{dotted module name: source file} of every module under the package folders."""
    modules = {}
    for package, folder in dirs.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package] + parts)
            # A sub-package mapped elsewhere (bigdl_py.kernels) is not also a folder of bigdl_py.
            if not any(name.startswith(other + ".") or name == other for other in dirs
                       if other != package and other.startswith(package + ".")):
                modules[name] = path
    return modules


def imported_modules(name, path, modules):
    """The package modules `name` (source at `path`) imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[:len(anchor) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                # `from pkg import sub` imports the module pkg.sub; `from mod import name` imports mod.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph():
    modules = module_files(package_dirs())
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import circle as [a, b, ..., a], or None (iterative depth-first search)."""
    state = {}  # module -> "open" while on the current path, "done" after
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = "open"
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = "open"
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_covers_the_package_and_its_mapped_folders():
    graph = import_graph()
    assert "bigdl_py.engine.distri" in graph and "bigdl_py.kernels.conv" in graph
    assert any(name.startswith("bigdl_py.pipelines.") for name in graph)
    assert "bigdl_py.engine.checkpoint" in graph["bigdl_py.engine.local"]


def test_a_deferred_import_counts_as_an_edge(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from pkg import b\n    return b\n")
    b = tmp_path / "b.py"
    b.write_text("from pkg.a import f\n")
    modules = {"pkg.a": a, "pkg.b": b}
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]


def test_relative_imports_resolve_against_the_package(tmp_path):
    init = tmp_path / "__init__.py"
    init.write_text("from . import b\n")
    b = tmp_path / "b.py"
    b.write_text("from .c import x\n")
    c = tmp_path / "c.py"
    c.write_text("x = 1\n")
    modules = {"pkg": init, "pkg.b": b, "pkg.c": c}
    assert imported_modules("pkg", init, modules) == {"pkg.b"}
    assert imported_modules("pkg.b", b, modules) == {"pkg.c"}


def test_the_package_has_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)
