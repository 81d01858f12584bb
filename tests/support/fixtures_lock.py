"""Models with a lock the tests write themselves (no network)."""

from __future__ import annotations

from pathlib import Path

from cogbuild.config import load_config
from cogbuild.lock import Lock, write_lock
from cogbuild.policy import lock_inputs_digest


def model_with_empty_lock(directory: Path) -> Path:
    """A model whose cog.lock is current and pins nothing: enough for `lock --check`."""
    (directory / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n')
    (directory / "predict.py").write_text("")
    config = load_config(directory / "cog.yaml")
    write_lock(Lock(lock_inputs_digest(config), "3.11", "bookworm", ["linux/amd64"], ["cpu"], []),
               directory / "cog.lock")
    return directory
