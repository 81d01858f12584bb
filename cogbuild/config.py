"""`cog.yaml`: both the seed's form and Cog's current form, validated with line numbers.

Seed form:  model: "model.py:Class"; environment: {python_version, python_requirements, system_packages}
Cog form:   build: {python_version, python_requirements, python_packages, system_packages, gpu, cuda,
            cudnn, run}; predict: / run:; concurrency: {max}; environment: [K=V]; image:
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UsageError

DEFAULT_PYTHON = "3.11"
TOP_KEYS = {"build", "predict", "run", "train", "model", "environment", "concurrency", "image", "weights"}
BUILD_KEYS = {"python_version", "python_requirements", "python_packages", "system_packages", "gpu", "cuda",
              "cudnn", "run", "pre_install", "cog_runtime", "sdk_version"}
SEED_ENV_KEYS = {"python_version", "python_requirements", "system_packages"}
CONCURRENCY_KEYS = {"max", "default_target"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class CogConfig:
    path: Path
    python_version: str = DEFAULT_PYTHON
    python_requirements: Path | None = None
    python_packages: list[str] = field(default_factory=list)
    system_packages: list[str] = field(default_factory=list)
    gpu: bool = False
    cuda: str | None = None
    cudnn: str | None = None
    predictor: str | None = None  # "predict.py:Predictor"
    kind: str = "predict"  # "predict" (BasePredictor, seed Model) or "run" (BaseRunner)
    concurrency_max: int | None = None  # None: the predictor's own @cog.concurrent (or 1) decides
    environment: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent

    def requirements(self) -> list[str]:
        """python_packages plus the lines of python_requirements, as the resolver reads them."""
        lines = list(self.python_packages)
        if self.python_requirements is not None:
            lines += self.python_requirements.read_text().splitlines()
        return lines

    def runtime_env(self) -> dict[str, str]:
        """What the runtime reads about this model (it never reads cog.yaml), then the user's environment."""
        env = {"COG_PREDICTOR": self.predictor or ""}
        if self.concurrency_max is not None:
            env["COG_MAX_CONCURRENCY"] = str(self.concurrency_max)
        return {**env, **self.environment}

    def input_files(self) -> list[Path]:
        """Files whose content decides the lock: cog.yaml and the requirements file."""
        return [self.path] + ([self.python_requirements] if self.python_requirements else [])

    def inputs_digest(self) -> str:
        h = hashlib.sha256()
        for path in self.input_files():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return "sha256:" + h.hexdigest()


class _Reader:
    """Walks the YAML node tree so that every error can name a line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: yaml.Node | None, message: str) -> UsageError:
        where = f"{self.path.name} line {node.start_mark.line + 1}" if node is not None else self.path.name
        return UsageError(f"{where}: {message}")

    def mapping(self, node: yaml.Node, what: str, allowed: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key not in allowed:
                raise self.fail(key_node, f"unknown key {what + '.' if what != 'top level' else ''}{key!r} "
                                          f"(allowed: {', '.join(sorted(allowed))})")
            if key in out:
                raise self.fail(key_node, f"key {key!r} appears twice")
            out[key] = value_node
        return out

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.fail(node, f"{what} must be a single value")
        return str(node.value)

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, bool):
            raise self.fail(node, f"{what} must be true or false")
        return value

    def integer(self, node: yaml.Node, what: str, minimum: int = 1) -> int:
        value = yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(node, f"{what} must be a whole number ≥ {minimum}")
        return value

    def strings(self, node: yaml.Node, what: str) -> list[str]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return [self.scalar(item, f"each entry of {what}") for item in node.value]


def load_config(path: str | Path) -> CogConfig:
    """Read and validate cog.yaml; every problem is one UsageError sentence naming file and line."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; run `cogbuild init` to create a cog.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    r = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"{path.name}{line}: invalid YAML: {problem}") from None
    if root is None:
        raise UsageError(f"{path.name} is empty; it needs at least `predict: \"predict.py:Predictor\"`")
    top = r.mapping(root, "top level", TOP_KEYS)
    cfg = CogConfig(path=path, raw=yaml.safe_load(text))

    if "build" in top:
        _read_build(r, cfg, r.mapping(top["build"], "build", BUILD_KEYS))
    if "environment" in top:
        env = top["environment"]
        if isinstance(env, yaml.MappingNode):  # the seed's form: build settings under `environment`
            _read_build(r, cfg, r.mapping(env, "environment", SEED_ENV_KEYS))
        else:
            cfg.environment = _read_env(r, env)
    _read_entry(r, cfg, top)
    if "concurrency" in top:
        conc = r.mapping(top["concurrency"], "concurrency", CONCURRENCY_KEYS)
        if "max" in conc:
            cfg.concurrency_max = r.integer(conc["max"], "concurrency.max")
    if "image" in top:
        cfg.image = r.scalar(top["image"], "image")
    return cfg


def _read_build(r: _Reader, cfg: CogConfig, build: dict[str, yaml.Node]) -> None:
    if "python_version" in build:
        version = r.scalar(build["python_version"], "python_version")
        if not re.fullmatch(r"3\.\d+(\.\d+)?", version):
            raise r.fail(build["python_version"], f"python_version {version!r} is not a Python 3 version "
                                                  "such as \"3.11\" (quote it so YAML keeps it a string)")
        cfg.python_version = ".".join(version.split(".")[:2])
    if "python_requirements" in build:
        req = cfg.root / r.scalar(build["python_requirements"], "python_requirements")
        if not req.is_file():
            raise r.fail(build["python_requirements"], f"python_requirements file {req.name} does not exist")
        cfg.python_requirements = req
    if "python_packages" in build:
        cfg.python_packages = r.strings(build["python_packages"], "python_packages")
    if "system_packages" in build:
        cfg.system_packages = r.strings(build["system_packages"], "system_packages")
    if "gpu" in build:
        cfg.gpu = r.boolean(build["gpu"], "gpu")
    for key in ("cuda", "cudnn"):
        if key in build:
            setattr(cfg, key, r.scalar(build[key], key))
    for key in ("run", "pre_install"):
        if key in build and _non_empty(build[key]):
            raise r.fail(build[key], f"build.{key} is not supported: cogbuild never executes commands at build "
                                     "time; use system_packages and python_requirements instead")


def _non_empty(node: yaml.Node) -> bool:
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
        return bool(node.value)
    return node.tag != "tag:yaml.org,2002:null"


def _read_env(r: _Reader, node: yaml.Node) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in node.value if isinstance(node, yaml.SequenceNode) else [node]:
        text = r.scalar(item, "each environment entry")
        name, sep, value = text.partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise r.fail(item, f"environment entry {text!r} must look like NAME=value")
        env[name] = value
    return env


def _read_entry(r: _Reader, cfg: CogConfig, top: dict[str, yaml.Node]) -> None:
    given = [key for key in ("predict", "run", "model") if key in top]
    if len(given) > 1:
        raise r.fail(top[given[1]], f"give only one of predict, run and model (found {', '.join(given)})")
    if not given:
        return
    key = given[0]
    ref = r.scalar(top[key], key)
    module, sep, name = ref.partition(":")
    if not sep or not module.endswith(".py") or not name.isidentifier():
        raise r.fail(top[key], f"{key} must look like \"predict.py:Predictor\", not {ref!r}")
    if not (cfg.root / module).is_file():
        raise r.fail(top[key], f"{key} names {module}, which does not exist next to {r.path.name}")
    cfg.predictor = ref
    cfg.kind = "run" if key == "run" else "predict"
