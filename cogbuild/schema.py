"""The model's OpenAPI schema at build time, from its source alone, for the image's label.

The image is built for another interpreter, maybe another architecture, and the model's dependencies are
not installed on this host, so importing the real predictor here is not an option. Instead we keep only
what declares the interface — cog/typing imports, the predictor class with its method signatures and
decorators (bodies emptied), cog.BaseModel output classes, module-level literal constants — and let the
runtime's own schema code read that stub. The result depends on nothing but the source: if the signature
needs more than that (a name from another module), the image simply carries no schema label.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from . import __version__
from .cache import cache_dir
from .registry.layout import atomic_write

SAFE_MODULES = ("cog", "typing", "typing_extensions", "pathlib", "enum", "collections.abc")


def _safe_import(node: ast.stmt) -> bool:
    if isinstance(node, ast.Import):
        return all(alias.name.split(".")[0] in SAFE_MODULES or alias.name in SAFE_MODULES for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] in {m.split(".")[0] for m in SAFE_MODULES}
    return False


def _literal_constant(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        try:
            ast.literal_eval(node.value)
            return True
        except ValueError:
            return False
    return False


def _stub_class(node: ast.ClassDef) -> ast.ClassDef:
    """The class with every method body replaced by `...` (signatures, decorators and fields kept)."""
    body: list[ast.stmt] = []
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            item.body = [ast.Expr(ast.Constant(...))]
            body.append(item)
        elif isinstance(item, (ast.AnnAssign, ast.Assign)) and (item.value is None or _literal_constant(item)):
            body.append(item)
        elif isinstance(item, ast.AnnAssign):
            item.value = None  # a field whose default is not a literal: keep its type
            body.append(item)
    node.body = body or [ast.Pass()]
    return node


def stub_source(source: str) -> str:
    tree = ast.parse(source)
    kept = [node for node in tree.body
            if _safe_import(node) or _literal_constant(node) or isinstance(node, ast.ClassDef)]
    kept = [_stub_class(node) if isinstance(node, ast.ClassDef) else node for node in kept]
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


def static_schema(model_dir: Path, predictor: str) -> dict | None:
    """The OpenAPI document for `predictor` ("predict.py:Predictor"), or None if the source does not say enough."""
    module, _, name = predictor.partition(":")
    try:
        source = (model_dir / module).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    key = hashlib.sha256(f"{__version__}\0{predictor}\0{source}".encode()).hexdigest()
    cached = cache_dir() / "schemas" / f"{key}.json"
    if cached.exists():
        text = cached.read_text()
        return json.loads(text) if text != "null" else None
    schema = _compute(source, module, name)
    atomic_write(cached, json.dumps(schema, sort_keys=True).encode())
    return schema


def _compute(source: str, module: str, name: str) -> dict | None:
    try:
        stub = stub_source(source)
    except SyntaxError:
        return None
    with tempfile.TemporaryDirectory(prefix="cogbuild-schema-") as tmp:
        (Path(tmp) / module).write_text(stub)
        # A clean environment: only the stub and this interpreter's own packages (where `cog` is).
        done = subprocess.run([sys.executable, "-m", "cog.command.openapi_schema", "--predictor",
                               f"{module}:{name}"], cwd=tmp, capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": tmp})
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout)
    except ValueError:
        return None
