"""File inputs (data URIs, http URLs, limits, cleanup) and outputs (data URIs, uploads)."""

from __future__ import annotations

import base64
import os
import re

from .conftest import module_server

files = module_server("predict.py:Files", env={"COG_INPUT_TIMEOUT": "1", "COG_INPUT_MAX_BYTES": "1000"})


def data_uri(content: bytes, mime: str = "text/plain") -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode()}"


def logged_path(logs: str) -> str:
    return re.search(r"input path: (\S+)", logs).group(1)


def test_data_uri_inputs_become_cog_paths_and_are_removed_afterwards(files):
    body = files.client.post("/predictions", json={"input": {
        "image": data_uri(b"hello"), "extra": [data_uri(b"12"), data_uri(b"123")],
        "blob": "data:,percent%20encoded"}}).json()
    assert body["status"] == "succeeded", body
    assert body["output"] == {"sizes": [5, 2, 3], "content": "hello", "is_cog_path": True,
                              "blob": "percent encoded"}
    path = logged_path(body["logs"])
    assert path.endswith(".txt")  # named from the MIME type
    assert not os.path.exists(path)


def test_url_inputs_are_downloaded(files, sink):
    sink.files["/dir/photo.txt"] = b"from the web"
    body = files.client.post("/predictions", json={"input": {"image": f"{sink.url}/dir/photo.txt"}}).json()
    assert body["output"]["content"] == "from the web"
    assert logged_path(body["logs"]).endswith("photo.txt")
    assert not os.path.exists(logged_path(body["logs"]))


def test_bad_file_inputs_are_422(files, sink):
    sink.files["/big"] = b"x" * 5000
    cases = {
        "ftp://example.com/a": "not a valid URL scheme",
        "/etc/passwd": "not a valid URL scheme",
        f"{sink.url}/missing": "HTTP 404",
        f"{sink.url}/big": "larger than 1000 bytes",
        "http://169.254.169.254/latest/meta-data": "may not reach",
        f"{sink.url}/slow": "failed",
    }
    for url, words in cases.items():
        response = files.client.post("/predictions", json={"input": {"image": url}})
        assert response.status_code == 422, (url, response.text)
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "input", "image"] and words in detail["msg"], (url, detail)
    assert files.client.get("/health-check").json()["status"] == "READY"


def test_redirects_are_followed_and_checked(files, sink):
    sink.files["/real.txt"] = b"moved here"
    sink.redirects["/old.txt"] = "/real.txt"
    sink.redirects["/sneaky.txt"] = "http://169.254.169.254/latest/meta-data/"
    sink.redirects["/loop"] = "/loop"
    body = files.client.post("/predictions", json={"input": {"image": f"{sink.url}/old.txt"}}).json()
    assert body["output"]["content"] == "moved here"
    for path, words in (("/sneaky.txt", "may not reach"), ("/loop", "more than 5 redirects")):
        response = files.client.post("/predictions", json={"input": {"image": f"{sink.url}{path}"}})
        assert response.status_code == 422 and words in response.json()["detail"][0]["msg"]


def test_deny_and_allow_lists_from_env(serve, sink):
    sink.files["/a.txt"] = b"a"
    denied = serve("predict.py:Files", env={"COG_INPUT_URL_DENY": "127.0.0.0/8"})
    for host in ("127.0.0.1", "localhost"):
        url = f"http://{host}:{sink.port}/a.txt"
        response = denied.client.post("/predictions", json={"input": {"image": url}})
        assert response.status_code == 422 and "may not reach" in response.json()["detail"][0]["msg"]
    allowed_elsewhere = serve("predict.py:Files", env={"COG_INPUT_URL_ALLOW": "10.0.0.0/8"})
    response = allowed_elsewhere.client.post("/predictions", json={"input": {"image": f"{sink.url}/a.txt"}})
    assert response.status_code == 422
    allowed = serve("predict.py:Files", env={"COG_INPUT_URL_ALLOW": "127.0.0.0/8"})
    assert allowed.client.post("/predictions", json={"input": {"image": f"{sink.url}/a.txt"}}).status_code == 200


def test_file_outputs_are_data_uris(serve):
    server = serve("predict.py:FileOutput")
    body = server.client.post("/predictions", json={"input": {"text": "made"}}).json()
    assert body["output"]["caption"] == "MADE"
    assert body["output"]["picture"] == "data:text/plain;base64," + base64.b64encode(b"made").decode()


def test_file_outputs_uploaded_to_upload_url(serve, sink):
    server = serve("predict.py:PathOutput", args=["--upload-url", f"{sink.url}/uploads/"])
    body = server.client.post("/predictions", json={"input": {"text": "up"}}).json()
    assert body["status"] == "succeeded", body
    assert body["output"] == f"{sink.url}/stored/uploads/answer.txt"  # Location, without its query
    assert sink.files["/uploads/answer.txt"] == b"up"
    put = next(r for r in sink.requests if r.method == "PUT")
    assert put.headers["Content-Type"] == "text/plain"


def test_upload_failure_fails_the_prediction(serve):
    server = serve("predict.py:PathOutput", args=["--upload-url", "http://127.0.0.1:9/nowhere/"])
    body = server.client.post("/predictions", json={"input": {}}).json()
    assert body["status"] == "failed" and "output file could not be sent" in body["error"]


def test_streamed_file_outputs_inline_or_uploaded(serve, sink):
    inline = serve("predict.py:Frames")
    body = inline.client.post("/predictions", json={"input": {"count": 2}}).json()
    assert body["output"] == ["data:image/png;base64," + base64.b64encode(b"png%d" % i).decode() for i in range(2)]
    body = inline.client.post("/predictions", json={
        "input": {"count": 2}, "output_file_prefix": f"{sink.url}/frames/"}).json()
    assert body["output"] == [f"{sink.url}/stored/frames/frame{i}.png" for i in range(2)]
    assert sink.files["/frames/frame1.png"] == b"png1"


def test_file_like_output(serve):
    server = serve("predict.py:FileLikeOutput")
    body = server.client.post("/predictions", json={}).json()
    assert body["output"] == "data:text/html;base64," + base64.b64encode(b"<p>hi</p>").decode()
