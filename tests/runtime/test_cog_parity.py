"""Behaviours Replicate Cog's integration tests expect of the HTTP API, checked over real HTTP.

Each test names the Cog test (integration-tests/tests/NAME.txtar in replicate/cog) whose
behaviour it checks; the models live in models/parity.py and models/train.py.
"""

from __future__ import annotations

import base64
import time

import pytest

from cog.command.openapi_schema import openapi_schema

from .conftest import MODELS, module_server, read_events

streamer = module_server("parity.py:Streamer")
metrics = module_server("parity.py:Metrics", env={"COG_WEBHOOK_INTERVAL": "0.05"})
trainer = module_server("parity.py:Streamer", args=["--train", "train.py:train"])

ASYNC = {"Prefer": "respond-async"}


def wait_until_active(server, prediction_id: str, path: str = "/predictions") -> None:
    """Until a PUT of the same ID answers 202 (the prediction is running)."""
    deadline = time.monotonic() + 10
    while server.client.put(f"{path}/{prediction_id}", json={}).status_code != 202:
        assert time.monotonic() < deadline, f"{prediction_id} never started"
        time.sleep(0.02)


# ---------------------------------------------------------------- wire format


def test_bodies_are_compact_json(metrics, sink):
    # healthcheck.txtar, prediction_error_response.txtar, coglet_metrics_webhook.txtar and the other
    # tests that grep a response for '"status":"READY"' or '"status":"succeeded"'
    assert '"status":"READY"' in metrics.client.get("/health-check").text
    assert '"status":"succeeded"' in metrics.client.post("/predictions", json={"input": {}}).text
    metrics.client.post("/predictions", headers=ASYNC, json={
        "id": "compact-hook", "webhook": f"{sink.url}/hook", "webhook_events_filter": ["completed"]})
    sink.wait_for_webhook("succeeded")
    assert b'"status":"succeeded"' in sink.requests[-1].body


# ---------------------------------------------------------------- server-sent events


def test_sse_output_events_carry_chunk_and_index(streamer):
    # sse_streaming_output.txtar
    events, raw = read_events(streamer.client, "PUT", "/predictions/sse-out", {"input": {"count": 2}})
    assert 'data: {"chunk":"chunk-0","index":0}' in raw and 'data: {"chunk":"chunk-1","index":1}' in raw
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "completed"
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["output"] == ["chunk-0", "chunk-1"]
    assert [data for name, data in events if name == "log"][0] == {"source": "stdout", "data": "making chunk 0\n"}


def test_sse_metric_events_and_metrics_in_completed(streamer):
    # sse_streaming_metrics.txtar
    events, _ = read_events(streamer.client, "PUT", "/predictions/sse-metrics", {"input": {"count": 2}})
    recorded = [data for name, data in events if name == "metric"]
    assert recorded == [{"name": "temperature", "value": 0.7, "mode": "replace"},
                        {"name": "token_count", "value": 2, "mode": "increment"}]
    final = events[-1][1]["metrics"]
    assert final["temperature"] == 0.7 and final["token_count"] == 2 and final["predict_time"] > 0


def test_sse_only_when_the_model_opts_in(serve):
    # sse_requires_streaming_opt_in.txtar
    server = serve("parity.py:PlainIterator")
    assert server.client.post("/predictions", json={"input": {"count": 2}}).json()["output"] == ["chunk-0", "chunk-1"]
    refused = server.client.put("/predictions/no-streaming", json={"input": {"count": 2}},
                                headers={"Accept": "text/event-stream"})
    assert refused.status_code == 406
    assert "This model does not support streaming responses" in refused.json()["error"]
    assert streaming_flag(server) is None


def test_a_server_may_stream_every_model(serve):
    # cogbuild's own predict shows any model's logs as they come: it starts servers with COG_STREAM_ALL=1
    server = serve("parity.py:PlainIterator", env={"COG_STREAM_ALL": "1"})
    events, _ = read_events(server.client, "POST", "/predictions", {"input": {"count": 1}})
    assert [data for name, data in events if name == "output"] == [{"chunk": "chunk-0", "index": 0}]
    assert streaming_flag(server) is None  # the model itself still does not offer it


def streaming_flag(server):
    return server.client.get("/openapi.json").json()["paths"]["/predictions"]["post"].get("x-cog-streaming")


def test_a_running_prediction_replays_as_a_stream(streamer):
    # sse_stream_history_capacity.txtar / sse_stream_history_disabled.txtar, default capacity
    assert streaming_flag(streamer) is True
    body = {"id": "replayed", "input": {"count": 3, "pause": 0.0, "linger": 1.0}}
    assert streamer.client.put("/predictions/replayed", headers=ASYNC, json=body).status_code == 202
    wait_until_active(streamer, "replayed")
    time.sleep(0.3)  # the chunks come at once; the prediction then lingers
    events, _ = read_events(streamer.client, "PUT", "/predictions/replayed", body)
    assert [data["index"] for name, data in events if name == "output"] == [0, 1, 2]
    assert events[0][0] == "start" and events[-1][1]["status"] == "succeeded"


@pytest.mark.parametrize("capacity", ["2", "0"])
def test_replay_history_capacity(serve, capacity):
    # sse_stream_history_capacity.txtar (2: the oldest events are gone, the client is told so)
    # sse_stream_history_disabled.txtar (0: no replay, live events only)
    server = serve("parity.py:Streamer", env={"COG_STREAM_HISTORY_CAPACITY": capacity})
    body = {"id": "late", "input": {"count": 4, "pause": 0.0, "linger": 1.0}}
    server.client.put("/predictions/late", headers=ASYNC, json=body)
    wait_until_active(server, "late")
    time.sleep(0.3)
    events, raw = read_events(server.client, "PUT", "/predictions/late", body)
    if capacity == "2":  # start, 4 logs, 4 outputs and 2 metrics happened: all but 2 were dropped
        assert [name for name, _ in events] == ["error"]
        assert "SSE stream replay truncated" in events[0][1]["error"] and '"skipped":9' in raw
    else:
        assert "output" not in [name for name, _ in events]
        assert events[-1][0] == "completed" and events[-1][1]["status"] == "succeeded"


# ---------------------------------------------------------------- metrics


def test_metrics_nest_dotted_names_and_accumulate(metrics, sink):
    # coglet_metrics.txtar, emit_metric_deprecated.txtar, coglet_metrics_webhook.txtar
    body = metrics.client.post("/predictions", json={"input": {}})
    assert '"token_count":3' in body.text and '"tags":["fast","cached"]' in body.text
    recorded = body.json()["metrics"]
    assert recorded["timing"] == {"preprocess": 0.1, "steps": {"decode": 2}}
    assert recorded["temperature"] == 0.7 and recorded["dict_metric"] == "hello" and recorded["output_tokens"] == 42
    assert recorded["predict_time"] > 0
    metrics.client.post("/predictions", headers=ASYNC, json={
        "id": "metrics-hook", "webhook": f"{sink.url}/hook", "webhook_events_filter": ["completed"]})
    final = sink.wait_for_webhook("succeeded")[-1]
    assert final["metrics"]["timing"]["preprocess"] == 0.1 and final["metrics"]["predict_time"] > 0


@pytest.mark.parametrize("name,reason", [
    ("_invalid", "must start with a letter"), ("foo__bar", "must not contain consecutive underscores"),
    ("invalid_", "must end with a letter or digit"), (".invalid", "must not start with a dot"),
    ("foo..bar", "empty segments"), ("predict_time", "predict_time"), ("cog.system", "cog."),
    ("a.b.c.d.e", "at most 4 dot-separated segments"), ("a" * 129, "128 characters"), ("a-b", "'-'"),
])
def test_invalid_metric_names_fail_the_prediction(metrics, name, reason):
    # coglet_metrics_validation.txtar
    body = metrics.client.post("/predictions", json={"input": {"name": name}}).json()
    assert body["status"] == "failed" and reason in body["error"], body["error"]
    valid = metrics.client.post("/predictions", json={"input": {"name": "valid_name.part2"}}).json()
    assert valid["status"] == "succeeded" and valid["metrics"]["valid_name"] == {"part2": 1}


# ---------------------------------------------------------------- health, setup, cancel, exit


def test_spare_slots_are_ready_full_slots_busy(serve):
    # healthcheck_during_prediction.txtar: a prediction in flight does not make the server BUSY while
    # another could start; BUSY means no slot is free (as in Cog's own service), here two of two
    server = serve("predict.py:AsyncSlow")  # @cog.concurrent(max=2)
    server.client.put("/predictions/slot-0", headers=ASYNC, json={"input": {"seconds": 1.0}})
    wait_until_active(server, "slot-0")
    assert server.client.get("/health-check").json()["status"] == "READY"
    server.client.put("/predictions/slot-1", headers=ASYNC, json={"input": {"seconds": 1.0}})
    assert server.client.get("/health-check").json()["status"] == "BUSY"
    server.wait_until("READY")


def test_setup_timeout(serve):
    # setup_timeout_serial.txtar
    server = serve("parity.py:SlowSetup", env={"COG_SETUP_TIMEOUT": "1"})
    health = server.client.get("/health-check").json()
    assert health["status"] == "SETUP_FAILED"
    assert "starting slow setup" in health["setup"]["logs"] and "COG_SETUP_TIMEOUT" in health["setup"]["logs"]
    assert server.client.post("/predictions", json={}).status_code == 503


def test_repeated_cancel_is_not_an_error(serve, sink):
    # cancel_repeated.txtar
    server = serve("predict.py:Slow")
    server.client.put("/predictions/cancel-repeat", headers=ASYNC, json={
        "input": {"seconds": 5}, "webhook": f"{sink.url}/hook", "webhook_events_filter": ["completed"]})
    wait_until_active(server, "cancel-repeat")
    answers = [server.client.post("/predictions/cancel-repeat/cancel", json={}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200] and answers[-1].json() == {}
    assert sink.wait_for_webhook("canceled")[-1]["status"] == "canceled"
    assert server.client.post("/predictions/cancel-repeat/cancel").status_code == 200  # long over: still fine
    assert server.client.post("/predictions/never-was/cancel").status_code == 404


def test_sys_exit_fails_the_prediction_not_the_worker(serve):
    # predict_sys_exit.txtar
    server = serve("parity.py:Exits")
    failed = server.client.post("/predictions", json={"input": {"do_exit": True}})
    assert '"status":"failed"' in failed.text and "SystemExit" in failed.json()["error"]
    assert server.client.post("/predictions", json={"input": {}}).json()["output"] == "still alive"
    assert server.client.get("/health-check").json()["status"] == "READY"


# ---------------------------------------------------------------- union inputs


def test_union_input(serve):
    # union_input_http.txtar (except an explicit null, which this runtime accepts for optional inputs)
    server = serve("parity.py:UnionValue")
    for value, output in (("hello", "str:hello"), (1.5, "float:1.5"), (1, "int:1")):
        assert server.client.post("/predictions", json={"input": {"value": value}}).json()["output"] == output
    assert server.client.post("/predictions", json={"input": {}}).json()["output"] == "NoneType:None"
    for wrong in (True, {"x": 1}):
        refused = server.client.post("/predictions", json={"input": {"value": wrong}})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "input", "value"]
    prop = server.client.get("/openapi.json").json()["components"]["schemas"]["Input"]["properties"]["value"]
    assert prop["anyOf"] == [{"type": "string"}, {"type": "number"}]


def test_union_list_inputs(serve):
    # union_input_list_http.txtar, and a list of unions
    server = serve("parity.py:UnionLists")

    def run(nums, mixed=None):
        return server.client.post("/predictions", json={"input": {"nums": nums, **({"mixed": mixed} if mixed else {})}})

    assert run([1]).json()["output"] == "int:1 ['str']"
    assert run([1.5]).json()["output"] == "float:1.5 ['str']"
    assert run([]).json()["output"] == "empty ['str']"
    assert run([2], ["a", 3]).json()["output"] == "int:2 ['str', 'int']"
    for wrong in (["3"], [True], 1):
        assert run(wrong).status_code == 422
    assert run([1], [1.5]).json()["detail"][0]["loc"] == ["body", "input", "mixed", 0]


# ---------------------------------------------------------------- training


def test_training_sync_and_schema(trainer):
    # train_basic.txtar (served: `cog train` itself is the CLI's)
    body = trainer.client.post("/trainings", json={"input": {"n": 42}})
    assert '"status":"succeeded"' in body.text
    weights = body.json()["output"]["weights"]
    assert weights.startswith("data:") and len(_data_uri_bytes(weights)) == 42
    schema = trainer.client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["TrainingInput"]["properties"]["n"]["minimum"] == 0
    assert schema["components"]["schemas"]["TrainingOutput"]["properties"]["weights"]["format"] == "uri"
    assert {"/trainings", "/trainings/{training_id}", "/trainings/{training_id}/cancel"} <= set(schema["paths"])
    assert trainer.client.get("/").json()["trainings_url"] == "/trainings"
    assert trainer.client.get("/health-check").json()["training"]["status"] == "READY"
    refused = trainer.client.post("/trainings", json={"input": {"n": -1}})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "input", "n"]


def test_static_schema_matches_the_served_one(trainer, monkeypatch):
    # the image label is written from source (cog.command.openapi_schema) before anything runs
    monkeypatch.chdir(MODELS)
    assert openapi_schema("parity.py:Streamer", "train.py:train") == trainer.client.get("/openapi.json").json()


def _data_uri_bytes(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def test_training_async_put_webhooks_and_cancel(trainer, sink):
    # the runtime half of training: async with webhooks, idempotent PUT, cancel
    hook = {"webhook": f"{sink.url}/hook", "webhook_events_filter": ["start", "completed"]}
    accepted = trainer.client.put("/trainings/t-1", headers=ASYNC, json={"input": {"n": 3, "pause": 0.3}, **hook})
    assert accepted.status_code == 202 and accepted.json()["id"] == "t-1"
    again = trainer.client.put("/trainings/t-1", headers=ASYNC, json={"input": {"n": 3, "pause": 0.3}, **hook})
    assert again.status_code == 202  # the same training, not a second one
    hooks = sink.wait_for_webhook("succeeded")
    assert [h["status"] for h in hooks] == ["processing", "succeeded"]
    assert len(_data_uri_bytes(hooks[-1]["output"]["weights"])) == 3
    trainer.client.put("/trainings/t-2", headers=ASYNC, json={"input": {"n": 1, "pause": 30}, **hook})
    wait_until_active(trainer, "t-2", "/trainings")
    assert trainer.client.post("/trainings/t-2/cancel").status_code == 200
    assert sink.wait_for_webhook("canceled")[-1]["id"] == "t-2"
    assert trainer.client.post("/predictions", json={"input": {"count": 1}}).json()["output"] == ["chunk-0"]


def test_trainings_do_not_stream(trainer, serve):
    refused = trainer.client.post("/trainings", json={"input": {"n": 1}}, headers={"Accept": "text/event-stream"})
    assert refused.status_code == 406 and "Trainings do not stream" in refused.json()["error"]
    # unless the server streams everything, as those that `cogbuild train` starts do
    server = serve("parity.py:Streamer", args=["--train", "train.py:train"], env={"COG_STREAM_ALL": "1"})
    events, _ = read_events(server.client, "POST", "/trainings", {"input": {"n": 2}})
    assert [d["data"] for n, d in events if n == "log"] == ["training with n=2\n"]
    assert events[-1][1]["status"] == "succeeded"


def test_trainer_class_with_setup(serve):
    # training_setup.txtar
    server = serve("parity.py:Streamer", args=["--train", "train.py:Trainer"])
    health = server.client.get("/health-check").json()["training"]
    assert health["status"] == "READY" and "Trainer is setting up." in health["setup"]["logs"]
    assert server.client.post("/trainings", json={"input": {"s": "world"}}).json()["output"] == "hello train world"


def test_ready_once_the_trainer_set_up_too(serve):
    server = serve("parity.py:Streamer", args=["--train", "train.py:SlowTrainer"], ready=("STARTING",))
    seen = set()
    while (health := server.client.get("/health-check").json())["status"] == "STARTING":
        seen.add((health["setup"]["status"], health["training"]["status"]))
        time.sleep(0.05)
    assert ("succeeded", "STARTING") in seen  # the predictor was set up first, and that was not enough
    assert health["status"] == "READY" and health["training"]["status"] == "READY"
    assert server.client.post("/trainings", json={"input": {"s": "now"}}).json()["output"] == "hello train now"


def test_no_trainings_without_a_train_entry(streamer):
    assert streamer.client.post("/trainings", json={"input": {}}).status_code == 404
    assert "trainings_url" not in streamer.client.get("/").json()
    assert "/trainings" not in streamer.client.get("/openapi.json").json()["paths"]
