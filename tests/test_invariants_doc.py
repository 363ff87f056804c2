"""docs/invariants.md cites the tests that check each invariant: every cited
test file exists, every cited test function is defined in its file, and
every invariant (each ``## N.`` section) cites at least one existing test.

A citation is a backticked ``tests/<path>.py`` or ``tests/<path>.py::name``;
a bare ``::name`` continues the file cited last in the same section."""
import ast
import re

from support import DOCS, REPO

INVARIANTS = DOCS / "invariants.md"
CITE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def _sections():
    """(title, body) of every numbered invariant."""
    text = INVARIANTS.read_text()
    parts = re.split(r"^## (\d+\..*)$", text, flags=re.M)
    return list(zip(parts[1::2], parts[2::2]))


def _test_names(path):
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _citations(body):
    """(file, function or None) pairs cited in one section."""
    out, current = [], None
    for m in CITE.finditer(body):
        path, name = m.group(1), m.group(2)
        if path:
            current = path
        if current and (path or name):
            out.append((current, name))
    return out


def test_every_invariant_cites_existing_tests():
    sections = _sections()
    assert len(sections) >= 13, [t for t, _ in sections]
    missing = []
    for title, body in sections:
        cited = _citations(body)
        if not cited:
            missing.append(f"{title}: cites no test")
        for path, name in cited:
            full = REPO / path
            if not full.is_file():
                missing.append(f"{title}: {path} does not exist")
            elif name and name not in _test_names(full):
                missing.append(f"{title}: {path}::{name} is not defined")
    assert not missing, "\n".join(missing)


def test_the_preamble_cites_existing_files():
    preamble = INVARIANTS.read_text().split("\n## ", 1)[0]
    for path, _ in _citations(preamble):
        assert (REPO / path).is_file(), path
