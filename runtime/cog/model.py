"""`cog.BaseModel`: structured outputs, declared as plain annotated classes."""

from __future__ import annotations

import dataclasses


class BaseModel:
    """Subclasses become dataclasses, so `Output(text=..., score=...)` just works."""

    def __init_subclass__(cls, *, auto_dataclass: bool = True, **dataclass_options: object) -> None:
        super().__init_subclass__()
        if auto_dataclass:
            dataclasses.dataclass(**dataclass_options)(cls)  # type: ignore[call-overload]
