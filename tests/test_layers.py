"""The package's shape: imports run downward only, no import cycles, and the
package face documents exactly what it exports.

Layers, lowest first (a module may import its own layer and the ones below):

  leaf     ringline._errors, ringline._util.*    (import nothing of ringline)
  driver   ringline._core, ringline._c.*         (the native extension)
  loop     ringline._loop(.*)
  conn     ringline._conn.*                      (Conn API, TLS, UDP, timers)
  runtime  ringline._runtime.*                   (workers, supervisor, tasks)
  face     ringline (the package __init__)
  clients  ringline.redis.*, ringline.memcache.*, ringline.ping, ringline.http.*,
           ringline.grpc.*, ringline.momento.*, ringline.quic.*, ringline.http3.*
  app      ringline.bench.*, ringline.__main__, ringline.kv.*

Every import statement counts, function-level ones too (a lazy import is
still a dependency), except those under ``if TYPE_CHECKING:``.
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import ringline

SRC = Path(os.environ.get("RINGLINE_LAYERS_SRC", Path(ringline.__file__).parent.parent))
PKG = "ringline"

LAYERS = ["leaf", "driver", "loop", "conn", "runtime", "face", "clients", "app"]
_PREFIXES = [  # longest match wins
    ("ringline._errors", "leaf"), ("ringline._util", "leaf"),
    ("ringline._core", "driver"), ("ringline._c", "driver"),
    ("ringline._loop", "loop"),
    ("ringline._conn", "conn"),
    ("ringline._runtime", "runtime"),
    ("ringline.redis", "clients"), ("ringline.memcache", "clients"),
    ("ringline.ping", "clients"), ("ringline.http", "clients"), ("ringline.grpc", "clients"),
    ("ringline.momento", "clients"),
    ("ringline.quic", "clients"), ("ringline.http3", "clients"),
    ("ringline.bench", "app"), ("ringline.__main__", "app"), ("ringline.kv", "app"),
    ("ringline", "face"),
]

# cycles another branch of the layout change removes (helper "native" owns
# _loop/_backend); delete an entry once that branch is merged
PENDING_CYCLES: Set[frozenset] = set()


def layer_of(module: str) -> str:
    best = ("", "face")
    for prefix, layer in _PREFIXES:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[0]):
            best = (prefix, layer)
    return best[1]


def _modules(src: Path) -> Dict[str, Path]:
    out = {}
    for path in sorted((src / PKG).rglob("*.py")):
        rel = path.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_module(src: Path, name: str) -> bool:
    base = src.joinpath(*name.split("."))
    if base.is_dir() or base.with_suffix(".py").exists() or base.with_suffix(".pyx").exists():
        return True
    return any(base.parent.glob(base.name + ".*.so")) if base.parent.is_dir() else False


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.AST) -> Iterator[ast.stmt]:
    stack: List[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(src: Path, module: str, path: Path) -> Set[str]:
    """The ringline modules `module` imports (a package's __init__ counts as
    the package)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: Set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
            found.update(n for n in names if n == PKG or n.startswith(PKG + "."))
            continue
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            base_parts = package.split(".")
            base_parts = base_parts[:len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if not (base == PKG or base.startswith(PKG + ".")):
            continue
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            found.add(sub if _is_module(src, sub) else base)
    found.discard(module)
    return found


def graph(src: Path) -> Dict[str, Set[str]]:
    return {m: imports_of(src, m, p) for m, p in _modules(src).items()}


def upward_imports(g: Dict[str, Set[str]]) -> List[Tuple[str, str]]:
    bad = []
    for mod, deps in g.items():
        rank = LAYERS.index(layer_of(mod))
        for dep in deps:
            if LAYERS.index(layer_of(dep)) > rank:
                bad.append((mod, dep))
    return sorted(bad)


def cycles(g: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def problems(src: Path) -> List[str]:
    g = graph(src)
    out = [f"upward import: {a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
           for a, b in upward_imports(g)]
    out += [f"import cycle: {' <-> '.join(c)}" for c in cycles(g)
            if frozenset(c) not in PENDING_CYCLES]
    return out


def test_imports_run_downward_without_cycles():
    assert problems(SRC) == []


def test_the_checker_sees_upward_imports_and_cycles():
    g = {"ringline._conn.tls": {"ringline._runtime.tasks"},
         "ringline._runtime.tasks": {"ringline._conn.tls"},
         "ringline._runtime.worker": {"ringline"}}
    assert upward_imports(g) == [("ringline._conn.tls", "ringline._runtime.tasks"),
                                 ("ringline._runtime.worker", "ringline")]
    assert cycles(g) == [["ringline._conn.tls", "ringline._runtime.tasks"]]


def test_every_module_has_a_layer_and_a_docstring():
    for mod, path in _modules(SRC).items():
        if layer_of(mod) == "face":
            assert mod == PKG, f"{mod} is in no layer: add it to _PREFIXES"
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 80, f"{mod} does not open with a docstring"


def _documented_names(doc: str) -> List[str]:
    # entries are lines indented by four spaces that start with a name
    # followed by at least two spaces
    return [m.group(1) for m in re.finditer(r"^    ([A-Za-z_][A-Za-z0-9_]*)  ", doc, re.M)]


def test_package_docstring_lists_exactly_all():
    listed = _documented_names(ringline.__doc__ or "")
    assert len(listed) == len(set(listed)), "a name is listed twice"
    assert sorted(listed) == sorted(ringline.__all__)
    for name in ringline.__all__:
        assert getattr(ringline, name) is not None
