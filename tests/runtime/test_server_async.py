"""Async predictions, webhooks, server-sent events, concurrency slots."""

from __future__ import annotations

import threading
import time

from .conftest import module_server, read_events

tokens = module_server("predict.py:Tokens", env={"COG_WEBHOOK_INTERVAL": "0.2", "COG_WEBHOOK_BACKOFF": "0.05"})
async_slow = module_server("predict.py:AsyncSlow")

ASYNC = {"Prefer": "respond-async"}


def wait_for_health(server, status: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while server.client.get("/health-check").json()["status"] != status:
        assert time.monotonic() < deadline, f"never {status}"
        time.sleep(0.01)


def test_respond_async_returns_202_then_webhooks(tokens, sink):
    response = tokens.client.post("/predictions", headers=ASYNC, json={
        "id": "hook-1", "input": {"words": 5, "delay": 0.1}, "webhook": f"{sink.url}/hook"})
    assert response.status_code == 202
    assert response.json()["id"] == "hook-1" and response.json()["status"] in ("starting", "processing")
    hooks = sink.wait_for_webhook("succeeded")
    assert hooks[0]["status"] == "processing"
    final = hooks[-1]
    assert final["output"] == ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]
    assert "token 4" in final["logs"] and final["metrics"]["predict_time"] > 0
    assert [h["status"] for h in hooks].count("succeeded") == 1
    # intermediate webhooks are throttled: 5 outputs and 5 log lines in ~0.5 s give far fewer than 10 posts
    assert len(hooks) < 9
    outputs = [len(h["output"] or []) for h in hooks]
    assert outputs == sorted(outputs)  # sent in order


def test_webhook_events_filter(tokens, sink):
    tokens.client.post("/predictions", headers=ASYNC, json={
        "input": {"words": 3}, "webhook": f"{sink.url}/hook", "webhook_events_filter": ["completed"]})
    sink.wait_for_webhook("succeeded")
    time.sleep(0.3)
    assert [h["status"] for h in sink.webhooks()] == ["succeeded"]


def test_terminal_webhook_retried_on_errors(tokens, sink):
    sink.post_statuses = [503, 429, 500]
    tokens.client.post("/predictions", headers=ASYNC, json={
        "input": {"words": 1}, "webhook": f"{sink.url}/hook", "webhook_events_filter": ["completed"]})
    deadline = time.monotonic() + 20
    while len(sink.webhooks()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [h["status"] for h in sink.webhooks()] == ["succeeded"] * 4


def test_dead_webhook_does_not_hurt(tokens):
    response = tokens.client.post("/predictions", headers=ASYNC, json={
        "input": {"words": 2}, "webhook": "http://127.0.0.1:9/dead"})
    assert response.status_code == 202
    time.sleep(0.3)
    assert tokens.client.post("/predictions", json={"input": {"words": 2}}).json()["output"] == ["w0 ", "w1 "]


def test_sse_streams_outputs(tokens):
    events, _ = read_events(tokens.client, "POST", "/predictions", {"input": {"words": 3, "delay": 0.05}})
    names = [n for n, _ in events]
    assert names[0] == "start" and names[-1] == "completed"
    assert [d for n, d in events if n == "output"] == [{"chunk": f"w{i} ", "index": i} for i in range(3)]
    assert "".join(d["data"] for n, d in events if n == "log") == "token 0\ntoken 1\ntoken 2\n"
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["output"] == ["w0 ", "w1 ", "w2 "]


def test_sync_predictor_is_one_at_a_time_409_and_busy(serve):
    server = serve("predict.py:Slow")
    first = threading.Thread(target=server.client.post, args=("/predictions",),
                             kwargs={"json": {"input": {"seconds": 1.0}}})
    first.start()
    wait_for_health(server, "BUSY")
    second = server.client.post("/predictions", json={"input": {"seconds": 0}})
    assert second.status_code == 409
    first.join()
    assert server.client.get("/health-check").json()["status"] == "READY"


def test_async_predictor_runs_concurrently_up_to_its_slots(async_slow):
    results = {}

    def post(tag):
        results[tag] = async_slow.client.post("/predictions", json={"input": {"seconds": 0.8, "tag": tag}})

    threads = [threading.Thread(target=post, args=(t,)) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    wait_for_health(async_slow, "BUSY")
    assert async_slow.client.post("/predictions", json={"input": {"seconds": 0}}).status_code == 409
    for thread in threads:
        thread.join()
    a, b = results["a"].json(), results["b"].json()
    assert a["started_at"] < b["completed_at"] and b["started_at"] < a["completed_at"]  # they overlapped
    for tag in "ab":
        body = results[tag].json()
        assert body["output"] == f"done {tag}"
        assert f"async start {tag}" in body["logs"]  # each prediction's own logs
        assert f"async start {'b' if tag == 'a' else 'a'}" not in body["logs"]


def test_concurrency_from_env(serve):
    server = serve("predict.py:AsyncSlow", env={"COG_MAX_CONCURRENCY": "1"})
    thread = threading.Thread(target=server.client.post, args=("/predictions",),
                              kwargs={"json": {"input": {"seconds": 0.6}}})
    thread.start()
    wait_for_health(server, "BUSY")
    assert server.client.post("/predictions", json={"input": {"seconds": 0}}).status_code == 409
    thread.join()


def test_async_generator_output(serve):
    server = serve("predict.py:AsyncTokens")
    assert server.client.post("/predictions", json={"input": {"words": 3}}).json()["output"] == ["a0 ", "a1 ", "a2 "]


def test_put_is_idempotent(serve):
    server = serve("predict.py:Slow")
    first = server.client.put("/predictions/same-id", headers=ASYNC, json={"input": {"seconds": 0.6}})
    assert first.status_code == 202
    again = server.client.put("/predictions/same-id", headers=ASYNC, json={"input": {"seconds": 0.6}})
    assert again.status_code == 202 and again.json()["id"] == "same-id"
    assert again.json()["status"] in ("starting", "processing")
    mismatch = server.client.put("/predictions/other", json={"id": "different", "input": {}})
    assert mismatch.status_code == 422
    wait_for_health(server, "READY")
    done = server.client.put("/predictions/after", json={"input": {"seconds": 0}})
    assert done.status_code == 200 and done.json()["output"] == "slept"


def test_cancel_unknown_is_404(async_slow):
    assert async_slow.client.post("/predictions/nope/cancel").status_code == 404


def test_sse_client_leaving_cancels_the_prediction(serve):
    server = serve("predict.py:Tokens")
    with server.client.stream("POST", "/predictions", json={"id": "gone", "input": {"words": 1000, "delay": 0.05}},
                              headers={"Accept": "text/event-stream"}) as response:
        for line in response.iter_lines():
            if line.startswith("event: output"):
                break  # leave after the first token
    wait_for_health(server, "READY")  # the slot is free again: the prediction was canceled


def test_async_request_with_unfetchable_file_fails_by_webhook(serve, sink):
    server = serve("predict.py:Files")
    response = server.client.post("/predictions", headers=ASYNC, json={
        "id": "nofile", "input": {"image": f"{sink.url}/missing.png"}, "webhook": f"{sink.url}/h"})
    assert response.status_code == 202
    final = sink.wait_for_webhook("failed")[-1]
    assert final["id"] == "nofile" and "HTTP 404" in final["error"]
