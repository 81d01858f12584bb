"""cogbuild init: a model template that builds and predicts as it is, to edit from there."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from ..ui import progress_printer, result

COG_YAML = """\
# How cogbuild builds this model into an image. Edit, then run `cogbuild build`.
build:
  python_version: "3.11"
  # Python packages from PyPI, pinned into cog.lock with their hashes by `cogbuild lock`:
  # python_packages:
  #   - "numpy==2.1.3"
  # or a requirements file:
  # python_requirements: requirements.txt
  # Debian packages:
  # system_packages:
  #   - "libgl1"
  # An NVIDIA GPU variant of the image as well:
  # gpu: true

# The predictor: file and class (Cog's older `predict:` key works too).
run: "predict.py:Predictor"
"""

PREDICT_PY = '''\
"""The model: setup() runs once when the server starts, predict() once per request."""

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        # Load weights here, once, so predictions stay fast.
        self.greeting = "hello"

    def predict(
        self,
        text: str = Input(description="Who to greet", default="world"),
        repeat: int = Input(description="How many times", default=1, ge=1, le=10),
    ) -> str:
        # A file input would be `image: Path = Input(description="...")` (from cog import Path);
        # return a cog.Path to give a file back.
        return " ".join([f"{self.greeting} {text}"] * repeat)
'''

COGIGNORE = """\
# Files left out of the image's code layer (gitignore patterns).
.git/
.venv/
__pycache__/
*.pyc
# what `cogbuild predict` writes here: output.<ext>, output.N.<ext>
/output.*
"""

TEMPLATE = {"cog.yaml": COG_YAML, "predict.py": PREDICT_PY, ".cogignore": COGIGNORE}


def write_template(directory: Path) -> list[Path]:
    """Write the template into `directory`; refuse, writing nothing, if any of its files exist."""
    existing = [name for name in TEMPLATE if (directory / name).exists()]
    if existing:
        raise UsageError(f"{directory / existing[0]} already exists; nothing was written "
                         f"(run init in an empty directory or remove {', '.join(existing)})")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in TEMPLATE.items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


@click.command("init")
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
@click.pass_context
def command(ctx: click.Context, directory: str) -> None:
    """Create a working model template in DIRECTORY: cog.yaml, predict.py and .cogignore.

    The template builds and predicts as it is; no file is overwritten.

    \b
    Examples:
      cogbuild init my-model && cd my-model
      cogbuild predict -i text=you          # on this host, no image
      cogbuild build -t my-model:dev && cogbuild predict my-model:dev -i text=you

    \b
    Exit codes: 0 written; 2 a template file already exists (nothing is written).
    """
    target = Path(directory)
    for path in write_template(target):
        result(str(path))
    progress_printer(ctx)(f"next: cd {target} && cogbuild predict -i text=you")
