"""The statuses the API reports: a prediction's, and the server's at /health-check.

Both are `str` enums, so a member is its value wherever a string is expected: JSON writes
`"status":"succeeded"`, and a status read back from JSON compares equal to its member.
Standard library only: the worker (on the model's interpreter) imports this too.
"""

from __future__ import annotations

from enum import Enum


class _StrValue(str, Enum):
    def __str__(self) -> str:  # the value in f-strings and str() on every Python (3.12 would give "Class.NAME")
        return self.value


class PredictionStatus(_StrValue):
    """A prediction's (or training's) status; setup reports SUCCEEDED or FAILED too. Cog's schema order."""

    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset((PredictionStatus.SUCCEEDED, PredictionStatus.CANCELED, PredictionStatus.FAILED))


class Health(_StrValue):
    """/health-check's status. The worker's own lifecycle takes STARTING, READY, SETUP_FAILED and DEFUNCT;
    the service adds BUSY (every slot taken) and UNHEALTHY (the predictor's healthcheck() said so)."""

    STARTING = "STARTING"
    READY = "READY"
    BUSY = "BUSY"
    SETUP_FAILED = "SETUP_FAILED"
    DEFUNCT = "DEFUNCT"
    UNHEALTHY = "UNHEALTHY"
