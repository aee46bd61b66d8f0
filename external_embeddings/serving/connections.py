"""Bounds on the uvicorn server's connections (``serve``): how many, and how long to send headers.

uvicorn 0.54 bounds neither. A new connection gets no timer until its first response is sent
(the keep-alive timer starts only then, and any byte received cancels it), so a socket that
sends nothing, or a header byte now and then, is held for ever. And it accepts connections until
the process runs out of file descriptors; from then on asyncio stops accepting for a second at a
time and every real request fails. Its ``limit_concurrency`` does not help: it counts those idle
sockets too, so they still shut everyone else out (with a plain-text 503). Hence this protocol,
a subclass of uvicorn's own (httptools, or h11 where httptools is missing):

- a connection has ``--header-timeout`` seconds from the moment it is idle (opened, or its last
  response sent) to finish its next request's headers, however the bytes trickle in, and at
  most MAX_HEADER_BYTES for them; then it is closed;
- at most ``--max-connections`` stay open per worker (fewer if the file descriptor limit is
  lower): a connection beyond that closes the one that has been idle longest, so idle sockets
  only ever push out each other, never a request under way. Only when every connection holds a
  request is the new one answered 503.

A request's body is bounded by limits.Limits in the app, which Ray Serve's replicas run too.
"""

import os
import resource

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .app import setting
from .batching import log
from .limits import json_response

MAX_HEADER_BYTES = 64 * 1024  # h11 stops at 16 KiB by default; httptools has no limit of its own
FD_RESERVE = 64  # descriptors kept for what else a worker opens: model files, metrics files, logs

_cap = None


def connection_cap(wanted):
    """``wanted``, or fewer when the file descriptor limit leaves no room for that many sockets.

    Worked out once per worker, at its first connection, when the store and TensorFlow have
    opened what they keep open. Past the limit the process could not accept at all.
    """
    global _cap
    if _cap is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            used = len(os.listdir("/proc/self/fd"))
        except OSError:  # not Linux: count on the reserve alone
            used = 0
        room = wanted if soft == resource.RLIM_INFINITY else soft - used - FD_RESERVE
        _cap = max(1, min(wanted, room))
        if _cap < wanted:
            log.warning("at most %d connections (not --max-connections %d): the file descriptor limit is %d "
                        "(ulimit -n) and %d are in use", _cap, wanted, soft, used)
    return _cap


def raise_fd_limit():
    """Raise this process's soft file descriptor limit to its hard limit (workers inherit it).

    Distributions set the soft limit to 1024, below what --max-connections may ask for; the hard
    limit is what an unprivileged process may raise it to.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard  # Linux's default fs.nr_open
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # a lower system ceiling: connection_cap keeps to what there is
            pass


async def _overloaded(scope, receive, send):
    """The app for a connection accepted while every other one holds a request."""
    for message in json_response(503, "busy: every connection holds a request (--max-connections); try "
                                 "again shortly", close=True):
        await send(message)


class BoundedHTTPProtocol(AutoHTTPProtocol):
    """uvicorn's HTTP protocol with a deadline for headers and a cap on connections (see the module)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.idle_since = None  # loop time since which the connection waits for headers, or None
        self._header_timer = None
        self._header_bytes = 0

    def _busy(self):
        return self.cycle is not None and not self.cycle.response_complete

    def _wait_for_headers(self):
        self.idle_since, self._header_bytes = self.loop.time(), 0
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(setting("HEADER_TIMEOUT"), self._headers_too_slow)

    def _headers_arrived(self):
        self.idle_since = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self):
        if self.idle_since is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport):
        super().connection_made(transport)
        self._wait_for_headers()
        if len(self.connections) > connection_cap(setting("MAX_CONNECTIONS")):
            idle = [c for c in self.connections if c is not self and getattr(c, "idle_since", None) is not None
                    and not c.transport.is_closing()]
            if idle:
                min(idle, key=lambda c: c.idle_since).transport.close()
            else:
                self.app = _overloaded  # this connection's requests get a 503; the others go on

    def data_received(self, data):
        waiting = self.idle_since is not None
        super().data_received(data)
        if not waiting or self.transport.is_closing():
            return
        if self._busy():  # a request's headers are complete: it is the app's now
            self._headers_arrived()
            return
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES:
            body = json_response(431, f"request headers over {MAX_HEADER_BYTES:,} bytes")[1]["body"]
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    def on_response_complete(self):
        super().on_response_complete()
        if not self.transport.is_closing() and not self._busy():
            self._wait_for_headers()

    def connection_lost(self, exc):
        self._headers_arrived()
        super().connection_lost(exc)
