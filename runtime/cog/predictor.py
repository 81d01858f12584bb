"""Base classes predictors subclass: Cog's `BaseRunner`/`BasePredictor` and the seed's `Model`."""

from __future__ import annotations

from typing import Any

from .input import MISSING


class BaseRunner:
    """Override `setup()` (optional) and `run()` (or `predict()`)."""

    def setup(self, weights: Any = None) -> None:
        """Load the model once, before any prediction."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} implements neither run() nor predict()")

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} implements neither run() nor predict()")

    @property
    def scope(self) -> Any:
        from .scope import current_scope

        return current_scope()

    def record_metric(self, key: str, value: Any, mode: str = "replace") -> None:
        self.scope.record_metric(key, value, mode)


class BasePredictor(BaseRunner):
    """Cog's classic name for a predictor base class."""


class Model(BaseRunner):
    """The seed's base class: `setup()` plus `predict()` decorated with `@cog.input(...)`."""


def input(  # noqa: A001 - the seed's public name
    name: str,
    type: Any = str,  # noqa: A002
    help: str | None = None,  # noqa: A002
    default: Any = MISSING,
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    options: list | None = None,
) -> Any:
    """Seed style: declare one input of `predict`; stack one decorator per input."""

    def decorate(fn: Any) -> Any:
        declared = list(getattr(fn, "_cog_inputs", []))
        if any(d["name"] == name for d in declared):
            raise ValueError(f"input {name!r} is declared twice on {fn.__qualname__}")
        # Decorators apply bottom-up; inserting first keeps the order they are written in.
        declared.insert(0, dict(name=name, type=type, help=help, default=default,
                                min=min, max=max, options=options))
        fn._cog_inputs = declared
        return fn

    return decorate
