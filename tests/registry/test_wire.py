"""registry/wire.py reads HTTP/1.1 answers itself (no http.client): every way RFC 9112 frames a body,
answers longer than the caller's limit, kept-alive connections the server closed, answers that are not
HTTP, and TLS, against real servers on loopback."""

from __future__ import annotations

import subprocess
import threading

import pytest

from cogbuild.registry import wire
from cogbuild.registry.wire import ProtocolError, exchange, is_tls_failure
from http_server import LoopbackHTTPServer, Reply, free_port

TIMEOUTS = (5.0, 5.0)


def ask(server: LoopbackHTTPServer, method: str = "GET", limit: int = 1 << 20, **kwargs) -> wire.Answer:
    return exchange(method, server.url + "/v2/x?n=1", {"Accept": "text/plain"}, timeouts=TIMEOUTS, limit=limit,
                    **kwargs)


@pytest.fixture(autouse=True)
def no_kept_connections(monkeypatch):
    """Each test has a pool of its own (connections are kept for all threads, per origin)."""
    pool = wire._Pool()
    monkeypatch.setattr(wire, "_pool", pool)
    yield
    with pool.changed:  # connections warm() is still opening join the pool, then all are closed
        pool.changed.wait_for(lambda: not any(pool.opening.values()), 10)
    for connection in (connection for idle in pool.idle.values() for connection in idle):
        connection.close()


def idle_connections() -> list:
    return [connection for idle in wire._pool.idle.values() for connection in idle]


def test_a_content_length_answer_and_its_headers_in_any_case():
    with LoopbackHTTPServer(script=[Reply(201, {"Docker-Content-Digest": "sha256:ab"}, b"hello")]) as server:
        answer = ask(server)
        assert (answer.status, answer.body, answer.truncated) == (201, b"hello", False)
        assert answer.headers.get("docker-content-digest") == answer.headers.get("Docker-Content-Digest") == "sha256:ab"
        sent = server.requests[0]
        assert (sent.method, sent.path, sent.headers.get("Accept"), sent.headers.get("Host")) == \
            ("GET", "/v2/x?n=1", "text/plain", server.host)


def test_a_head_answer_has_no_body_whatever_its_length_says():
    with LoopbackHTTPServer(script=[Reply(200, {"Content-Length": "1234"})]) as server:
        answer = ask(server, "HEAD")
        assert (answer.status, answer.body, answer.headers.get("Content-Length")) == (200, b"", "1234")


@pytest.mark.parametrize("raw, body", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6\r\n world\r\n0\r\n"
     b"Trailer-Field: x\r\n\r\n", b"hello world"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
     b"0123456789"),  # Transfer-Encoding wins over Content-Length
    (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end", b"to the end"),  # until the close
    (b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n  b\r\nContent-Length: 0\r\n\r\n", b""),
], ids=["chunked", "chunked over content-length", "until close", "1xx skipped", "folded header"])
def test_every_framing_of_a_body(raw, body):
    with LoopbackHTTPServer(script=[Reply(raw=raw)]) as server:
        answer = ask(server)
        assert (answer.status, answer.body, answer.truncated) == (200, body, False)
        if b"X-Folded" in raw:
            assert answer.headers.get("x-folded") == "a b"


@pytest.mark.parametrize("reply", [
    Reply(200, body=b"0123456789"),
    Reply(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n012\r\n7\r\n3456789\r\n0\r\n\r\n"),
    Reply(raw=b"HTTP/1.1 200 OK\r\n\r\n0123456789"),
], ids=["content-length", "chunked", "until close"])
def test_an_answer_longer_than_the_limit_is_cut_and_said_so(reply):
    with LoopbackHTTPServer(script=[reply]) as server:
        answer = ask(server, limit=4)
        assert (answer.body, answer.truncated) == (b"0123", True)
        assert idle_connections() == []  # its connection is not kept


@pytest.mark.parametrize("raw", [
    b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
], ids=["not http", "status", "header", "length", "short body", "negative chunk", "0x chunk", "short chunk",
        "long line"])
def test_an_answer_that_is_not_http_is_a_protocol_error(raw):
    with LoopbackHTTPServer(script=[Reply(raw=raw)]) as server, pytest.raises(ProtocolError):
        ask(server)


def test_a_connection_is_kept_and_one_the_server_closed_is_replaced():
    kept_alive = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"  # no Connection: close, then it closes
    with LoopbackHTTPServer(script=[Reply(raw=kept_alive), Reply(200, body=b"second")]) as server:
        assert ask(server).body == b"first"
        [kept] = idle_connections()
        assert ask(server).body == b"second"
        assert kept not in idle_connections()
        assert len(server.requests) == 2 and len(server.connections) == 2


def test_a_server_that_never_answers_is_a_connection_error():
    with LoopbackHTTPServer(script=[Reply(raw=b"")]) as server, pytest.raises(ConnectionResetError):
        ask(server)


def test_control_characters_never_reach_the_request():
    with LoopbackHTTPServer(script=[Reply(200)]) as server:
        with pytest.raises(ValueError):
            exchange("GET", server.url + "/v2/x", {"X": "a\r\nInjected: 1"}, timeouts=TIMEOUTS, limit=10)
        with pytest.raises(ValueError):
            exchange("GET", server.url + "/v2/a b", {}, timeouts=TIMEOUTS, limit=10)
        assert server.requests == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
                   check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


def test_tls_checks_the_certificate_unless_told_not_to(certificate):
    with LoopbackHTTPServer(script=[Reply(200, body=b"over tls")], tls=certificate) as server:
        with pytest.raises(OSError) as refused:
            ask(server)
        assert is_tls_failure(refused.value)
        answer = ask(server, tls_verify=False)
        assert (answer.status, answer.body) == (200, b"over tls")


def test_a_connection_kept_by_one_thread_is_reused_by_another():
    with LoopbackHTTPServer(script=[Reply(200, body=b"ok")], keep_alive=True) as server:
        seen = []
        for _ in range(2):
            thread = threading.Thread(target=lambda: seen.append(ask(server).body))
            thread.start()
            thread.join()
        assert seen == [b"ok", b"ok"]
        assert len(server.requests) == 2 and len(server.connections) == 1


def test_warm_opens_connections_before_any_request_and_requests_take_them():
    with LoopbackHTTPServer(script=[Reply(200, body=b"ok")], keep_alive=True) as server:
        wire.warm(server.url + "/v2/", 2, timeouts=TIMEOUTS)
        assert server.wait_for_connections(2)
        assert server.requests == []
        wire.warm(server.url + "/other/path", 2, timeouts=TIMEOUTS)  # as many are there already: none more
        assert [ask(server).body for _ in range(3)] == [b"ok"] * 3
        assert len(server.requests) == 3 and len(server.connections) == 2


def test_warm_to_a_closed_port_keeps_nothing_and_the_request_says_why():
    url = f"http://127.0.0.1:{free_port()}/v2/"
    wire.warm(url, 2, timeouts=TIMEOUTS)
    with pytest.raises(ConnectionRefusedError):
        exchange("GET", url, {}, timeouts=TIMEOUTS, limit=10)
    assert idle_connections() == [] and not any(wire._pool.opening.values())


def test_threads_connecting_at_once_load_the_tls_settings_once(certificate, monkeypatch):
    """Each load reads the CA store (20-30 ms of CPU): a lock's four page checkers connect at once."""
    import ssl

    wire._new_tls_context.cache_clear()
    real, loads, others_may_arrive = ssl.create_default_context, [], threading.Event()

    def counted_load(*args, **kwargs):
        loads.append(threading.current_thread().name)
        others_may_arrive.wait(0.3)  # threads that are not held back by the lock come in meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted_load)
    with LoopbackHTTPServer(lambda request: Reply(200, body=b"ok"), tls=certificate) as server:
        bodies: list[bytes] = []
        threads = [threading.Thread(target=lambda: bodies.append(ask(server, tls_verify=False).body))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    wire._new_tls_context.cache_clear()  # no context of this test's making is kept
    assert bodies == [b"ok"] * 4 and len(loads) == 1
