"""`Input(...)`: metadata and constraints for one predictor parameter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Distinguishes "no default given" (required input) from an explicit `default=None`
# (optional input), which older Cog models rely on.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


@dataclass(frozen=True)
class FieldInfo:
    default: Any = MISSING
    description: str | None = None
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    regex: str | None = None
    choices: list | None = None
    deprecated: bool | None = None
    accept: str | None = None


def Input(  # noqa: N802 - Cog's public name
    default: Any = MISSING,
    *,
    description: str | None = None,
    ge: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    regex: str | None = None,
    choices: list | None = None,
    deprecated: bool | None = None,
    accept: str | None = None,
    default_factory: Any = None,
) -> Any:
    """Describe a predictor input; used as the parameter's default value."""
    if default_factory is not None:
        raise TypeError("Input(default_factory=...) is not supported; give a literal default instead")
    return FieldInfo(default, description, ge, le, min_length, max_length, regex,
                     None if choices is None else list(choices), deprecated, accept)
