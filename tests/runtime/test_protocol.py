"""The worker channel's messages: every one survives encode → decode, and a malformed line is one
ProtocolError that names what is wrong. The statuses write to JSON exactly as the bare strings did."""

from __future__ import annotations

import json

import pytest

from cog.server import protocol
from cog.server.prediction import Prediction, json_text
from cog.server.protocol import Event, ProtocolError, Request
from cog.server.status import Health, PredictionStatus

MESSAGES = [
    protocol.Predict("p1", {"text": "hi", "image": "/tmp/in/a.png"}, {"user": "u"}),
    protocol.Cancel("p1"),
    protocol.HealthcheckRequest(3),
    protocol.Shutdown(),
    protocol.SignatureLoaded({"inputs": []}),
    protocol.LoadFailed("ModuleNotFoundError: no module named 'torch'"),
    protocol.SetupDone(True),
    protocol.SetupDone(False, "Traceback …"),
    protocol.Log(None, "loading weights\n", "stderr"),
    protocol.HealthcheckResult(3, False, "user-defined healthcheck returned False"),
    protocol.Output("p1", {"a": None}, [{"at": ["a"], "path": "/scratch/1/out.png"}]),
    protocol.Metric("p1", "tokens", 12, "incr"),
    protocol.Done("p1", PredictionStatus.SUCCEEDED, [1, "two"], None, {"tokens": 12}, []),
    protocol.Done("p1", PredictionStatus.FAILED, error="boom"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{type(m).__name__}")
def test_every_message_survives_the_wire(message):
    line = protocol.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    family = Request if isinstance(message, Request) else Event
    assert protocol.decode(line, family) == message


def test_the_wire_format_is_the_documented_json():
    done = protocol.Done("p1", PredictionStatus.CANCELED, metrics={"predict_time": 0.5})
    assert json.loads(protocol.encode(done)) == {"ev": "done", "id": "p1", "status": "canceled", "output": None,
                                                 "error": None, "metrics": {"predict_time": 0.5}, "files": []}
    assert json.loads(protocol.encode(protocol.Cancel("p1"))) == {"op": "cancel", "id": "p1"}


def test_a_value_json_cannot_carry_is_refused_when_encoding():
    with pytest.raises(ValueError):
        protocol.encode(protocol.Output("p1", float("nan")))


@pytest.mark.parametrize("line, family, problem", [
    (b"not json", Event, "a line is not JSON"),
    (b"[1, 2]", Event, "a line is a JSON list, not a message object"),
    (b'{"ev": "bye"}', Event, "a message has no known 'ev' (it has 'bye')"),
    (b'{"ev": ["done"]}', Event, "a message has no known 'ev' (it has ['done'])"),
    (b'{"op": "cancel", "id": "p1"}', Event, "a message has no known 'ev' (it has None)"),  # a request, not an event
    (b'{"ev": "done", "id": "p1", "status": "succeeded"}', Request, "a message has no known 'op'"),
    (b'{"ev": "done", "id": "p1"}', Event, "a 'done' message lacks 'status'"),
    (b'{"ev": "done", "id": "p1", "status": "processing"}', Event,
     "a 'done' message has status 'processing', not succeeded, canceled or failed"),
    (b'{"ev": "done", "id": 7, "status": "failed"}', Event, "a 'done' message has 'id' of type int, not str"),
    (b'{"ev": "log", "id": "p1", "text": null}', Event, "a 'log' message has 'text' of type NoneType, not str"),
    (b'{"ev": "healthcheck", "id": true, "ok": true}', Event,
     "a 'healthcheck' message has 'id' of type bool, not int"),
    (b'{"ev": "setup_done", "ok": true, "error": 1}', Event,
     "a 'setup_done' message has 'error' of type int, not str or null"),
    (b'{"ev": "output", "id": "p1", "value": 1, "files": [{"at": [], "path": 3}]}', Event,
     "a message's 'files' is not a list of"),
    (b'{"ev": "output", "id": "p1", "value": 1, "files": {}}', Event, "a message's 'files' is not a list of"),
    (b'{"op": "predict", "id": "p1", "input": [], "context": {}}', Request,
     "a 'predict' message has 'input' of type list, not dict"),
])
def test_a_malformed_line_is_one_clear_error(line, family, problem):
    with pytest.raises(ProtocolError) as raised:
        protocol.decode(line, family)
    assert str(raised.value).startswith(problem)


def test_optional_fields_take_their_defaults():
    assert protocol.decode(b'{"ev": "log", "id": null, "text": "x"}', Event) == protocol.Log(None, "x", "stdout")
    assert protocol.decode(b'{"ev": "done", "id": "p", "status": "failed", "extra": 1}', Event) == \
        protocol.Done("p", PredictionStatus.FAILED)


def test_statuses_are_their_strings():
    assert [str(s) for s in Health] == ["STARTING", "READY", "BUSY", "SETUP_FAILED", "DEFUNCT", "UNHEALTHY"]
    assert f"{PredictionStatus.SUCCEEDED}" == "succeeded" and PredictionStatus.FAILED == "failed"
    assert [s.is_terminal for s in PredictionStatus] == [False, False, True, True, True]
    prediction = Prediction(id="p", input={})
    assert '"status":"starting"' in json_text(prediction.to_json())
    prediction.start()
    prediction.finish(PredictionStatus.SUCCEEDED)
    assert '"status":"succeeded"' in json_text(prediction.to_json())
