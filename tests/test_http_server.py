"""The tests' one fake HTTP server (tests/support/http_server.py) does what its fakes rely on."""

from __future__ import annotations

import http.client

import httpx
import pytest

from http_server import LoopbackHTTPServer, Reply, file_reply
from static_server import StaticServer


def test_a_script_answers_in_order_and_its_last_reply_repeats():
    with LoopbackHTTPServer(script=[Reply(503), Reply(201, {"X-Step": "two"}, b"made")]) as server:
        statuses = [httpx.get(f"{server.url}/a?q=1").status_code for _ in range(3)]
        last = httpx.get(f"{server.url}/b")
    assert statuses == [503, 201, 201]
    assert last.headers["x-step"] == "two" and last.content == b"made"
    assert [r.path for r in server.requests] == ["/a?q=1"] * 3 + ["/b"]
    assert server.requests[0].route_path == "/a"


def test_a_route_sees_method_headers_and_body_also_when_chunked():
    with LoopbackHTTPServer(lambda request: Reply(200, body=request.body[::-1])) as server:
        plain = httpx.put(f"{server.url}/up", content=b"abc", headers={"Authorization": "Basic x"})
        chunked = httpx.post(f"{server.url}/up", content=iter([b"12", b"345"]))
    assert plain.content == b"cba" and chunked.content == b"54321"
    first, second = server.requests
    assert (first.method, first.headers.get("authorization"), first.body) == ("PUT", "Basic x", b"abc")
    assert (second.method, second.headers.get("Transfer-Encoding"), second.body) == ("POST", "chunked", b"12345")


def test_head_gets_the_length_and_no_body():
    with LoopbackHTTPServer(script=[Reply(200, body=b"x" * 10)]) as server:
        head = httpx.head(server.url)
    assert head.headers["content-length"] == "10" and head.content == b""


def test_drop_after_resets_the_connection_inside_the_body():
    with LoopbackHTTPServer(script=[Reply(200, body=b"x" * 100_000, drop_after=1000)]) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(server.url)


def test_a_delayed_reply_outlasts_a_shorter_client_timeout():
    with LoopbackHTTPServer(script=[Reply(200, delay=2)]) as server:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(server.url, timeout=0.2)
        assert len(server.requests) == 1  # it arrived; only the answer was late


def test_a_failing_route_answers_500_and_keeps_the_traceback():
    def route(request):
        raise KeyError("no such answer")

    with LoopbackHTTPServer(route) as server:
        assert httpx.get(server.url).status_code == 500
    assert "no such answer" in server.route_errors[0]


def test_a_directory_is_served_with_ranges_and_nothing_outside_it(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "file.bin").write_bytes(b"0123456789")
    (tmp_path / "secret").write_bytes(b"private")
    with LoopbackHTTPServer(directory=tmp_path / "site") as server:
        whole = httpx.get(f"{server.url}/file.bin")
        tail = httpx.get(f"{server.url}/file.bin", headers={"Range": "bytes=4-"})
        middle = httpx.get(f"{server.url}/file.bin", headers={"Range": "bytes=2-3"})
        suffix = httpx.get(f"{server.url}/file.bin", headers={"Range": "bytes=-3"})
        missing = httpx.get(f"{server.url}/nothing")
        connection = http.client.HTTPConnection(server.host)
        connection.request("GET", "/../secret")  # http.client sends the path as it is
        outside = connection.getresponse()
    assert whole.content == b"0123456789"
    assert (tail.status_code, tail.headers["content-range"], tail.content) == (206, "bytes 4-9/10", b"456789")
    assert (middle.status_code, middle.content) == (206, b"23")
    assert (suffix.status_code, suffix.headers["content-range"], suffix.content) == (206, "bytes 7-9/10", b"789")
    assert missing.status_code == 404 and outside.status == 404


def test_file_reply_ignores_ranges_when_told_to():
    with LoopbackHTTPServer(lambda request: file_reply(b"abcdef", request, ranges=False)) as server:
        answer = httpx.get(server.url, headers={"Range": "bytes=2-"})
    assert (answer.status_code, answer.content) == (200, b"abcdef")


def test_the_server_is_gone_after_the_with_block():
    with LoopbackHTTPServer(script=[Reply(204)]) as server:
        pass
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url)


def test_a_subclass_routing_to_its_own_method_still_records_requests():
    class Counting(LoopbackHTTPServer):
        def __init__(self) -> None:
            super().__init__(self._answer)

        def _answer(self, request):
            return Reply(200, body=str(len(self.requests)).encode())

    with Counting() as server:
        answers = [httpx.get(server.url).content for _ in range(2)]
    assert answers == [b"1", b"2"]


def test_static_server_serves_its_dict_counts_gets_and_keeps_posts():
    with StaticServer() as server:
        server.files["/links/"] = b"<a href='x.whl'>x</a>"
        server.content_types["/links/"] = "text/html"
        page = httpx.get(f"{server.url}/links/")
        httpx.head(f"{server.url}/links/")
        missing = httpx.get(f"{server.url}/nothing")
        posted = httpx.post(f"{server.url}/api/notes", content=b'{"body": "hi"}', headers={"X-Token": "t"})
    assert (page.status_code, page.headers["content-type"], page.content) == (200, "text/html", server.files["/links/"])
    assert missing.status_code == 404 and posted.status_code == 201
    assert server.hits == {"/links/": 1, "/nothing": 1}  # GETs only
    [(path, headers, body)] = server.posts
    assert (path, headers.get("x-token"), body) == ("/api/notes", "t", b'{"body": "hi"}')
