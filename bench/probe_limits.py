"""Probe a running server (``serve``, ``serve --ray``, or a reverse proxy in front) as a slow client would.

Opens ``--idle`` sockets that send nothing, one client that sends its headers a byte a second,
and one that sends its body a byte a second; then times a real request, and watches for how
long the server keeps each slow client. The figures in docs/security.md come from this.

Run: python bench/probe_limits.py --url http://127.0.0.1:8000 [--idle 300] [--watch 70] [--token T]
(``https://`` URLs are probed over TLS without checking the certificate: a test set-up's own.)
"""

import argparse
import socket
import ssl
import time
from urllib.parse import urlsplit

import httpx


def connect(host, port, tls):
    sock = socket.create_connection((host, port), timeout=10)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname=host)
    return sock


def state(sock):
    """"open", "closed", or "answered <status line>" (without waiting)."""
    sock.settimeout(0.01)
    try:
        data = sock.recv(200, socket.MSG_PEEK) if not isinstance(sock, ssl.SSLSocket) else sock.recv(200)
    except (socket.timeout, ssl.SSLWantReadError, BlockingIOError):
        return "open"
    except OSError:
        return "closed"
    return "closed" if not data else "answered " + data.split(b"\r\n")[0].decode("latin-1")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--idle", type=int, default=300, help="sockets that send nothing")
    parser.add_argument("--watch", type=float, default=70, help="seconds to watch the slow clients")
    parser.add_argument("--token", default="")
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    tls = parts.scheme == "https"
    host, port = parts.hostname, parts.port or (443 if tls else 80)
    auth = f"Authorization: Bearer {args.token}\r\n".encode() if args.token else b""
    idle = [socket.create_connection((host, port), timeout=10) for _ in range(args.idle)]
    slow_headers = connect(host, port, tls)
    slow_headers.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
    slow_body = connect(host, port, tls)
    slow_body.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n" + auth +
                      b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    started = time.monotonic()
    try:
        answer = httpx.post(f"{args.url}/v1/predict", json={"texts": ["the rocket reached orbit"]}, timeout=10,
                            verify=False, headers={"Authorization": f"Bearer {args.token}"} if args.token else {})
        good = f"{answer.status_code} in {time.monotonic() - started:.2f} s"
    except httpx.HTTPError as e:
        good = f"failed after {time.monotonic() - started:.2f} s ({type(e).__name__})"
    print(f"a request with {args.idle} idle sockets open: {good}")
    clients = {"idle socket": (idle[0], None), "headers a byte a second": (slow_headers, b"X"),
               "body a byte a second": (slow_body, b" ")}
    ended, started = {}, time.monotonic()
    while len(ended) < len(clients) and time.monotonic() - started < args.watch:
        for name, (sock, trickle) in clients.items():
            if name in ended:
                continue
            try:
                if trickle:
                    sock.send(trickle)
                now = state(sock)
            except OSError:
                now = "closed"
            if now != "open":
                ended[name] = f"{now} after {time.monotonic() - started:.1f} s"
        time.sleep(1)
    for name in clients:
        print(f"{name}: {ended.get(name, f'still open after {args.watch:g} s')}")
    print(f"idle sockets the server still holds: {sum(state(s) == 'open' for s in idle)} of {args.idle}")


if __name__ == "__main__":
    main()
