"""A model directory as the commands see it: its cog.yaml, its lock (made when missing or stale), its store."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .config import CogConfig, load_config
from .errors import CogbuildError, UsageError
from .policy import lock_inputs_digest
from .lock import LOCK_NAME, Lock, read_lock, write_lock

if TYPE_CHECKING:
    from .registry.layout import Layout
    from .settings import Settings

DEFAULT_PLATFORMS = ["linux/amd64"]


def _cli_warning(message: str) -> None:
    from .ui import warn  # click: loaded only when there is something to say

    warn(message)


@dataclass
class Project:
    config: CogConfig

    @classmethod
    def load(cls, cog_yaml: str | Path | None = None, directory: str | Path = ".",
             warn: Callable[[str], None] | None = None) -> "Project":
        """The model cog.yaml describes; its warnings go to `warn` (default: the CLI's warning line)."""
        path = Path(cog_yaml) if cog_yaml else Path(directory) / "cog.yaml"
        if path.is_dir():
            path = path / "cog.yaml"
        config = load_config(path)
        for message in config.warnings:
            (warn or _cli_warning)(f"{path.name}: {message}")
        return cls(config)

    @property
    def lock_path(self) -> Path:
        return self.config.root / LOCK_NAME

    @property
    def name(self) -> str:
        return self.config.root.name.lower().replace(" ", "-") or "model"

    @property
    def image_name(self) -> str:
        """What `build` names the image without -t: cog.yaml's image:/model:, else <directory>:latest."""
        return self.config.default_image_name or f"{self.name}:latest"

    def default_variants(self) -> list[str]:
        return ["cpu", "gpu"] if self.config.gpu else ["cpu"]

    def lock_is_current(self, lock: Lock) -> bool:
        return lock.inputs == lock_inputs_digest(self.config)

    def check_lock(self) -> str:
        """`lock --check`: what to print when cog.lock is current and complete; a CogbuildError saying why not."""
        lock = read_lock(self.lock_path)
        if not self.lock_is_current(lock):
            raise CogbuildError(f"{self.lock_path} is stale: cog.yaml or the requirements changed since it "
                                "was made; run `cogbuild lock`")
        if missing := lock.unrecorded_runs():
            first = missing[0]
            raise CogbuildError(f"{self.lock_path} records no output digest for build.run step {first.step} "
                                f"({first.platform}, {first.variant}); run `cogbuild build` to record it")
        if unbuilt := lock.unrecorded_wheel_builds():
            raise CogbuildError(f"{self.lock_path} records no built wheel for the sdist of "
                                f"{unbuilt[0].describe()}; run `cogbuild build` to record it")
        return f"{self.lock_path} is up to date"

    def ensure_lock(self, platforms: list[str] | None = None, progress=lambda m: None,
                    *, settings: Settings) -> Lock:
        """The lock on disk if it matches cog.yaml and covers the platforms; otherwise lock anew."""
        wanted = sorted(platforms or DEFAULT_PLATFORMS)
        python_from = "auto"
        previous = read_lock(self.lock_path) if self.lock_path.exists() else None
        if previous is not None:
            if self.lock_is_current(previous) and set(wanted) <= set(previous.platforms):
                return previous
            wanted = sorted(set(wanted) | set(previous.platforms))
            python_from = previous.python_from
        from .resolve import LockSources, make_lock  # resolvers pull in network clients: loaded to lock only

        progress(f"locking {self.config.path.name} for {', '.join(wanted)}")
        lock = make_lock(self.config, wanted, self.default_variants(), python_from=python_from,
                         sources=LockSources.from_settings(settings))
        lock.keep_fixed_outputs(previous)
        write_lock(lock, self.lock_path)
        return lock

    def lock_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.lock_path.read_bytes()).hexdigest()


def open_store(root: Path) -> Layout:
    """The local image store at `root` (Settings.store_root), created when missing."""
    from .registry.layout import Layout  # imported here: `lock --check` needs no store

    return Layout(root).init()


def parse_platforms(text: str | None) -> list[str] | None:
    if not text:
        return None
    platforms = [p.strip() for p in text.split(",") if p.strip()]
    for p in platforms:
        if p not in ("linux/amd64", "linux/arm64"):
            raise UsageError(f"unsupported platform {p!r} (supported: linux/amd64, linux/arm64)")
    return platforms
