"""Models whose outputs are pydantic models, v1 or v2: the SDK needs neither and serves both.

Each pydantic is installed from PyPI into a directory of its own that only the model sees (PYTHONPATH),
as the model's packages are in an image; the runtime itself never imports pydantic.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cogbuild.pyresolve.pip_runner import pip_environment

from .conftest import MODELS

pytestmark = pytest.mark.network

PYDANTICS = {"v1": "pydantic==1.10.27", "v2": "pydantic==2.14.4"}


@pytest.fixture(scope="module", params=sorted(PYDANTICS))
def pydantic_site(request, tmp_path_factory) -> tuple[str, Path]:
    target = tmp_path_factory.mktemp(f"pydantic-{request.param}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--isolated", "--only-binary=:all:",
                           "--disable-pip-version-check", "--target", str(target), PYDANTICS[request.param]],
                          env=pip_environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return PYDANTICS[request.param].split("==")[1], target


def test_a_pydantic_output_serves_with_its_schema(serve, pydantic_site):
    version, site = pydantic_site
    server = serve("predict.py:Predictor", cwd=MODELS / "pydantic", env={"PYTHONPATH": str(site)})
    assert server.wait_until("READY")["status"] == "READY"
    body = server.client.post("/predictions", json={"input": {"text": "yo", "n": 2}}).json()
    assert body["status"] == "succeeded", body
    assert body["output"] == {"pydantic_version": version, "text": "yo", "note": None,
                              "items": [{"name": "item0", "score": 0.0}, {"name": "item1", "score": 0.5}]}
    output = server.client.get("/openapi.json").json()["components"]["schemas"]["Output"]
    assert output["title"] == "Output" and output["required"] == ["pydantic_version", "text", "items"]
    item = output["properties"]["items"]["items"]
    assert item["properties"]["score"]["type"] == "number" and "$ref" not in str(output)


def test_an_iterator_of_pydantic_models_streams(serve, pydantic_site):
    _, site = pydantic_site
    server = serve("predict.py:Streamer", cwd=MODELS / "pydantic", env={"PYTHONPATH": str(site)})
    body = server.client.post("/predictions", json={"input": {"n": 2}}).json()
    assert body["output"] == [{"name": "item0", "score": 0.0}, {"name": "item1", "score": 1.0}], body
