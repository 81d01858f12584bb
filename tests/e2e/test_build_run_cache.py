"""build.run layers through `--cache`: a runner with empty caches takes a step's layer from the cache
repository instead of running the step (real Debian packages, runc, a docker-registry on loopback)."""

from __future__ import annotations

import re

import pytest

from cogbuild.registry.layout import Layout
from oci_registry_server import RegistryServer
from test_build_run import EMPTY_PREDICT, clean_env, cogbuild, downloads, image_digest, write_model  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.network]


def test_a_fresh_runner_takes_a_steps_layer_from_the_cache_repository(tmp_path, downloads):
    registry = RegistryServer(tmp_path / "registry").start()
    try:
        # The step's output is random: running it again could not give the layer cog.lock records.
        model = write_model(tmp_path / "model", [
            "python3 -c \"import os; open('/etc/random', 'wb').write(os.urandom(16))\""], predict=EMPTY_PREDICT)
        cache = ["--cache", f"{registry.host}/ci/cache"]
        first = clean_env(tmp_path / "first", downloads)
        digest = image_digest(cogbuild(["build", *cache], model, first))
        recorded = re.search(r'diff-id = "(sha256:[0-9a-f]{64})"', (model / "cog.lock").read_text()).group(1)

        fresh = clean_env(tmp_path / "fresh", downloads)
        assert image_digest(cogbuild(["build", *cache], model, fresh)) == digest
        assert recorded in (model / "cog.lock").read_text()
        store = Layout(tmp_path / "fresh" / "store")
        layers = [layer["digest"] for layer in store.read_json(digest)["layers"]]
        assert not any(store.has_blob(d) for d in layers)  # not one layer was composed or downloaded
        assert not (tmp_path / "fresh" / "cache" / "sandbox").exists() or \
            not list((tmp_path / "fresh" / "cache" / "sandbox").iterdir())
    finally:
        registry.stop()
