"""The package layout is the design: imports only go down the layers, and no package reaches into
another's private members. A new upward import or private access fails here, naming file and line.

The layers (what each package may import from rsrag) are the table below; each package's
`__init__` docstring says the same in words.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rsrag"

# package -> the rsrag packages/modules it may import (besides itself)
BASE = {"config", "fileio", "registry", "fusion", "metrics"}
ALLOWED: dict[str, set[str]] = {
    "config": set(), "fileio": set(), "registry": set(), "fusion": set(), "metrics": set(),
    "imageio": {"config"},
    "data": BASE | {"imageio"},
    "encoders": BASE | {"imageio", "data"},
    "rerankers": BASE,
    "geo": BASE | {"imageio", "data", "encoders"},
    "index": BASE | {"imageio", "data", "encoders", "geo"},
    "models": BASE | {"imageio", "data", "encoders", "geo", "index"},  # the captioner's neighbours can be a Library
    "training": BASE | {"imageio", "data", "encoders", "models"},
    "knowledge": BASE | {"imageio", "data", "encoders", "geo", "index"},
    "change": BASE | {"imageio", "data", "encoders", "geo", "index"},
    "generators": BASE | {"imageio", "data", "encoders", "rerankers", "knowledge", "models"},
    "localize": BASE | {"imageio", "data", "encoders", "geo", "index"},
    "rag": BASE | {"imageio", "data", "encoders", "geo", "index", "knowledge", "generators", "rerankers", "models",
                   "change", "localize"},
    "eval": BASE | {"imageio", "data", "encoders", "geo", "index", "knowledge", "generators", "rerankers", "models",
                    "rag", "training", "change", "localize"},
    "service": BASE | {"imageio", "data", "encoders", "geo", "index", "knowledge", "generators", "rerankers", "models",
                       "rag", "change", "localize"},
    "cli": None,  # the top: may import everything
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "rsrag" and len(parts) > 1 else None


def _own_package(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else ""


def _imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def test_every_package_is_in_the_layer_table() -> None:
    packages = {_own_package(p) for p in _modules()} - {""}
    assert packages <= set(ALLOWED), f"add these to ALLOWED (and to the README layout): {packages - set(ALLOWED)}"


def test_imports_only_go_down_the_layers() -> None:
    bad = []
    for path in _modules():
        own = _own_package(path)
        allowed = ALLOWED.get(own)
        if not own or allowed is None:
            continue
        for line, module, names in _imports(ast.parse(path.read_text())):
            target = _package_of(module)
            if module == "rsrag":  # `from rsrag import fusion`
                targets = set(names)
            else:
                targets = {target} if target else set()
            for t in targets - {own}:
                if t not in allowed:
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports rsrag.{t}")
    assert not bad, "upward or undeclared imports:\n" + "\n".join(bad)


def test_no_private_names_imported_across_packages() -> None:
    bad = []
    for path in _modules():
        own = _own_package(path)
        for line, module, names in _imports(ast.parse(path.read_text())):
            target = _package_of(module)
            if target and target != own:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                private += [p for p in module.split(".")[2:] if p.startswith("_") and not p.startswith("__")]
                if private:
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} takes {private} from {module}")
    assert not bad, "private names used across packages:\n" + "\n".join(bad)


def _private_members_of_rsrag() -> set[str]:
    """Private names rsrag itself defines on its objects (`self._x = ...`, `def _x(self)`): those are the
    ones nobody outside their class may touch (third-party objects' privates are their own business)."""
    names = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                names |= {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_private_attributes_of_other_objects() -> None:
    """`x._member` of an rsrag object is only for `self`/`cls` (and a class's own instances inside its
    module): reaching into another object's private state is how internals became API before."""
    private = _private_members_of_rsrag()
    bad = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        own_classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            stored = isinstance(node.ctx, ast.Store) and node.attr.startswith("_") and not node.attr.startswith("__")
            if node.attr not in private and not stored:  # storing a private name on another object counts too
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in {"self", "cls", *own_classes}:
                continue
            if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                continue
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{node.attr} on {ast.unparse(base)}")
    assert not bad, "private members reached from outside their object:\n" + "\n".join(bad)


@pytest.mark.parametrize("attr", ["store"])
def test_index_internals_stay_in_the_index(attr: str) -> None:
    """Only rsrag/index/ touches a Library's record store; everyone else uses rows()/count()/get()."""
    bad = []
    for path in _modules():
        if _own_package(path) == "index":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == attr:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


def test_packages_say_what_they_own() -> None:
    missing = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.glob("*/__init__.py")
               if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]
    assert not missing, f"package docstrings missing: {missing}"
