"""A fast fake PagerDuty Events API for the benchmark: answers 202 and remembers when each dedup key arrived."""

import json
import time

RECEIVED: dict[str, float] = {}
ANSWER = b'{"status":"success","message":"Event processed"}'


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    now = time.time()
    if scope["method"] == "POST":
        try:
            key = json.loads(b"".join(chunks)).get("dedup_key")
        except ValueError:
            key = None
        if key and key not in RECEIVED:
            RECEIVED[key] = now
        body, status = ANSWER, 202
    elif scope["path"] == "/reset":
        RECEIVED.clear()
        body, status = b"{}", 200
    else:
        body, status = json.dumps(RECEIVED).encode(), 200
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
