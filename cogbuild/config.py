"""`cog.yaml`: both the seed's form and Cog's current form, validated with line numbers.

Seed form:  model: "model.py:Class"; environment: {python_version, python_requirements, system_packages}
Cog form:   build: {python_version, python_requirements, python_packages, system_packages, gpu, cuda,
            cudnn, run, sdk_version}; run: / predict:; train:; concurrency: {max, default_target};
            environment: [K=V]; image: or model: (a repository); weights: [{name, target, source}]

Every key of Cog's schema, and the older ones still found in projects, is accepted; a key that means
nothing for a daemonless OCI build gets one warning saying so (`CogConfig.warnings`), never an error.
A key nobody knows is an error naming its line, with the nearest known key as a suggestion.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UsageError
from .requirement_paths import local_requirement_files

# libyaml's parser when PyYAML has it: the same nodes and marks, several times faster on every command.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_PYTHON = "3.11"
TOP_KEYS = {"build", "predict", "run", "train", "model", "environment", "concurrency", "image", "weights",
            "entrypoint"}
# What only a model has: an app (`entrypoint:`) is a Python program, not served by the Cog runtime.
MODEL_ONLY_KEYS = ("predict", "run", "train", "concurrency", "weights")
BUILD_KEYS = {"python_version", "python_requirements", "python_packages", "system_packages", "gpu", "cuda",
              "cudnn", "run", "pre_install", "cog_runtime", "sdk_version", "fast"}
SEED_ENV_KEYS = {"python_version", "python_requirements", "system_packages"}
CONCURRENCY_KEYS = {"max", "default_target"}
WEIGHT_KEYS = {"name", "target", "source"}
WEIGHT_SOURCE_KEYS = {"uri", "include", "exclude"}
# Keys Cog reads that have no meaning for an image cogbuild composes: each gets this one warning.
WITHOUT_MEANING = {
    "build.fast": "cogbuild always builds from cached, content-addressed layers, so there is no faster mode "
                  "to turn on",
    "build.sdk_version": "images carry the cog SDK of the cogbuild that builds them; no other version is "
                        "installed",
    "build.cog_runtime": "images always serve with cogbuild's own runtime",
    "concurrency.default_target": "it is an autoscaler's hint; cogbuild keeps it in the image's run.cog.config "
                                  "label and does nothing else with it",
}
# What Cog itself warns about (its wording: `deprecated field "X": use "Y" instead`); all still work here.
DEPRECATED = {
    "predict": "run",
    "concurrency.max": "@cog.concurrent(max=...)",
    "build.python_packages": "build.python_requirements",
    "build.pre_install": "build.run",
}
OLDEST_COG_PYTHON = (3, 10)  # Cog refuses older Pythons; cogbuild builds them with a warning
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WEIGHT_NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")


@dataclass(frozen=True)
class WeightSource:
    uri: str  # a path next to cog.yaml, file://PATH, hf://… or https://…
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Weight:
    """One entry of Cog's `weights:`: files from `sources` placed at `target` in the image, in a layer
    of their own."""

    name: str
    target: str
    sources: tuple[WeightSource, ...]


RUN_STEP_KEYS = {"command", "mounts"}
MOUNT_KEYS = {"type", "id", "target"}


@dataclass(frozen=True)
class SecretMount:
    """A file given at build time (`--secret id=NAME,src=FILE`), read-only at `target` during one step."""

    id: str
    target: str  # absolute path inside the sandbox


@dataclass(frozen=True)
class RunStep:
    """One `build.run` entry: a shell command run as root over the image as built so far."""

    command: str
    secrets: tuple[SecretMount, ...] = ()

    def identity(self) -> dict:
        """What the lock and the layer cache know of the step: the command and where secrets go, no values."""
        return {"command": self.command, "secrets": [[s.id, s.target] for s in self.secrets]}


@dataclass
class CogConfig:
    path: Path
    python_version: str = DEFAULT_PYTHON  # the minor ("3.12"): paths, tags and the runtime lockfile follow it
    python_patch: str | None = None  # the exact release when cog.yaml names one ("3.12.4")
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
    image: str | None = None  # `image:`, the name built images get
    model_repository: str | None = None  # `model:` in Cog's meaning: where images are pushed
    trainer: str | None = None  # "train.py:train"
    weights: list[Weight] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one sentence per key that is accepted but not acted on
    run: list[RunStep] = field(default_factory=list)  # build.run, in order
    # An app image (cogbuild's own, for CI): the program to start, and no Cog runtime, schema or code layer.
    entrypoint: list[str] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def python_request(self) -> str:
        """python_version as cog.yaml wrote it: "3.12" or "3.12.4"."""
        return self.python_patch or self.python_version

    @property
    def root(self) -> Path:
        return self.path.parent

    def requirements(self) -> list[str]:
        """python_packages plus the lines of python_requirements, as the resolver reads them."""
        lines = list(self.python_packages)
        if self.python_requirements is not None:
            lines += self.python_requirements.read_text().splitlines()
        return lines

    @property
    def default_image_name(self) -> str | None:
        """What `image:` or `model:` (a repository) names: the build's default tag and push's default target."""
        name = self.image or self.model_repository
        if name is None:
            return None
        tail = name.rsplit("/", 1)[-1]
        return name if ":" in tail or "@" in tail else f"{name}:latest"

    def runtime_env(self) -> dict[str, str]:
        """What the runtime reads about this model (it never reads cog.yaml), then the user's environment."""
        env = {"COG_PREDICTOR": self.predictor or ""}
        if self.trainer:
            env["COG_TRAIN"] = self.trainer
        if self.concurrency_max is not None:
            env["COG_MAX_CONCURRENCY"] = str(self.concurrency_max)
        return {**env, **self.environment}

    def input_files(self) -> list[Path]:
        """Files whose content decides the lock: cog.yaml, the requirements file and the wheels and sdists
        in the project that it names."""
        return [self.path] + ([self.python_requirements] if self.python_requirements else []) + \
            local_requirement_files(self.requirements(), self.root)

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
                raise self.fail(key_node, f"unknown key {what + '.' if what != 'top level' else ''}{key!r}"
                                          f"{_suggestion(key, what, allowed)}")
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

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return node.value

    def strings(self, node: yaml.Node, what: str) -> list[str]:
        return [self.scalar(item, f"each entry of {what}") for item in self.sequence(node, what)]


def _suggestion(key: str, what: str, allowed: set[str]) -> str:
    """`; did you mean …?` for a typo, or for a key that belongs in another section; else the allowed keys."""
    import difflib  # only an unknown key needs it, not every reading of cog.yaml

    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if what == "top level" and key in BUILD_KEYS:
        return f"; did you mean 'build.{key}'?"
    if what == "build" and key in TOP_KEYS:
        return f"; did you mean top-level {key!r}?"
    return f" (allowed: {', '.join(sorted(allowed))})"


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
        root = yaml.compose(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"{path.name}{line}: invalid YAML: {problem}") from None
    if root is None:
        raise UsageError(f"{path.name} is empty; it needs at least `predict: \"predict.py:Predictor\"`")
    top = r.mapping(root, "top level", TOP_KEYS)
    cfg = CogConfig(path=path, raw=yaml.load(text, Loader=_SAFE_LOADER))

    if "build" in top:
        build = r.mapping(top["build"], "build", BUILD_KEYS)
        _read_build(r, cfg, build)
        _note_keys(cfg, {f"build.{k}": v for k, v in build.items()})
    if "environment" in top:
        env = top["environment"]
        if isinstance(env, yaml.MappingNode):  # the seed's form: build settings under `environment`
            _read_build(r, cfg, r.mapping(env, "environment", SEED_ENV_KEYS))
        else:
            cfg.environment = _read_env(r, env)
    _read_entry(r, cfg, top)
    if "entrypoint" in top:
        cfg.entrypoint = _read_entrypoint(r, top)
    if "concurrency" in top:
        conc = r.mapping(top["concurrency"], "concurrency", CONCURRENCY_KEYS)
        if "max" in conc:
            cfg.concurrency_max = r.integer(conc["max"], "concurrency.max")
        if "default_target" in conc:
            r.integer(conc["default_target"], "concurrency.default_target")
        _note_keys(cfg, {f"concurrency.{k}": v for k, v in conc.items()})
    _read_names(r, cfg, top)
    if "train" in top:
        cfg.trainer = _read_ref(r, cfg, top["train"], "train", "\"train.py:train\"")
    if "weights" in top:
        cfg.weights = _read_weights(r, top["weights"])
    _note_keys(cfg, top)
    _note_old_python(cfg)
    return cfg


def _note_keys(cfg: CogConfig, keys: dict[str, yaml.Node]) -> None:
    """One warning per key that is accepted but not acted on, and per key Cog calls deprecated."""
    for key, node in keys.items():
        if not _non_empty(node):
            continue
        if key in WITHOUT_MEANING:
            cfg.warnings.append(f"{key} has no effect with cogbuild: {WITHOUT_MEANING[key]}")
        if key in DEPRECATED:
            cfg.warnings.append(f"deprecated field {key!r}: use {DEPRECATED[key]!r} instead".replace("'", '"'))


def _note_old_python(cfg: CogConfig) -> None:
    version = tuple(int(p) for p in cfg.python_version.split(".")[:2])
    if version < OLDEST_COG_PYTHON:
        cfg.warnings.append(f"Python {cfg.python_version} is deprecated: Cog's minimum supported Python version is "
                            f"{'.'.join(map(str, OLDEST_COG_PYTHON))}; cogbuild still builds it")


def _read_names(r: _Reader, cfg: CogConfig, top: dict[str, yaml.Node]) -> None:
    """`image:` names built images; `model:` in Cog's meaning is the repository they are pushed to."""
    if "image" in top:
        cfg.image = r.scalar(top["image"], "image")
        _check_reference(r, top["image"], "image", cfg.image, bare=False)
    if "model" in top and _is_repository(top["model"]):
        cfg.model_repository = r.scalar(top["model"], "model")
        _check_reference(r, top["model"], "model", cfg.model_repository, bare=True)
    if cfg.image and cfg.model_repository:
        raise r.fail(top["model"], "'model' and 'image' cannot both be set: both name where the image goes")


def _is_repository(node: yaml.Node) -> bool:
    """Cog's `model: r8.im/acme/x`, told apart from the seed's `model: "model.py:Class"` by its form."""
    value = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    return bool(value) and ".py:" not in value and not value.endswith(".py")


def _check_reference(r: _Reader, node: yaml.Node, key: str, text: str, bare: bool) -> None:
    from .registry.reference import InvalidReference, parse_reference  # only where a name is given

    try:
        ref = parse_reference(text)
    except InvalidReference as exc:
        raise r.fail(node, f"{key} {text!r} is not an image name: {exc}") from None
    if bare and (ref.tag or ref.digest):
        raise r.fail(node, f"model {text!r} must be a bare repository: tags and digests are not allowed "
                           "(`cogbuild push` adds :latest, or give it REF)")


def _read_weights(r: _Reader, node: yaml.Node) -> list[Weight]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise r.fail(node, "weights must be a list of {name, target, source} entries")
    weights: list[Weight] = []
    for i, item in enumerate(node.value):
        what = f"weights[{i}]"
        entry = r.mapping(item, what, WEIGHT_KEYS)
        missing = sorted(WEIGHT_KEYS - set(entry))
        if missing:
            raise r.fail(item, f"{what}.{missing[0]} is required")
        name = r.scalar(entry["name"], f"{what}.name")
        if not _WEIGHT_NAME.match(name):
            raise r.fail(entry["name"], f"{what}.name {name!r} must contain only lowercase letters, digits, "
                                        "and single . _ - between them (e.g. \"my-model-weights\")")
        target = r.scalar(entry["target"], f"{what}.target")
        clean = posixpath.normpath(target)
        if not target.startswith("/") or clean == "/":
            raise r.fail(entry["target"], f"{what}.target {target!r} must be an absolute path other than /")
        for earlier in weights:
            if earlier.name == name:
                raise r.fail(entry["name"], f"{what}.name {name!r} is used twice")
            if clean == earlier.target or clean.startswith(earlier.target + "/") or \
                    earlier.target.startswith(clean + "/"):
                raise r.fail(entry["target"], f"{what}.target {target!r} overlaps {earlier.target!r} "
                                              f"(weights {earlier.name!r}); weight targets must be disjoint")
        weights.append(Weight(name, clean, _read_sources(r, entry["source"], f"{what}.source")))
    return weights


def _read_sources(r: _Reader, node: yaml.Node, what: str) -> tuple[WeightSource, ...]:
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if not items:
        raise r.fail(node, f"{what} needs at least one source")
    sources = []
    for item in items:
        source = r.mapping(item, what, WEIGHT_SOURCE_KEYS)
        if "uri" not in source:
            raise r.fail(item, f"{what}.uri is required")
        patterns = {}
        for key in ("include", "exclude"):
            patterns[key] = tuple(r.strings(source[key], f"{what}.{key}")) if key in source else ()
            for pattern in patterns[key]:
                if not pattern.strip() or pattern.strip().startswith("!") or "\\" in pattern:
                    raise r.fail(source[key], f"{what}.{key} pattern {pattern!r} must be a non-empty glob with "
                                              "forward slashes and no leading '!'")
        sources.append(WeightSource(r.scalar(source["uri"], f"{what}.uri"), patterns["include"],
                                    patterns["exclude"]))
    return tuple(sources)


def _read_build(r: _Reader, cfg: CogConfig, build: dict[str, yaml.Node]) -> None:
    if "python_version" in build:
        version = r.scalar(build["python_version"], "python_version")
        if not re.fullmatch(r"3\.\d+(\.\d+)?", version):
            raise r.fail(build["python_version"], f"python_version {version!r} is not a Python 3 version "
                                                  "such as \"3.11\" (quote it so YAML keeps it a string)")
        cfg.python_version = ".".join(version.split(".")[:2])
        cfg.python_patch = version if version.count(".") == 2 else None
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
    if "run" in build and _non_empty(build["run"]):
        cfg.run = _read_run(r, build["run"])
    if "pre_install" in build and _non_empty(build["pre_install"]):
        raise r.fail(build["pre_install"], "build.pre_install is not supported: put its commands in build.run")


def _non_empty(node: yaml.Node) -> bool:
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
        return bool(node.value)
    return node.tag != "tag:yaml.org,2002:null"


def _read_run(r: _Reader, node: yaml.Node) -> list[RunStep]:
    """Cog's two forms: a plain command, or {command, mounts: [{type: secret, id, target}]}."""
    steps = []
    for item in r.sequence(node, "build.run"):
        if isinstance(item, yaml.ScalarNode):
            steps.append(RunStep(r.scalar(item, "each build.run entry")))
            continue
        entry = r.mapping(item, "build.run entry", RUN_STEP_KEYS)
        if "command" not in entry:
            raise r.fail(item, "a build.run entry written as a mapping needs a `command`")
        mounts = r.sequence(entry["mounts"], "build.run mounts") if "mounts" in entry else []
        steps.append(RunStep(r.scalar(entry["command"], "build.run command"),
                             tuple(_read_secret_mount(r, m) for m in mounts)))
    return steps


def _read_secret_mount(r: _Reader, node: yaml.Node) -> SecretMount:
    mount = r.mapping(node, "build.run mount", MOUNT_KEYS)
    for key in MOUNT_KEYS:
        if key not in mount:
            raise r.fail(node, f"a build.run mount needs `{key}` (type: secret, id: NAME, target: /path)")
    kind = r.scalar(mount["type"], "mount type")
    if kind != "secret":
        raise r.fail(mount["type"], f"build.run mount type {kind!r} is not supported (only `secret`)")
    target = r.scalar(mount["target"], "mount target")
    if not target.startswith("/") or ".." in target.split("/"):
        raise r.fail(mount["target"], f"mount target {target!r} must be an absolute path inside the image")
    return SecretMount(r.scalar(mount["id"], "mount id"), target)


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
    """The predictor: `run:`, `predict:`, or the seed's `model:` when it has the form "file.py:Class"
    (a `model:` that does not is Cog's repository, read by _read_names)."""
    given: list[str] = [key for key in ("predict", "run") if key in top]
    if "model" in top and not _is_repository(top["model"]):
        given.append("model")
    if len(given) > 1:
        raise r.fail(top[given[1]], f"give only one of predict, run and model (found {', '.join(given)})")
    if not given:
        return
    key = given[0]
    cfg.predictor = _read_ref(r, cfg, top[key], key, "\"predict.py:Predictor\"")
    cfg.kind = "run" if key == "run" else "predict"


def _read_entrypoint(r: _Reader, top: dict[str, yaml.Node]) -> list[str]:
    """`entrypoint: [program, args…]` (or one word): the image runs that program instead of a predictor."""
    node = top["entrypoint"]
    words = [r.scalar(node, "entrypoint")] if isinstance(node, yaml.ScalarNode) else r.strings(node, "entrypoint")
    if not words or not all(w.strip() for w in words):
        raise r.fail(node, "entrypoint must name a program, e.g. [\"cogbuild\"]")
    model_keys = [k for k in MODEL_ONLY_KEYS if k in top] + (["model"] if "model" in top and not
                                                             _is_repository(top["model"]) else [])
    if model_keys:
        raise r.fail(top[model_keys[0]], f"{model_keys[0]!r} cannot be used with 'entrypoint': an entrypoint "
                                         "makes an app image, which has no predictor")
    return words


def _read_ref(r: _Reader, cfg: CogConfig, node: yaml.Node, key: str, example: str) -> str:
    """A "path/to/file.py:Name" reference to a file below cog.yaml's directory."""
    ref = r.scalar(node, key)
    module, sep, name = ref.partition(":")
    if not sep or not module.endswith(".py") or not name.isidentifier():
        raise r.fail(node, f"{key} must look like {example}, not {ref!r}")
    path = (cfg.root / module).resolve()
    if not path.is_relative_to(cfg.root):
        raise r.fail(node, f"{key} names {module}, which is outside {cfg.root}")
    if not path.is_file():
        raise r.fail(node, f"{key} names {module}, which does not exist next to {r.path.name}")
    return ref
