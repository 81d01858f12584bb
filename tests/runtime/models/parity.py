"""Predictors for the behaviours ported from Cog's integration tests (tests/runtime/test_cog_parity.py)."""

import sys
import time
from typing import Iterator

import cog
from cog import BasePredictor, Input, current_scope


class Streamer(BasePredictor):
    """Opts in to server-sent events; records metrics around its chunks."""

    @cog.streaming
    def predict(self, count: int = 2, pause: float = 0.05, linger: float = 0.0) -> Iterator[str]:
        scope = current_scope()
        scope.record_metric("temperature", 0.7)
        for index in range(count):
            time.sleep(pause)
            print(f"making chunk {index}")
            yield f"chunk-{index}"
        scope.record_metric("token_count", count, mode="incr")
        time.sleep(linger)


class PlainIterator(BasePredictor):
    """An iterator that did not opt in to streaming: JSON only."""

    def predict(self, count: int = 2) -> Iterator[str]:
        for index in range(count):
            yield f"chunk-{index}"


class Metrics(BasePredictor):
    def predict(self, name: str = "") -> str:
        scope = current_scope()
        if name:  # one metric name to try, valid or not
            scope.record_metric(name, 1)
            return "ok"
        scope.record_metric("temperature", 0.7)
        scope.record_metric("token_count", 1, mode="incr")
        scope.record_metric("token_count", 2, mode="incr")
        scope.record_metric("tags", "fast", mode="append")
        scope.record_metric("tags", "cached", mode="append")
        scope.record_metric("timing.preprocess", 0.1)
        scope.record_metric("timing.steps.decode", 2, mode="incr")
        scope.metrics["dict_metric"] = "hello"
        cog.emit_metric("output_tokens", 42)
        return "ok"


class Exits(BasePredictor):
    def predict(self, do_exit: bool = False) -> str:
        if do_exit:
            sys.exit(1)
        return "still alive"


class SlowSetup(BasePredictor):
    def setup(self) -> None:
        print("starting slow setup", flush=True)
        time.sleep(30)

    def predict(self) -> str:
        return "unreachable"


class UnionValue(BasePredictor):
    def predict(self, value: str | float | None = Input(default=None)) -> str:
        return f"{type(value).__name__}:{value}"


class UnionLists(BasePredictor):
    def predict(self, nums: list[int] | list[float], mixed: list[str | int] = Input(default=["a"])) -> str:
        first = f"{type(nums[0]).__name__}:{nums[0]}" if nums else "empty"
        return f"{first} {[type(m).__name__ for m in mixed]}"
