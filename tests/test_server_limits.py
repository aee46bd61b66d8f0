"""What one client can hold of the real server: sockets, time for headers and body, requests under way.

The server runs in a subprocess with ``ulimit -n 256``, as the attack that stopped it did: 300
idle sockets used to take every file descriptor, after which no request was served.
"""

import json
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import pytest

from conftest import ROOT
from test_server import free_port, stop

FD_LIMIT = 256
HEADER_TIMEOUT = BODY_TIMEOUT = 2
CONCURRENCY = 3


def limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture(scope="module")
def limited(served):
    """(url, port) of a server with short timeouts, 3 requests at a time and 256 file descriptors."""
    work, store = served
    port = free_port()
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "external_embeddings", "serve", "--store", str(store.path),
                             "--models", str(work / "models"), "--port", str(port), "--poll-seconds", "0",
                             "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
                             "--limit-concurrency", str(CONCURRENCY)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=limit_fds)
    try:
        line = proc.stdout.readline()
        if not line.startswith("Serving"):
            log.seek(0)
            pytest.fail(f"the server did not start: {line}{log.read()[-3000:]}")
        yield f"http://127.0.0.1:{port}", port, log
    finally:
        stop(proc)


def good_request(url, timeout=5):
    return httpx.post(f"{url}/v1/predict", json={"texts": ["the rocket reached orbit"]}, timeout=timeout)


def closed_by_server(sock, answered=False):
    """Whether the server has closed ``sock`` (or, with ``answered``, sent anything), without waiting.

    Only peeks, so that an answer is left to read.
    """
    sock.setblocking(False)
    try:
        data = sock.recv(1, socket.MSG_PEEK)
        return data == b"" or answered
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    finally:
        sock.setblocking(True)


def open_request(port, head):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


BODY_HEAD = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: 1000\r\n\r\n")


def trickle(sock, until, data=b" "):
    """Send a byte every 0.2 s until the server closes the socket or ``until`` passes; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < until:
        try:
            sock.send(data)
        except OSError:
            break
        if closed_by_server(sock, answered=True):
            break
        time.sleep(0.2)
    return time.monotonic() - started


def read_response(sock):
    """Everything the server sent until it closed. A server that answers before a body has all
    arrived and then closes resets the connection on the unread rest; the answer read before the
    reset is what counts (a reset before any of it still fails the caller's checks)."""
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except ConnectionResetError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def test_three_hundred_idle_sockets_do_not_shut_out_a_request(limited):
    url, port, log = limited
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(300)]
    try:
        started = time.monotonic()
        answer = good_request(url)
        assert answer.status_code == 200 and time.monotonic() - started < 5
        time.sleep(0.2)
        # The server pushed out the longest idle ones rather than run out of descriptors.
        assert sum(closed_by_server(s) for s in idle) >= 300 - FD_LIMIT
        log.seek(0)
        assert "the file descriptor limit is 256" in log.read()  # the cap it set itself, said once
    finally:
        for s in idle:
            s.close()


def test_slow_headers_and_a_trickled_body_are_cut_off_while_others_are_served(limited):
    url, port, _ = limited
    slow_headers = open_request(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
    slow_body = open_request(port, BODY_HEAD + b'{"texts": ["')
    took = {}
    threads = [threading.Thread(target=lambda: took.update(headers=trickle(slow_headers, 10, b"X"))),
               threading.Thread(target=lambda: took.update(body=trickle(slow_body, 10)))]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert good_request(url).status_code == 200 and time.monotonic() - started < 5
    finally:
        for t in threads:
            t.join()
    assert HEADER_TIMEOUT - 0.5 < took["headers"] < HEADER_TIMEOUT + 2
    assert BODY_TIMEOUT - 0.5 < took["body"] < BODY_TIMEOUT + 2
    slow_headers.close()
    head, body = read_response(slow_body)  # a 408 with one JSON line, then the connection closed
    slow_body.close()
    assert head.startswith("HTTP/1.1 408") and "connection: close" in head.lower()
    assert len(body.splitlines()) == 1 and "--body-timeout" in json.loads(body)["error"]


def test_a_request_whose_body_has_arrived_keeps_its_connection(limited):
    """Only a response sent before the body is in closes the connection: not a GET's, nor a whole POST's."""
    url, _, _ = limited
    with httpx.Client(base_url=url, timeout=10) as client:
        for answer in (client.get("/healthz"), client.post("/v1/predict", json={"texts": ["orbit"]}),
                       client.post("/v1/predict", content=b"{}", headers={"Content-Type": "application/json"})):
            assert answer.status_code in (200, 400) and answer.headers.get("connection") != "close"


def test_over_long_headers_are_refused(limited):
    url, port, _ = limited
    sock = open_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 100_000)
    head, body = read_response(sock)
    sock.close()
    assert head.startswith("HTTP/1.1 431") and "error" in json.loads(body)
    assert good_request(url).status_code == 200


def test_beyond_the_concurrency_limit_a_fast_503_then_served_again(limited):
    url, port, _ = limited
    holding = [open_request(port, BODY_HEAD) for _ in range(CONCURRENCY)]  # bodies that do not come
    try:
        time.sleep(0.5)
        started = time.monotonic()
        answer = good_request(url)
        assert answer.status_code == 503 and time.monotonic() - started < 1
        assert len(answer.text.splitlines()) == 1 and "--limit-concurrency" in answer.json()["error"]
    finally:
        for s in holding:
            s.close()
    deadline = time.monotonic() + 5
    while (answer := good_request(url)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answer.status_code == 200


def test_a_body_over_the_limit_is_refused_before_it_has_all_arrived(limited):
    """Chunked, so no Content-Length warns the server, and never ended: it counts while reading,
    answers 413 and closes the connection, so the rest of a body is never read as a request."""
    url, port, _ = limited
    sock = open_request(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (1 << 16, b"a" * (1 << 16))
    sent = 0
    try:
        for _ in range(4_000_000 // (1 << 16) + 1):  # just over the default limit, 4 MB; no last chunk
            sock.sendall(chunk)
            sent += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        # The server answered and closed while chunks were still on their way: its kernel resets
        # the connection on the unread ones. The answer is already in this socket's queue.
        assert sent > 3_000_000, sent  # refused near the limit, not at the first chunk
    head, body = read_response(sock)
    sock.close()
    assert head.startswith("HTTP/1.1 413") and "connection: close" in head.lower()


@pytest.mark.parametrize("option, value, words", [
    ("--batch-wait-ms", "nan", "not a finite number"), ("--batch-wait-ms", "inf", "not a finite number"),
    ("--poll-seconds", "-inf", "not a finite number"), ("--start-timeout", "nan", "not a finite number"),
    ("--header-timeout", "inf", "not a finite number"), ("--port", "70000", "from 1 to 65535"),
    ("--port", "0", "from 1 to 65535"), ("--body-timeout", "0", "too small"), ("--limit-concurrency", "0", "too small"),
])
def test_serve_refuses_options_that_are_not_finite_or_not_a_port(served, option, value, words):
    _, store = served
    done = subprocess.run([sys.executable, "-m", "external_embeddings", "serve", "--store", str(store.path),
                           "--models", str(ROOT), f"{option}={value}"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0] and words in lines[0]


def test_serve_refuses_a_port_another_server_holds_and_abbreviated_options(served):
    """A taken --port is one line before anything starts (uvicorn would log its own error and exit 3),
    and ``--stor`` is not silently ``--store``."""
    _, store = served
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "external_embeddings", "serve", "--store", str(store.path),
                               "--models", str(ROOT), "--port", str(port)], capture_output=True, text=True, cwd=ROOT,
                              timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"error: command line: --port {port} on 127.0.0.1 cannot be bound")
    done = subprocess.run([sys.executable, "-m", "external_embeddings", "predict", "--stor", str(store.path),
                           "--models", str(ROOT), "x"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "required: --store" in done.stderr and done.stderr.count("\n") == 1
