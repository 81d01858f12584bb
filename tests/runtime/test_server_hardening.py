"""Attacks on the runtime over real HTTP on loopback: a request must never disable the server,
leak a secret, read a host file, or reach an address the URL policy forbids."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from .conftest import MODELS, module_server

files = module_server("predict.py:Files")
echo = module_server("predict.py:Echo")
secrets = module_server("predict.py:SecretList")
echo_json = module_server("predict.py:EchoJson")


def assert_still_serving(server, body: dict) -> None:
    """The slot was released: the next prediction runs (not 409) and health is READY."""
    server.wait_until("READY", timeout=10)  # an async prediction of the test may still be running
    response = server.client.post("/predictions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded", response.text


GOOD_FILE = {"input": {"image": "data:text/plain;base64," + base64.b64encode(b"fine").decode()}}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:99999/a.txt",  # port out of range
    "http://127.0.0.1:-1/a.txt",
    "http://127.0.0.1:port/a.txt",
    "http://[::1/a.txt",  # unclosed IPv6 literal
    "http://[zz::1]/a.txt",  # not an IPv6 address
    "http://[fe80::1%25eth0]/a.txt",  # zone ids
    "http://" + "a" * 300 + ".example/a.txt",  # a label too long for IDNA
    "http://exa mple.com/a.txt",
    "http:///a.txt",
    "https://user:pa:ss@/x",
])
def test_malformed_url_inputs_are_422_and_release_the_slot(files, url):
    response = files.client.post("/predictions", json={"input": {"image": url}})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:3] == ["body", "input", "image"]
    assert_still_serving(files, GOOD_FILE)


@pytest.mark.parametrize("body", [
    {"webhook_events_filter": [["start"]]},
    {"webhook_events_filter": [{"a": 1}]},
    {"webhook_events_filter": "start"},
    {"id": ["x"]},
    {"id": {"a": 1}},
    {"id": 5},
    {"webhook": "http://[::1/hook"},
    {"webhook": "http://127.0.0.1:99999/hook"},
    {"webhook": "http://169.254.169.254/latest/meta-data"},
    {"output_file_prefix": "http://127.0.0.1:bad/"},
    {"output_file_prefix": "file:///etc/"},
    {"context": {"a": ["x"]}},
    {"context": ["x"]},
    {"created_at": 5},
])
def test_odd_request_fields_are_4xx_and_release_the_slot(echo, body):
    for prefer in ("", "respond-async"):
        response = echo.client.post("/predictions", json={"input": {"text": "a"}, **body},
                                    headers={"Prefer": prefer})
        assert 400 <= response.status_code < 500, (body, response.text)
        assert_still_serving(echo, {"input": {"text": "b"}})


def test_numbers_json_cannot_carry_are_4xx(echo):
    for raw in (b'{"input": {"text": "a", "count": ' + b"9" * 5000 + b"}}",  # too long to parse
                b'{"input": {"text": "a"}, "id": ' + b"1" * 5000 + b"}",
                b'{"input": {"text": "a", "ratio": 1e400}}', b'{"input": {"text": "a", "ratio": NaN}}'):
        response = echo.client.post("/predictions", content=raw, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, response.text
    assert_still_serving(echo, {"input": {"text": "b"}})


def test_invalid_base64_in_a_data_uri_is_422(files):
    for payload in ("not*base64!", "aGVsbG8=extra=", "%%%"):
        response = files.client.post("/predictions", json={"input": {"image": f"data:text/plain;base64,{payload}"}})
        assert response.status_code == 422, (payload, response.text)
        assert "base64" in response.json()["detail"][0]["msg"]
    unpadded = files.client.post("/predictions", json={"input": {"image": "data:text/plain;base64,aGVsbG8"}})
    assert unpadded.json()["output"]["content"] == "hello"


# ---------------------------------------------------------------- secrets


def test_list_of_secrets_logs_redacted_and_failures_complete(secrets):
    keys = ["first-secret-value", "second-secret-value"]
    body = secrets.client.post("/predictions", json={"input": {"keys": keys}}).json()
    assert body["status"] == "succeeded" and body["output"] == "2 keys", body
    assert "keys: **********, **********" in body["logs"]
    assert "fd2: **********" in body["logs"]  # written to fd 2 before predict() returned
    assert body["input"]["keys"] == ["**********", "**********"]
    failed = secrets.client.post("/predictions", json={"input": {"keys": keys, "fail": True}}).json()
    assert failed["status"] == "failed" and failed["error"] == "rejected **********", failed
    assert not any(key in json.dumps(failed) for key in keys)
    assert_still_serving(secrets, {"input": {"keys": ["x"]}})


def test_secret_output_is_masked(serve):
    server = serve("predict.py:SecretOutput")
    body = server.client.post("/predictions", json={"input": {"key": "returned-secret"}}).json()
    assert body["status"] == "succeeded" and body["output"] == "**********", body


def test_secrets_written_to_fd2_are_redacted_in_the_server_log(serve):
    server = serve("predict.py:FdSecret")
    with httpx.Client(base_url=server.url, timeout=30) as other:
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda key: other.post("/predictions", json={"input": {"key": key}}).json(),
                                    ["concurrent-secret-one", "concurrent-secret-two"]))
    assert [r["status"] for r in results] == ["succeeded", "succeeded"], results
    server.stop()
    log = server.process.stdout.read()
    assert "fd2 from the model: **********" in log + "".join(r["logs"] for r in results)
    assert "concurrent-secret" not in log


# ---------------------------------------------------------------- output files


@pytest.mark.parametrize("payload", [
    {"$cog.path": "/etc/passwd"},
    [{"$cog.path": "/etc/hostname"}],
    {"nested": {"$cog.path": "/proc/self/environ"}},
])
def test_a_model_echoing_json_cannot_make_the_server_read_files(echo_json, payload):
    body = echo_json.client.post("/predictions", json={"input": {"payload": json.dumps(payload)}}).json()
    assert body["status"] == "succeeded", body
    assert body["output"] == payload


def test_output_files_are_removed_once_sent(serve, tmp_path):
    server = serve("predict.py:PathOutput", env={"TMPDIR": str(tmp_path)})
    for _ in range(3):
        body = server.client.post("/predictions", json={"input": {"text": "x"}}).json()
        assert body["output"] == "data:text/plain;base64," + base64.b64encode(b"x").decode()
    scratch = [p for p in tmp_path.glob("cog-server-*/worker-*/**/*") if p.is_file()]
    assert scratch == []


# ---------------------------------------------------------------- one URL policy for every request we make


def test_webhooks_follow_the_url_policy(serve, sink):
    server = serve("predict.py:Echo", env={"COG_INPUT_URL_DENY": "127.0.0.0/8", "COG_WEBHOOK_RETRIES": "0"})
    literal = server.client.post("/predictions", json={"input": {"text": "a"}, "webhook": f"{sink.url}/hook"},
                                 headers={"Prefer": "respond-async"})
    assert literal.status_code == 422 and "may not reach" in literal.json()["detail"][0]["msg"]
    named = server.client.post("/predictions", json={
        "input": {"text": "a"}, "webhook": f"http://localhost:{sink.port}/hook"}, headers={"Prefer": "respond-async"})
    assert named.status_code == 202
    assert_still_serving(server, {"input": {"text": "b"}})
    time.sleep(0.5)  # the terminal webhook would have been sent by now
    assert sink.requests == []
    server.stop()
    assert "may not reach" in server.process.stdout.read()


def test_output_uploads_follow_the_url_policy(serve, sink):
    server = serve("predict.py:PathOutput", env={"COG_INPUT_URL_DENY": "127.0.0.0/8"},
                   args=["--upload-url", f"http://localhost:{sink.port}/uploads/"])
    body = server.client.post("/predictions", json={"input": {"text": "up"}}).json()
    assert body["status"] == "failed" and "may not reach" in body["error"], body
    prefixed = server.client.post("/predictions", json={"input": {}, "output_file_prefix": "http://169.254.169.254/"})
    assert prefixed.status_code == 422
    assert sink.requests == []


def test_a_malformed_upload_url_stops_the_server_at_start():
    done = subprocess.run([sys.executable, "-m", "cog.server.http", "--port", "0", "--predictor", "predict.py:Echo",
                           "--upload-url", "http://127.0.0.1:99999/"], cwd=MODELS, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("cog: error: the upload URL (--upload-url or COG_UPLOAD_URL): "
                                   "not a valid URL (Port out of range 0-65535)")


def test_webhook_urls_are_logged_without_credentials_or_signatures(serve):
    server = serve("predict.py:Echo", env={"COG_WEBHOOK_RETRIES": "0"})
    hook = "http://user:hunter2@127.0.0.1:9/hook?X-Amz-Signature=deadbeef&token=abc"
    response = server.client.post("/predictions", json={"input": {"text": "a"}, "webhook": hook},
                                  headers={"Prefer": "respond-async"})
    assert response.status_code == 202
    assert_still_serving(server, {"input": {"text": "b"}})
    time.sleep(0.5)
    server.stop()
    log = server.process.stdout.read()
    assert "webhook http://127.0.0.1:9/hook" in log
    assert "hunter2" not in log and "deadbeef" not in log and "abc" not in log.replace("Abc", "")


# ---------------------------------------------------------------- slow clients


def test_a_body_that_dribbles_in_is_timed_out(serve):
    server = serve("predict.py:Echo", env={"COG_BODY_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        sock.settimeout(0.3)
        answer = b""
        for _ in range(40):  # one byte every 0.3 s would take 5 minutes
            try:
                sock.sendall(b" ")
                answer += sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert_still_serving(server, {"input": {"text": "b"}})


def test_the_server_reads_output_files_from_the_worker_scratch_only(serve):
    server = serve("predict.py:Forger")
    for path in ("/etc/passwd", "/etc"):
        body = server.client.post("/predictions", json={"input": {"path": path}}).json()
        assert body["status"] == "failed" and "outside its scratch directory" in body["error"], body
        assert body["output"] is None
