"""What one client can hold of the app: requests under way, and time to send a request's body.

An ASGI middleware, so that both servers get it: uvicorn workers (``serve``) and Ray Serve's
replicas (``serve --ray``), which run the same app. Neither uvicorn nor Starlette bounds the
time a body may take to arrive: a client that sends the headers and then one byte a minute
holds its request, and the request's slot, for ever. Starlette has no limit on requests under
way, and uvicorn's ``limit_concurrency`` counts idle connections too and answers in plain text;
this one counts requests and answers like every other refusal: one JSON line.
"""

import asyncio
import json


def json_response(status, message, close=False):
    """The ASGI messages of a ``{"error": message}`` response (``close``: and close the connection)."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return [{"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body}]


class BodyTimeout(Exception):
    """The request's body did not arrive within the deadline: the app answers it with a 408."""


class Limits:
    """ASGI middleware: at most ``concurrency`` requests under way (503 beyond), and each body in
    within ``body_timeout`` seconds of its headers (408, and the connection closed).

    A response sent before the body has all arrived (a 408, or a 413 for a body over the limit)
    closes the connection, so that the rest of the body is not read as the next request, and a
    client still sending gets no more time. 0 turns either limit off.
    """

    def __init__(self, app, concurrency, body_timeout):
        self.app, self.concurrency, self.body_timeout = app, concurrency, body_timeout
        self.under_way = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.concurrency and self.under_way >= self.concurrency:
            for message in json_response(503, f"busy: {self.under_way:,} requests under way, the limit "
                                         f"(--limit-concurrency); try again shortly", close=True):
                await send(message)
            return
        self.under_way += 1
        try:
            await self._call(scope, receive, send)
        finally:
            self.under_way -= 1

    async def _call(self, scope, receive, send):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout if self.body_timeout else None
        headers = dict(scope.get("headers") or [])
        # A request without Content-Length or Transfer-Encoding (a GET), or with a length of 0, has no body to wait for.
        no_body = b"transfer-encoding" not in headers and headers.get(b"content-length", b"0").strip() in (b"0", b"")
        state = {"body_done": no_body, "started": False}

        async def timed_receive():
            if state["body_done"] or deadline is None:  # after the body, receive only waits for a disconnect
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(f"the request's body did not arrive within {self.body_timeout:g} s of its "
                                  "headers (--body-timeout); send it at once") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def closing_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
                if not state["body_done"]:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, timed_receive, closing_send)
        except BodyTimeout as e:  # the app's endpoints answer it themselves; this is for any other route
            if state["started"]:
                raise
            for message in json_response(408, str(e), close=True):
                await send(message)
