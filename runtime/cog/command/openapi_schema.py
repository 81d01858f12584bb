"""Print a predictor's OpenAPI schema without running its setup().

    python -m cog.command.openapi_schema [--predictor predict.py:Predictor] [--train train.py:train]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import PredictorError
from ..loader import load_predictor
from ..openapi import openapi_document

DEFAULT_REF = "predict.py:Predictor"


def openapi_schema(ref: str | None = None, train_ref: str | None = None) -> dict:
    """The OpenAPI document of the predictor `ref` (default `$COG_PREDICTOR`), relative to the cwd, with
    the trainings of `train_ref` (default `$COG_TRAIN`, none when unset)."""
    predictor = load_predictor(ref or os.environ.get("COG_PREDICTOR") or DEFAULT_REF)
    train_ref = train_ref or os.environ.get("COG_TRAIN")
    trainer = load_predictor(train_ref, entry="train") if train_ref else None
    return openapi_document(predictor.signature, trainer.signature if trainer else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cog.command.openapi_schema", description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", help="module and class, like predict.py:Predictor (default: $COG_PREDICTOR)")
    parser.add_argument("--train", help="the training entry, like train.py:train (default: $COG_TRAIN)")
    args = parser.parse_args(argv)
    try:
        schema = openapi_schema(args.predictor, args.train)
    except PredictorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the model's own import failed; say so in one line
        ref = args.predictor or os.environ.get("COG_PREDICTOR") or DEFAULT_REF
        print(f"error: importing {ref.split(':')[0]} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    json.dump(schema, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
