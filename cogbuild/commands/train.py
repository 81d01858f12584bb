"""cogbuild train: one training job with the model's `train:` entry, from its directory or its image."""

from __future__ import annotations

import click

from ..config import load_config
from ..errors import UsageError
from .predict import make_request, model_directory, prediction_options, run_job


@click.command("train")
@click.argument("target", required=False, default=".", metavar="[DIR|IMAGE]")
@prediction_options
@click.pass_context
def command(ctx: click.Context, target: str, inputs: tuple[str, ...], json_text: str | None, out_path: str | None,
            runtime: str | None, timeout: float | None) -> None:
    """Run one training with the `train:` entry of the model in DIR (on this host) or IMAGE (in a container).

    The model serves Cog's API under /trainings; inputs and output work as with `cogbuild predict`, checked
    against the schema's TrainingInput before the model starts.

    \b
    Examples:
      cogbuild train -i epochs=3                          # the model in this directory
      cogbuild train my-model:latest --json '{"epochs": 3}' -o weights.tar

    \b
    Exit codes: 0 the training succeeded; 1 it failed or could not run; 2 bad input or usage.
    """
    target, request = make_request(target, inputs, json_text, component="TrainingInput")
    directory = model_directory(target)
    if directory is not None and load_config(directory / "cog.yaml").trainer is None:
        raise UsageError(f"{directory / 'cog.yaml'} has no `train:` entry; add one like train: \"train.py:train\"")
    run_job(ctx, target, request, out_path, runtime, timeout, "trainings")
