"""Isolation and lifecycle: cancel, worker death, setup failure, timeouts, shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import cog

ASYNC = {"Prefer": "respond-async"}


def wait_status(server, prediction_id: str, sink, status: str, timeout: float = 20) -> dict:
    """The webhook that reported `status` for this prediction (waits for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for hook in sink.webhooks():
            if hook["id"] == prediction_id and hook["status"] == status:
                return hook
        time.sleep(0.02)
    raise AssertionError(f"{prediction_id} never reported {status}: {[(h['id'], h['status']) for h in sink.webhooks()]}")


def test_cancel_interrupts_sync_sleep_quickly(serve, sink):
    server = serve("predict.py:Slow")
    server.client.post("/predictions", headers=ASYNC, json={
        "id": "c1", "input": {"seconds": 30}, "webhook": f"{sink.url}/h"})
    time.sleep(0.3)
    started = time.monotonic()
    assert server.client.post("/predictions/c1/cancel").status_code == 200
    final = wait_status(server, "c1", sink, "canceled")
    assert time.monotonic() - started < 1.0
    assert "started" in final["logs"] and final["error"] is None
    assert server.client.get("/health-check").json()["status"] == "READY"
    assert server.client.post("/predictions", json={"input": {"seconds": 0}}).json()["output"] == "slept"


def test_cancel_right_after_submit_is_not_lost(serve, sink):
    for predictor in ("predict.py:Slow", "predict.py:AsyncSlow"):
        server = serve(predictor, env={"COG_CANCEL_GRACE": "30"})  # no kill-and-respawn rescue
        for attempt in range(5):
            pid = f"early-{predictor}-{attempt}"
            accepted = server.client.post("/predictions", headers=ASYNC, json={
                "id": pid, "input": {"seconds": 30}, "webhook": f"{sink.url}/h",
                "webhook_events_filter": ["completed"]})
            assert accepted.status_code == 202
            assert server.client.post(f"/predictions/{pid}/cancel").status_code == 200
            assert wait_status(server, pid, sink, "canceled", timeout=5)["status"] == "canceled"


def test_cancel_of_a_sync_request_answers_canceled(serve):
    server = serve("predict.py:Slow")
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=server.client.post(
        "/predictions", json={"id": "c2", "input": {"seconds": 30}})))
    thread.start()
    time.sleep(0.4)
    server.client.post("/predictions/c2/cancel")
    thread.join(5)
    assert result["r"].json()["status"] == "canceled"


def test_cancel_async_prediction(serve, sink):
    server = serve("predict.py:AsyncSlow")
    server.client.post("/predictions", headers=ASYNC, json={
        "id": "a1", "input": {"seconds": 30}, "webhook": f"{sink.url}/h"})
    time.sleep(0.3)
    server.client.post("/predictions/a1/cancel")
    assert wait_status(server, "a1", sink, "canceled")["status"] == "canceled"
    assert server.client.post("/predictions", json={"input": {"seconds": 0}}).json()["status"] == "succeeded"


def test_cancel_ignored_by_predictor_kills_and_respawns_worker(serve, sink):
    server = serve("predict.py:Stubborn", env={"COG_CANCEL_GRACE": "0.3"})
    server.client.post("/predictions", headers=ASYNC, json={
        "id": "s1", "input": {"seconds": 60}, "webhook": f"{sink.url}/h"})
    time.sleep(0.3)
    started = time.monotonic()
    server.client.post("/predictions/s1/cancel")
    wait_status(server, "s1", sink, "canceled")
    assert time.monotonic() - started < 3
    server.wait_until("READY")
    assert server.client.post("/predictions", json={"input": {"seconds": 0}}).json()["output"] == "never canceled"


@pytest.mark.parametrize("how, cause", [("exit", "code 3"), ("segv", "SIGSEGV"), ("kill", "SIGKILL")])
def test_worker_death_fails_the_prediction_and_reports_defunct(serve, how, cause):
    server = serve("predict.py:Crash")
    body = server.client.post("/predictions", json={"input": {"how": how}}).json()
    assert body["status"] == "failed" and cause in body["error"]
    assert "crashing" in body["logs"]
    assert server.client.get("/health-check").json()["status"] == "DEFUNCT"
    refused = server.client.post("/predictions", json={"input": {}})
    assert refused.status_code == 503
    assert server.process.poll() is None  # the server itself stays up


def test_dead_worker_can_be_replaced(serve):
    server = serve("predict.py:Crash", env={"COG_RESTART_DEAD_WORKER": "1"})
    body = server.client.post("/predictions", json={"input": {"how": "kill"}}).json()
    assert body["status"] == "failed" and "SIGKILL" in body["error"]
    health = server.wait_until("READY")
    assert health["worker_restarts"] == 1 and "restarted (#1) after it died" in health["setup"]["logs"]
    assert server.client.post("/predictions", json={"input": {"how": "exit"}}).json()["status"] == "failed"
    assert server.wait_until("READY")["worker_restarts"] == 2


def test_setup_failure(serve):
    server = serve("predict.py:SetupFails")
    health = server.client.get("/health-check").json()
    assert health["status"] == "SETUP_FAILED"
    assert health["setup"]["status"] == "failed"
    assert "loading weights" in health["setup"]["logs"] and "weights are missing" in health["setup"]["logs"]
    assert "Traceback" in health["setup"]["logs"]
    response = server.client.post("/predictions", json={"input": {}})
    assert response.status_code == 503 and "setup failed" in response.json()["detail"]


def test_unloadable_predictor_is_setup_failed_with_the_reason(serve):
    server = serve("predict.py:Untyped")
    health = server.client.get("/health-check").json()
    assert health["status"] == "SETUP_FAILED" and "'thing'" in health["setup"]["logs"]
    assert server.client.get("/openapi.json").status_code == 503


def test_prediction_timeout(serve):
    server = serve("predict.py:Slow", env={"COG_PREDICT_TIMEOUT": "0.5"})
    body = server.client.post("/predictions", json={"input": {"seconds": 10}}).json()
    assert body["status"] == "failed" and "timeout of 0.5 seconds" in body["error"]
    assert server.client.post("/predictions", json={"input": {"seconds": 0}}).json()["status"] == "succeeded"


def test_sigterm_finishes_in_flight_work_and_sends_webhooks(serve, sink):
    server = serve("predict.py:Slow")
    server.client.post("/predictions", headers=ASYNC, json={
        "id": "t1", "input": {"seconds": 0.8}, "webhook": f"{sink.url}/h"})
    time.sleep(0.2)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0
    final = [h for h in sink.webhooks() if h["status"] == "succeeded"]
    assert final and final[0]["output"] == "slept"


def test_sigterm_cancels_work_past_the_grace(serve, sink):
    server = serve("predict.py:Slow", env={"COG_SHUTDOWN_GRACE": "0.3"})
    server.client.post("/predictions", headers=ASYNC, json={
        "id": "t2", "input": {"seconds": 30}, "webhook": f"{sink.url}/h"})
    time.sleep(0.2)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0
    assert [h["status"] for h in sink.webhooks()][-1] == "canceled"


def test_second_signal_cancels_in_flight_work_at_once(serve, sink):
    server = serve("predict.py:Slow")  # default grace: 30 s
    server.client.post("/predictions", headers=ASYNC, json={
        "id": "t3", "input": {"seconds": 30}, "webhook": f"{sink.url}/h"})
    time.sleep(0.3)
    started = time.monotonic()
    server.process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(10) == 0
    assert time.monotonic() - started < 5
    assert wait_status(server, "t3", sink, "canceled")["status"] == "canceled"


def test_shutdown_endpoint(serve):
    server = serve("predict.py:Echo")
    assert server.client.post("/shutdown").status_code == 200
    assert server.process.wait(10) == 0


def test_predictions_refused_while_starting(serve):
    server = serve("predict.py:SlowToStart", ready=("STARTING",))
    response = server.client.post("/predictions", json={})
    assert response.status_code == 503
    server.wait_until("READY")
    assert server.client.post("/predictions", json={}).json()["output"] == "ok"


def test_user_healthcheck_reports_unhealthy(serve):
    server = serve("predict.py:SelfChecking", env={"COG_HEALTHCHECK_TIMEOUT": "0.5"})
    assert server.client.get("/health-check").json()["status"] == "READY"
    for state, words in (("bad", "returned False"), ("raise", "GPU fell off the bus"), ("hang", "timed out after 0.5 seconds")):
        server.client.post("/predictions", json={"input": {"state": state}})
        health = server.client.get("/health-check").json()
        assert health["status"] == "UNHEALTHY" and words in health["user_healthcheck_error"], health
        if state != "hang":  # a hung check stays in flight; the others recover at once
            server.client.post("/predictions", json={"input": {"state": "ok"}})
            assert server.client.get("/health-check").json()["status"] == "READY"


def test_defaults_from_environment_and_class_picked_from_the_file(tmp_path):
    """No flags: $PORT and $COG_PREDICTOR decide, and a file with one predictor class needs no class name."""
    import os
    import subprocess
    import sys

    import httpx

    from http_server import free_port

    (tmp_path / "model.py").write_text(
        "import cog\n"
        "class AnyName(cog.Model):\n"
        "    @cog.input('x', type=int, default=2)\n"
        "    def predict(self, x):\n        return x * 10\n")
    port = free_port()
    env = {**os.environ, "PORT": str(port), "COG_PREDICTOR": "model.py"}
    process = subprocess.Popen([sys.executable, "-m", "cog.server.http"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health-check").json()["status"] == "READY":
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        assert httpx.post(f"http://127.0.0.1:{port}/predictions", json={}).json()["output"] == 20
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


def test_bad_settings_and_busy_port_are_one_clear_sentence(serve):
    import os
    import subprocess
    import sys

    from .conftest import MODELS

    bad = subprocess.run([sys.executable, "-m", "cog.server.http", "--predictor", "predict.py:Echo"], cwd=MODELS,
                         env={**os.environ, "COG_PREDICT_TIMEOUT": "soon"}, capture_output=True, text=True, timeout=20)
    assert bad.returncode == 2 and bad.stderr.strip() == "cog: error: COG_PREDICT_TIMEOUT='soon' is not a number of at least 0"
    running = serve("predict.py:Echo")
    clash = subprocess.run([sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1", "--port", str(running.port),
                            "--predictor", "predict.py:Echo"], cwd=MODELS, capture_output=True, text=True, timeout=30)
    assert clash.returncode == 1 and f"cannot listen on 127.0.0.1:{running.port}" in clash.stderr
    assert "Traceback" not in clash.stderr


def test_cancel_while_streaming_keeps_the_worker_channel_intact(serve, sink):
    server = serve("predict.py:Chatty")
    for attempt in range(3):
        pid = f"chatty-{attempt}"
        server.client.post("/predictions", headers=ASYNC, json={"id": pid, "input": {}, "webhook": f"{sink.url}/h",
                                                                "webhook_events_filter": ["completed"]})
        time.sleep(0.3)
        server.client.post(f"/predictions/{pid}/cancel")
        deadline = time.monotonic() + 10
        while not any(h["id"] == pid for h in sink.webhooks()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [h["status"] for h in sink.webhooks() if h["id"] == pid] == ["canceled"]
    assert server.client.get("/health-check").json()["status"] == "READY"
    assert server.client.post("/predictions", json={"input": {"lines": 2, "size": 3}}).json()["output"] == ["yyy"] * 2


def test_sigterm_answers_in_flight_sync_requests(serve):
    server = serve("predict.py:Slow")
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=server.client.post(
        "/predictions", json={"input": {"seconds": 0.8}})))
    thread.start()
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    thread.join(10)
    assert result["r"].status_code == 200 and result["r"].json()["output"] == "slept"
    assert server.process.wait(10) == 0


def test_respawn_explains_itself_to_other_predictions(serve, sink):
    server = serve("predict.py:AsyncStubborn", env={"COG_CANCEL_GRACE": "0.3"})
    for pid in ("stuck", "bystander"):
        server.client.post("/predictions", headers=ASYNC, json={"id": pid, "input": {}, "webhook": f"{sink.url}/h"})
    time.sleep(0.3)
    server.client.post("/predictions/stuck/cancel")
    bystander = wait_status(server, "bystander", sink, "failed")
    assert "restarted because canceled prediction stuck did not stop" in bystander["error"]
    assert wait_status(server, "stuck", sink, "canceled")["error"] is None
    server.wait_until("READY")


@pytest.mark.parametrize("line, problem", [
    ("this is not json", "a line is not JSON"),
    # Well-formed JSON, malformed messages: the client once waited forever for a "done" without a status.
    ('{"ev":"done","id":"p1"}', "a 'done' message lacks 'status'"),
    ('{"ev":"done","id":"p1","status":"processing"}', "a 'done' message has status 'processing'"),
    ('{"ev":"output","id":"p1","value":null,"files":[{"at":"x","path":"/etc/passwd"}]}', "'files' is not a list"),
    ('{"ev":"log","id":"p1","text":7}', "a 'log' message has 'text' of type int, not str"),
])
def test_corrupt_worker_channel_fails_the_prediction_not_the_server(serve, line, problem):
    server = serve("predict.py:Corrupt")
    response = server.client.post("/predictions", json={"id": "p1", "input": {"line": line}}, timeout=15)
    body = response.json()
    assert body["status"] == "failed" and "message channel broke" in body["error"] and problem in body["error"]
    assert server.client.get("/health-check").json()["status"] == "DEFUNCT"


def test_async_healthcheck_runs_on_the_predictions_loop(serve):
    server = serve("predict.py:AsyncSelfChecking")
    assert server.client.get("/health-check").json()["status"] == "READY"
    server.client.post("/predictions", json={"input": {"healthy": False}})
    health = server.client.get("/health-check").json()
    assert health["status"] == "UNHEALTHY" and "returned False" in health["user_healthcheck_error"]
    server.client.post("/predictions", json={"input": {"healthy": True}})
    assert server.client.get("/health-check").json()["status"] == "READY"


def test_the_worker_runs_on_cog_worker_python_and_sees_none_of_the_servers_packages(serve, tmp_path):
    """As in an image: the server on its own packages, the model's worker on another environment that has
    the cog SDK (here through PYTHONPATH) but no aiohttp."""
    venv = tmp_path / "model-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    runtime = os.path.dirname(os.path.dirname(cog.__file__))
    server = serve("predict.py:Whereabouts", env={"COG_WORKER_PYTHON": str(venv / "bin" / "python"),
                                                   "PYTHONPATH": runtime})
    body = server.client.post("/predictions", json={"input": {}}).json()
    assert body["status"] == "succeeded", body
    assert body["output"] == {"executable": str(venv / "bin" / "python"), "aiohttp": False}
