"""Outputs declared with pydantic's own BaseModel, whichever major version the model installed."""

from typing import Iterator, List, Optional

import pydantic

from cog import BasePredictor, Input


class Item(pydantic.BaseModel):
    name: str
    score: float


class Output(pydantic.BaseModel):
    pydantic_version: str
    text: str
    items: List[Item]
    note: Optional[str] = None


class Predictor(BasePredictor):
    def predict(self, text: str = Input(default="hi"), n: int = Input(default=2, ge=0)) -> Output:
        items = [Item(name=f"item{k}", score=k / 2) for k in range(n)]
        return Output(pydantic_version=pydantic.VERSION, text=text, items=items)


class Streamer(BasePredictor):
    def predict(self, n: int = 2) -> Iterator[Item]:
        for k in range(n):
            yield Item(name=f"item{k}", score=float(k))
