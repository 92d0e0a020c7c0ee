"""No imports inside functions: a module's dependencies are all at its top.

    python dev_tools/no_local_imports.py [PATH ...]   (default: the project's code)

A late import hides a dependency from the reader, from import-linter (which
then cannot see a cycle) and from start-up, where a missing package should
fail. The only exceptions are in ``ALLOWED``, each with its reason; an entry
that no longer matches anything is reported too, so the list stays true.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = ("operator/raykube", "localcluster", "e2e", "serve_runtime")

#: (file relative to the repository, imported module) -> why it must stay in a function.
ALLOWED: dict[tuple[str, str], str] = {
    ("serve_runtime/raykube_serve/model/encoder.py", "torch"): (
        "probes for the optional [torch] extra; the image without it serves through numpy"
    ),
    ("serve_runtime/raykube_serve/model/encoder.py", "raykube_serve.model.bert_torch"): (
        "the torch backend imports the optional torch at its top; loaded only when chosen"
    ),
    ("serve_runtime/raykube_serve/health.py", "sys"): (
        "check() must be self-contained: inline_command() ships its source to images"
    ),
    ("serve_runtime/raykube_serve/health.py", "urllib.request"): (
        "check() must be self-contained: inline_command() ships its source to images"
    ),
}


@dataclass(frozen=True)
class LocalImport:
    path: str
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: `{self.module}` imported inside a function"


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.depth = 0
        self.found: list[LocalImport] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Import(self, node: ast.Import) -> None:
        if self.depth:
            self.found += [LocalImport(self.path, node.lineno, a.name) for a in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if self.depth:
            module = "." * node.level + (node.module or "")
            self.found.append(LocalImport(self.path, node.lineno, module))


def local_imports(path: Path) -> list[LocalImport]:
    rel = path.resolve().relative_to(ROOT).as_posix()
    finder = _Finder(rel)
    finder.visit(ast.parse(path.read_text(), filename=rel))
    return finder.found


def python_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.suffix == ".py":
            yield path


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or [ROOT / p for p in DEFAULT_PATHS]
    scanned: set[str] = set()
    found: list[LocalImport] = []
    for path in python_files(paths):
        scanned.add(path.resolve().relative_to(ROOT).as_posix())
        found += local_imports(path)
    bad = [f for f in found if (f.path, f.module) not in ALLOWED]
    used = {(f.path, f.module) for f in found}
    stale = [key for key in ALLOWED if key[0] in scanned and key not in used]
    for imp in bad:
        print(f"{imp}: move it to the top of the module (or allow it in {_self()})")
    for rel, module in stale:
        print(f"{rel}: `{module}` is allowed in {_self()} but no longer imported in a function")
    return 1 if bad or stale else 0


def _self() -> str:
    return Path(__file__).resolve().relative_to(ROOT).as_posix()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
