"""Find and load the predictor named by a reference like "predict.py:Predictor"."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .errors import PredictorError
from .predictor import BaseRunner
from .signature import Signature, read_signature

DEFAULT_NAMES = ("Runner", "Predictor")


@dataclass
class LoadedPredictor:
    ref: str
    target: Any  # the predictor instance, or the plain predict function
    predict: Callable[..., Any]
    setup: Callable[..., Any] | None
    signature: Signature


def split_ref(ref: str) -> tuple[str, str | None]:
    """("predict.py", "Predictor") from "predict.py:Predictor"; the name may be absent."""
    ref = ref.strip()
    if not ref:
        raise PredictorError("the predictor reference is empty; expected something like predict.py:Predictor")
    module, _, name = ref.partition(":")
    return module, (name or None)


def import_module_ref(module_ref: str) -> Any:
    """Import "predict.py", "models/predict.py" or a dotted module name, from the current directory."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    path = module_ref if module_ref.endswith(".py") else module_ref.replace(".", "/") + ".py"
    if os.path.isfile(path):
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, os.path.abspath(path))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # so pickling and relative lookups find it
        spec.loader.exec_module(module)
        return module
    if module_ref.endswith(".py"):
        raise PredictorError(f"predictor file {module_ref} does not exist in {os.getcwd()}")
    try:
        return importlib.import_module(module_ref)
    except ModuleNotFoundError as exc:
        raise PredictorError(f"predictor module {module_ref} cannot be imported ({exc})") from None


def _pick_name(module: Any, module_ref: str) -> str:
    for name in DEFAULT_NAMES:
        if callable(getattr(module, name, None)):
            return name
    # Seed-style models name their class freely: take the one predictor class defined here.
    own = [obj for obj in vars(module).values()
           if inspect.isclass(obj) and issubclass(obj, BaseRunner) and obj.__module__ == module.__name__]
    if len(own) == 1:
        return own[0].__name__
    raise PredictorError(f"{module_ref} defines no Runner or Predictor class; name one, as in {module_ref}:MyPredictor")


def _entry_method(instance: Any, where: str, entry: str) -> Callable[..., Any]:
    if entry == "train":
        if callable(getattr(instance, "train", None)):
            return instance.train
        raise PredictorError(f"{where} defines no train() method")
    return _predict_method(instance, where)


def _pick_trainer_name(module: Any, module_ref: str) -> str:
    if callable(getattr(module, "train", None)):
        return "train"
    raise PredictorError(f"{module_ref} defines no train function; name one, as in {module_ref}:train")


def _predict_method(instance: Any, where: str) -> Callable[..., Any]:
    cls = type(instance)
    if isinstance(instance, BaseRunner):
        if cls.run is not BaseRunner.run:
            return instance.run
        if cls.predict is not BaseRunner.predict:
            return instance.predict
    else:
        for name in ("run", "predict"):
            if callable(getattr(instance, name, None)):
                return getattr(instance, name)
    raise PredictorError(f"{where} defines neither run() nor predict()")


def load_predictor(ref: str, entry: str = "predict") -> LoadedPredictor:
    """Import the predictor and read its signature; does not run setup().

    `entry="train"` loads Cog's training interface instead: a `train` function, or a class with
    `train()` (and optionally `setup()`), as cog.yaml's `train:` names it."""
    module_ref, name = split_ref(ref)
    module = import_module_ref(module_ref)
    name = name or (_pick_trainer_name(module, module_ref) if entry == "train" else _pick_name(module, module_ref))
    target = getattr(module, name, None)
    where = f"{module_ref}:{name}"
    if target is None:
        raise PredictorError(f"{module_ref} has no attribute {name!r}")
    if inspect.isclass(target):
        target = target()
        predict = _entry_method(target, where, entry)
        setup = getattr(target, "setup", None)
    elif callable(target):
        predict, setup = target, None
    else:
        raise PredictorError(f"{where} is neither a class nor a function")
    signature = read_signature(predict, setup)
    signature.has_healthcheck = callable(getattr(target, "healthcheck", None))
    return LoadedPredictor(ref=ref, target=target, predict=predict, setup=setup, signature=signature)
