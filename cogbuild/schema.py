"""The model's OpenAPI schema at build time, from its source alone, for the image's label.

The image is built for another interpreter, maybe another architecture, and the model's dependencies are
not installed on this host, so importing the real predictor here is not an option. Instead we keep only
what declares the interface — cog/typing imports, the predictor class with its method signatures and
decorators (bodies emptied), cog.BaseModel output classes, module-level literal constants — and let the
runtime's own schema code read that stub. The result depends on nothing but the source. As in Cog, a
signature that needs more than that (a type imported from another module of the model), or that the
runtime rejects (an invalid `Input` default or constraint, an output it cannot serve), fails the build
with one sentence: the image would otherwise serve an API nobody checked.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import __version__
from .content_store import ContentStore
from .errors import UsageError


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


def stub_source(source: str, *entries: str) -> str:
    """The source cut down to what declares the interface. Helper classes and functions the predictor
    cannot need (one built on a third-party base class, a function that is not the predictor) are left out,
    so that only the predictor's own signature can fail to resolve."""
    tree = ast.parse(source)
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    available = {alias.asname or alias.name.split(".")[0] for node in tree.body
                 if isinstance(node, (ast.Import, ast.ImportFrom)) and _safe_import(node) for alias in node.names}
    kept: list[ast.stmt] = []
    for node in tree.body:
        if _safe_import(node) or _literal_constant(node):
            kept.append(node)
        elif isinstance(node, functions) and node.name in entries:  # a plain function as the predictor
            node.body = [ast.Expr(ast.Constant(...))]
            kept.append(node)
        elif isinstance(node, ast.ClassDef) and (node.name in entries or _bases_known(node, available)):
            kept.append(_stub_class(node))
            available.add(node.name)
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


def _bases_known(node: ast.ClassDef, available: set[str]) -> bool:
    roots = []
    for base in node.bases:
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        roots.append(base.id if isinstance(base, ast.Name) else None)
    return all(root in available or root == "object" for root in roots)


def dropped_imports(source: str) -> dict[str, str]:
    """Names the stub leaves undefined: each name imported from a module outside SAFE_MODULES -> that module."""
    names: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not _safe_import(node):
            module = "." * getattr(node, "level", 0) + (getattr(node, "module", None) or "")
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                names[local] = module or alias.name
    return names


class SharedSchemas(Protocol):
    """Schemas shared between builders (a cache repository): found there instead of computed, and offered."""

    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, schema: dict) -> None: ...


def static_schema(model_dir: Path, predictor: str, trainer: str | None = None,
                  shared: SharedSchemas | None = None, cache_root: Path | None = None) -> dict:
    """The OpenAPI document for `predictor` ("predict.py:Predictor" or "sub/predict.py:Predictor") and, when
    the model has one, its `trainer` ("train.py:train"), read from their source; a UsageError in Cog's words
    when the source does not say enough or the runtime rejects it. Only a schema that passed those checks is
    cached, so one from `shared` (keyed like the local cache) stands for the computation. The local cache is
    in `cache_root`; without one, nothing is kept here."""
    entries = [_Entry.read(model_dir, predictor)] + ([_Entry.read(model_dir, trainer)] if trainer else [])
    identity = "\0".join(f"{e.ref}\0{e.source}" for e in entries)
    key = hashlib.sha256(f"{__version__}\0schema-v3\0{identity}".encode()).hexdigest()
    local = ContentStore(cache_root / "schemas") if cache_root else None
    cached = local.get_named(key) if local else None  # checked by hash: what was kept, or a miss
    if cached is not None:
        schema = json.loads(cached)
    else:
        schema = (shared.get(key) if shared else None) or _compute(entries)
        if local:
            local.put_named(key, json.dumps(schema, sort_keys=True).encode())
    if shared:
        shared.put(key, schema)
    return schema


@dataclass(frozen=True)
class _Entry:
    """One entry point of the model (the predictor, or the trainer): its reference and its file's source."""

    ref: str  # "train.py:train"
    module: str  # "train.py"
    name: str  # "train"
    source: str

    @classmethod
    def read(cls, model_dir: Path, ref: str) -> "_Entry":
        module, _, name = ref.partition(":")
        try:
            source = (model_dir / module).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {module} for the model's schema: {exc}") from None
        return cls(ref, module, name, source)

    def stub(self, names: list[str]) -> str:
        try:
            return stub_source(self.source, *names)
        except SyntaxError as exc:
            raise UsageError(f"{self.module} line {exc.lineno}: failed to parse Python source: {exc.msg}") from None


def _compute(entries: list[_Entry]) -> dict:
    predictor, trainer = entries[0], (entries[1] if len(entries) > 1 else None)
    with tempfile.TemporaryDirectory(prefix="cogbuild-schema-") as tmp:
        for entry in entries:  # a trainer in the predictor's own file keeps both classes in one stub
            stub_path = Path(tmp) / entry.module
            stub_path.parent.mkdir(parents=True, exist_ok=True)  # a predictor in a subdirectory
            names = [e.name for e in entries if e.module == entry.module]
            stub_path.write_text(entry.stub(names))
        args = ["--predictor", predictor.ref] + (["--train", trainer.ref] if trainer else [])
        # A clean environment: only the stub and this interpreter's own packages (where `cog` is).
        done = subprocess.run([sys.executable, "-m", "cog.command.openapi_schema", *args], cwd=tmp,
                              capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": tmp})
    if done.returncode != 0:
        raise UsageError(_failure(done.stderr, entries))
    schema = json.loads(done.stdout)
    unservable = _unservable_output(predictor.source, predictor.name, schema)
    if unservable:
        raise UsageError(f"{predictor.module}: unsupported output type: {unservable} is not a supported output "
                         "type (use str, int, float, bool, cog.Path, list, dict, a cog.BaseModel or an Iterator "
                         "of them)")
    return schema


def _unservable_output(source: str, name: str, schema: dict) -> str | None:
    """The declared return type, when the runtime could describe none of it (an open `Output` schema for
    a type other than Any): the server could not promise clients anything about the output."""
    node = next((n for n in ast.parse(source).body if getattr(n, "name", None) == name), None)
    if isinstance(node, ast.ClassDef):
        methods = {m.name: m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        node = methods.get("run") or methods.get("predict")
    returns = getattr(node, "returns", None)
    if returns is None or ast.unparse(returns) in ("Any", "typing.Any", "None"):
        return None
    output = schema.get("components", {}).get("schemas", {}).get("Output", {})
    described = output.get("items", {}) if output.get("x-cog-array-type") == "iterator" else output
    return None if set(described) - {"title", "description"} else ast.unparse(returns)


def _failure(stderr: str, entries: list[_Entry]) -> str:
    """Cog's sentence for a schema that cannot be made from the source alone (naming the file whose import
    was dropped), else the runtime's own, for the entry it names (the predictor unless it names another)."""
    lines = stderr.strip().splitlines()
    reason = lines[-1].removeprefix("error: ") if lines else "no output"
    for entry in entries:
        for local, origin in dropped_imports(entry.source).items():
            if f"name '{local}' is not defined" in reason:
                return (f"{entry.module}: cannot resolve type \"{local}\" (imported from \"{origin}\"): the schema "
                        "is read from the source alone; define the type in this file, or import it from cog or typing")
    module = next((e.module for e in entries[1:] if f"importing {e.module} failed" in reason), entries[0].module)
    kind = "predictor" if module == entries[0].module else "trainer"
    return f"{module}: invalid {kind} signature: {reason.removeprefix(f'importing {module} failed: ')}"
