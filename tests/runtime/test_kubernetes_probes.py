"""The probes `cogbuild deploy kubernetes` writes, asked of a real server in each of its states, read as the
kubelet reads an httpGet probe: 200-399 passes, anything else fails."""

from __future__ import annotations

import threading

from cogbuild.kubernetes import Deployment, ModelImage, service_manifests

MODEL = ModelImage(reference="127.0.0.1:5000/m@sha256:" + "0" * 64, variant="cpu", uid=1000, gid=1000, port=5000,
                   concurrency=1, drain_seconds=61, entrypoint=["python", "-m", "cog.server.http"])


def probe_paths() -> dict[str, str]:
    deployment = service_manifests(MODEL, Deployment("m"))[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {kind: container[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}


def passing(server) -> set[str]:
    """The probes that pass now."""
    return {kind for kind, path in probe_paths().items() if 200 <= server.client.get(path).status_code < 400}


def test_during_setup_only_liveness_passes(serve):
    server = serve("predict.py:SlowToStart", ready=("STARTING",))
    assert passing(server) == {"livenessProbe"}
    server.wait_until("READY")
    assert passing(server) == {"startupProbe", "readinessProbe", "livenessProbe"}


def test_a_busy_worker_stays_alive_but_leaves_the_service(serve):
    server = serve("predict.py:Slow")
    running = threading.Thread(target=server.client.post, args=("/predictions",),
                               kwargs={"json": {"input": {"seconds": 3}}})
    running.start()
    try:
        server.wait_until("BUSY")
        assert passing(server) == {"startupProbe", "livenessProbe"}
        assert server.client.get("/health-check").status_code == 200  # Cog's own answer is unchanged
    finally:
        running.join()
    assert "readinessProbe" in passing(server)


def test_a_dead_worker_fails_liveness(serve):
    server = serve("predict.py:Crash")
    server.client.post("/predictions", json={"input": {"how": "exit"}})
    assert server.client.get("/health-check").json()["status"] == "DEFUNCT"
    assert passing(server) == set()


def test_failed_setup_fails_every_probe(serve):
    server = serve("predict.py:SetupFails")
    assert server.client.get("/health-check").json()["status"] == "SETUP_FAILED"
    assert passing(server) == set()
