"""The HTTP API over real HTTP: routes, validation at the edge, responses, logs, secrets, seed style."""

from __future__ import annotations

import pytest

from .conftest import module_server

echo = module_server("predict.py:Echo")
seed = module_server("seed_model.py:HelloModel")


def test_root_and_health(echo):
    root = echo.client.get("/").json()
    assert root["predictions_url"] == "/predictions" and root["openapi_url"] == "/openapi.json"
    health = echo.client.get("/health-check").json()
    assert health["status"] == "READY"
    assert health["setup"]["status"] == "succeeded"
    assert "echo setup ran" in health["setup"]["logs"]
    assert health["setup"]["started_at"] <= health["setup"]["completed_at"]


def test_openapi_json_served(echo):
    schema = echo.client.get("/openapi.json").json()
    props = schema["components"]["schemas"]["Input"]["properties"]
    assert list(props)[:3] == ["text", "count", "ratio"]
    assert schema["components"]["schemas"]["Input"]["required"] == ["text"]


def test_prediction_succeeds_with_defaults_and_logs(echo):
    response = echo.client.post("/predictions", json={"input": {"text": "ab", "count": 2}})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded" and body["error"] is None
    assert body["output"] == {"text": "abab", "ratio": 0.5, "loud": False, "color": "red", "code": "ab",
                              "note": None, "tags": None, "has_token": False}
    assert "echoing ab" in body["logs"] and "to stderr" in body["logs"]
    assert body["input"] == {"text": "ab", "count": 2}
    assert body["metrics"]["predict_time"] >= 0
    assert body["created_at"] <= body["started_at"] <= body["completed_at"]
    assert len(body["id"]) >= 16


def test_all_input_types_accepted(echo):
    body = echo.client.post("/predictions", json={"id": "mine", "input": {
        "text": "x", "count": 5, "ratio": 1, "loud": True, "color": "green", "code": "zz",
        "note": "n", "tags": ["a", "b"]}}).json()
    assert body["id"] == "mine"
    assert body["output"]["ratio"] == 1.0 and body["output"]["tags"] == ["a", "b"] and body["output"]["loud"] is True


@pytest.mark.parametrize("given, name, words", [
    ({}, "text", "field required"),
    ({"text": 3}, "text", "not a valid string"),
    ({"text": ""}, "text", "at least 1 characters"),
    ({"text": "a", "count": 9}, "count", "less than or equal to 5"),
    ({"text": "a", "count": "2"}, "count", "not a valid integer"),
    ({"text": "a", "count": True}, "count", "not a valid integer"),
    ({"text": "a", "count": 2.5}, "count", "not a valid integer"),
    ({"text": "a", "ratio": -0.1}, "ratio", "greater than or equal to 0"),
    ({"text": "a", "loud": "yes"}, "loud", "not a valid boolean"),
    ({"text": "a", "color": "blue"}, "color", "permitted: 'red', 'green'"),
    ({"text": "a", "code": "AB"}, "code", "does not match regex"),
    ({"text": "a", "tags": "a"}, "tags", "not a valid list"),
    ({"text": "a", "nope": 1}, "nope", "extra fields not permitted"),
    ({"text": None}, "text", "none is not an allowed value"),
])
def test_invalid_input_is_422_naming_the_input(echo, given, name, words):
    response = echo.client.post("/predictions", json={"input": given})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(d["loc"][:3] == ["body", "input", name] and words in d["msg"] for d in detail), detail


def test_integral_float_accepted_for_int(echo):
    body = echo.client.post("/predictions", json={"input": {"text": "ab", "count": 2.0}}).json()
    assert body["status"] == "succeeded" and body["output"]["text"] == "abab"


def test_list_item_errors_point_at_the_item(echo):
    detail = echo.client.post("/predictions", json={"input": {"text": "a", "tags": ["ok", 3]}}).json()["detail"]
    assert detail[0]["loc"] == ["body", "input", "tags", 1]


@pytest.mark.parametrize("content, status", [(b"{not json", 422), (b"\xff\xfe", 400), (b"[1, 2]", 422),
                                             (b'{"input": [1]}', 422), (b'{"input": {"text": "a"}, "webhook": 3}', 422)])
def test_malformed_bodies_never_500(echo, content, status):
    response = echo.client.post("/predictions", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert "detail" in response.json()


def test_oversized_body_is_413(serve):
    server = serve("predict.py:Echo", env={"COG_MAX_BODY_BYTES": "1000"})
    response = server.client.post("/predictions", json={"input": {"text": "a" * 2000}})
    assert response.status_code == 413


def test_secret_never_in_logs_or_echoed_input(echo):
    body = echo.client.post("/predictions", json={"input": {"text": "s", "token": "hunter2-very-secret"}}).json()
    assert body["status"] == "succeeded" and body["output"]["has_token"] is True
    assert "hunter2-very-secret" not in body["logs"]
    assert "**********" in body["logs"]
    assert body["input"]["token"] == "**********"


def test_exception_in_predict_is_failed_status(serve):
    server = serve("predict.py:Fails")
    response = server.client.post("/predictions", json={"input": {"message": "the model broke"}})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed" and body["error"] == "the model broke"
    assert "about to fail" in body["logs"] and "ValueError" in body["logs"]
    # the server is fine afterwards
    assert server.client.get("/health-check").json()["status"] == "READY"
    assert server.client.post("/predictions", json={"input": {}}).json()["status"] == "failed"


def test_runner_style_with_scope_context_and_metrics(serve):
    server = serve("predict.py:Scoped")
    body = server.client.post("/predictions", json={"input": {"x": 7}, "context": {"user": "ada"}}).json()
    assert body["status"] == "succeeded"
    assert body["output"] == {"context": {"user": "ada"}}
    assert body["metrics"]["tokens"] == 7 and body["metrics"]["calls"] == 1


def test_plain_function_predictor(serve):
    server = serve("predict.py:plain")
    assert server.client.post("/predictions", json={"input": {"a": 40}}).json()["output"] == 42


def test_setup_weights_from_env(serve, tmp_path):
    server = serve("predict.py:Weights", env={"COG_WEIGHTS": str(tmp_path)})
    assert server.client.post("/predictions", json={}).json()["output"] == str(tmp_path)


def test_iterator_output_is_a_list(serve):
    server = serve("predict.py:Numbers")
    body = server.client.post("/predictions", json={"input": {"n": 4}}).json()
    assert body["output"] == [0, 1, 2, 3]
    schema = server.client.get("/openapi.json").json()["components"]["schemas"]["Output"]
    assert schema["x-cog-array-type"] == "iterator"


# ---------------------------------------------------------------- seed style


def test_seed_style_json_api(seed):
    body = seed.client.post("/predictions", json={"input": {"name": "bob", "times": 2, "mood": "loud"}}).json()
    assert body["output"] == "HELLO BOBHELLO BOB"
    bad = seed.client.post("/predictions", json={"input": {"name": "bob", "times": 9}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "input", "times"]


def test_seed_style_multipart_predict(seed):
    response = seed.client.post("/predict", data={"name": "ann", "times": "2"},
                                files={"picture": ("p.txt", b"a picture", "text/plain")})
    assert response.status_code == 200
    assert response.text == "hello annhello ann + a picture"
    bad = seed.client.post("/predict", data={"name": "ann", "times": "many"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "input", "times"]


def test_seed_style_file_output_is_the_file(serve):
    server = serve("seed_model.py:FileModel")
    response = server.client.post("/predict", data={"text": "abc"})
    assert response.status_code == 200 and response.content == b"cba"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_seed_form_lists_and_bad_uploads(serve):
    server = serve("predict.py:Files")
    response = server.client.post("/predict", files=[
        ("image", ("a.txt", b"first", "text/plain")),
        ("extra", ("b.txt", b"22", "text/plain")), ("extra", ("c.txt", b"333", "text/plain"))])
    assert response.status_code == 200, response.text
    assert response.json()["sizes"] == [5, 2, 3] and response.json()["content"] == "first"
    echo = serve("predict.py:Echo")
    not_a_file = echo.client.post("/predict", files={"text": ("t.txt", b"x", "text/plain")})
    assert not_a_file.status_code == 422 and not_a_file.json()["detail"][0]["loc"] == ["body", "input", "text"]
    tags = echo.client.post("/predict", data={"text": "a", "tags": ["x", "y"]})
    assert tags.json()["tags"] == ["x", "y"]


def test_nested_list_output_with_files(serve):
    server = serve("predict.py:Mixed")
    body = server.client.post("/predictions", json={"input": {"x": 2}}).json()
    assert body["output"] == [{"x": 2.0, "flag": True, "nothing": None, "files": ["data:application/json;base64,e30="],
                               "tuple": [1, 2]}]
    schema = server.client.get("/openapi.json").json()["components"]["schemas"]["Output"]
    assert schema["type"] == "array" and schema["items"] == {"type": "object"}


@pytest.mark.parametrize("what, words", [("object", "cannot be sent as output"), ("nan", "cannot be sent")])
def test_outputs_json_cannot_carry_fail_clearly(serve, what, words):
    server = serve("predict.py:Unsendable")
    body = server.client.post("/predictions", json={"input": {"what": what}}).json()
    assert body["status"] == "failed" and words in body["error"]
    assert server.client.get("/health-check").json()["status"] == "READY"


def test_seed_predict_with_structured_file_output_inlines_files(serve):
    server = serve("predict.py:FileOutput")
    response = server.client.post("/predict", data={"text": "abc"})
    assert response.status_code == 200
    assert response.json() == {"caption": "ABC", "picture": "data:text/plain;base64,YWJj"}


def test_seed_predict_can_return_its_input_file(serve):
    server = serve("seed_model.py:Identity")
    response = server.client.post("/predict", files={"picture": ("in.png", b"\x89PNG...", "image/png")})
    assert response.status_code == 200 and response.content == b"\x89PNG..."
    assert response.headers["Content-Type"] == "image/png"


def test_many_log_lines_and_unterminated_ones(serve):
    server = serve("predict.py:Verbose")
    assert server.client.get("/health-check").json()["setup"]["logs"] == "loading"
    body = server.client.post("/predictions", json={"input": {"n": 50_000}}).json()
    assert body["output"] == 50_000
    lines = body["logs"].split("\n")
    assert len(lines) == 50_001 and lines[49_999] == "line 49999" and lines[-1] == "no newline at the end"


@pytest.mark.parametrize("content", [
    b"[" * 100_000 + b"]" * 100_000, b'{"input": null}', b'{"input": {"text": {"a": 1}}}', b"null", b"1e999",
    b'{"input": {"text": "a", "tags": [[1]]}}', b'{"id": 5, "input": {"text": "a"}}', b'{"context": {"k": 1}}',
    b'{"webhook_events_filter": "start", "input": {"text": "a"}}', b'{"input": {"text": "\\ud800"}}',
    b'{"created_at": [], "input": {"text": "a"}}', b'{"input": {"text": "a", "count": 1e400}}',
])
def test_hostile_bodies_are_4xx_or_handled(echo, content):
    response = echo.client.post("/predictions", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, (response.status_code, response.text)
    assert echo.client.get("/health-check").json()["status"] == "READY"


@pytest.mark.parametrize("headers, content", [
    ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x\r\nbroken"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"text=%ZZ&count=abc"),
    ({"Content-Type": "text/plain"}, b"text=hello"),
])
def test_hostile_forms_are_4xx(echo, headers, content):
    response = echo.client.post("/predict", content=content, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text)


def test_non_finite_numbers_are_422(echo):
    for raw in (b'{"input": {"text": "a", "ratio": NaN}}', b'{"input": {"text": "a", "ratio": 1e999}}'):
        response = echo.client.post("/predictions", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "input", "ratio"]


def test_secret_redacted_from_error_too(serve):
    server = serve("predict.py:LeakyError")
    body = server.client.post("/predictions", json={"input": {"key": "pa55word-xyz"}}).json()
    assert body["status"] == "failed" and body["error"] == "could not log in with **********"
    assert "pa55word-xyz" not in body["logs"]
