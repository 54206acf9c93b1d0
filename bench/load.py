"""Load generator: keep-alive HTTP/1.1 on raw asyncio streams (an HTTP client library would be the bottleneck).

closed: N connections, each sends the next request when the previous is answered, for D seconds.
open:   requests scheduled at a fixed rate whatever the answers; latency counts from the scheduled time.
Prints one JSON document: rate, latency percentiles, errors, and (open) the send time of each ticket.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
import uuid


def body(ticket: str) -> bytes:
    return json.dumps(
        {
            "message": {
                "eventId": f"ev-{ticket}",
                "eventType": "ticket:created",
                "payload": {
                    "ticket": {
                        "id": ticket,
                        "title": f"Ticket {ticket}",
                        "priorityName": "High",
                        "assignedTo": [{"email": "bedourelborai@luciq.ai"}],
                    }
                },
            }
        }
    ).encode()


def pagerduty_body(ticket: str) -> bytes:
    """A Generic Webhooks V3 incident.triggered event, as PagerDuty sends it."""
    incident = {
        "id": f"Q{ticket}",
        "type": "incident",
        "number": 1,
        "title": f"Incident {ticket}",
        "status": "triggered",
        "urgency": "high",
        "incident_key": f"key-{ticket}",
        "html_url": f"https://example.pagerduty.com/incidents/Q{ticket}",
        "service": {"id": "PSVC1", "type": "service_reference", "summary": "production-api"},
        "assignees": [{"id": "PUSER1", "type": "user_reference"}],
        "teams": [{"id": "PTEAM1", "type": "team_reference"}],
        "priority": {"id": "PPRI1", "type": "priority_reference", "summary": "P1"},
    }
    event = {
        "id": f"E{ticket}",
        "event_type": "incident.triggered",
        "resource_type": "incident",
        "occurred_at": "2026-11-24T12:00:00.000Z",
        "agent": {"id": "PUSER1", "type": "user_reference"},
        "data": incident,
    }
    return json.dumps({"event": event}).encode()


def pagerduty_headers(payload: bytes, ticket: str) -> str:
    secret = os.environ.get("PD_SECRET", "").encode()
    signature = hmac.new(secret, payload, hashlib.sha256).hexdigest()
    return f"X-PagerDuty-Signature: v1={signature}\r\nX-Webhook-Id: wh-{ticket}\r\n"


KIND = "thena"
MIXED = ("slack", "github", "pagerduty", "incidentio")


def slack_request(ticket: str) -> tuple[str, bytes, str]:
    event = {"type": "app_mention", "channel": "C0A4967KRBM", "user": "U1", "text": f"Investigate {ticket}"}
    payload = json.dumps({"type": "event_callback", "event_id": f"Ev{ticket}", "team_id": "T1", "event": event})
    timestamp = str(int(time.time()))
    secret = os.environ.get("SLACK_SECRET", "").encode()
    signature = "v0=" + hmac.new(secret, f"v0:{timestamp}:{payload}".encode(), hashlib.sha256).hexdigest()
    headers = f"X-Slack-Request-Timestamp: {timestamp}\r\nX-Slack-Signature: {signature}\r\n"
    return "/webhooks/slack/events", payload.encode(), headers


def github_request(ticket: str) -> tuple[str, bytes, str]:
    payload = json.dumps(
        {
            "action": "opened",
            "issue": {"number": 1, "title": f"Bug {ticket}", "html_url": "https://github.com/x/y/issues/1"},
            "repository": {"full_name": "incidentfox/mono-repo"},
            "sender": {"login": "octocat"},
        }
    ).encode()
    secret = os.environ.get("GITHUB_SECRET", "").encode()
    signature = "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()
    headers = f"X-GitHub-Event: issues\r\nX-GitHub-Delivery: {ticket}\r\nX-Hub-Signature-256: {signature}\r\n"
    return "/webhooks/github", payload, headers


def incidentio_request(ticket: str) -> tuple[str, bytes, str]:
    kind = "public_alert.alert_created_v1"
    resource = {"id": f"A{ticket}", "title": "5xx", "alert_source_id": "01KEGMSPPCKFPYHT2ZSNQ7WY3J", "status": "firing"}
    payload = json.dumps({"event_type": kind, kind: resource}).encode()
    timestamp = str(int(time.time()))
    secret = os.environ.get("INCIDENTIO_SECRET", "whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    signed = f"msg_{ticket}.{timestamp}.".encode() + payload
    signature = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    headers = f"webhook-id: msg_{ticket}\r\nwebhook-timestamp: {timestamp}\r\nwebhook-signature: {signature}\r\n"
    return "/webhooks/incidentio", payload, headers


ALERTS_PER_NOTIFICATION = 10


def alertmanager_body(ticket: str) -> bytes:
    """An Alertmanager webhook notification (version 4) of a group of ten firing alerts, each its own."""
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "HighLatency", "instance": f"{ticket}-{n}", "severity": "critical", "job": "api"},
            "annotations": {"summary": f"p99 over 1 s on {ticket}-{n}", "runbook_url": "https://runbooks/latency"},
            "startsAt": "2026-12-04T12:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=latency",
            "fingerprint": hashlib.sha256(f"{ticket}-{n}".encode()).hexdigest()[:16],
        }
        for n in range(ALERTS_PER_NOTIFICATION)
    ]
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{alertname="HighLatency"}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "alertbridge",
            "groupLabels": {"alertname": "HighLatency"},
            "commonLabels": {"alertname": "HighLatency", "severity": "critical", "job": "api"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts,
        }
    ).encode()


_counter = 0


def request(path: str, ticket: str) -> bytes:
    global _counter
    if KIND == "mixed":
        _counter += 1
        which = MIXED[_counter % len(MIXED)]
        if which == "slack":
            path, payload, extra = slack_request(ticket)
        elif which == "github":
            path, payload, extra = github_request(ticket)
        elif which == "incidentio":
            path, payload, extra = incidentio_request(ticket)
        else:
            path = "/webhooks/pagerduty"
            payload = pagerduty_body(ticket)
            extra = pagerduty_headers(payload, ticket)
    elif KIND == "alertmanager":
        payload = alertmanager_body(ticket)
        extra = f"Authorization: Bearer {os.environ.get('ALERTMANAGER_TOKEN', '')}\r\n"
    elif KIND == "pagerduty":
        payload = pagerduty_body(ticket)
        extra = pagerduty_headers(payload, ticket)
    else:
        payload, extra = body(ticket), ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


def summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, float]:
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(n * p))] * 1000 if n else float("nan")

    return {
        "requests": n,
        "rate": n / elapsed,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if n else float("nan"),
        "errors": errors,
    }


async def closed(host: str, ports: list[int], path: str, connections: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    prefix = uuid.uuid4().hex[:8]
    counter = 0
    deadline = time.perf_counter() + duration

    async def worker(port: int) -> None:
        nonlocal errors, counter
        conn = Connection(host, port)
        while time.perf_counter() < deadline:
            counter += 1
            raw = request(path, f"{prefix}-{counter}")
            started = time.perf_counter()
            try:
                status = await conn.post(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                conn = Connection(host, port)
                continue
            latencies.append(time.perf_counter() - started)
            if status >= 300:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(ports[n % len(ports)]) for n in range(connections)))
    return summary(latencies, time.perf_counter() - started, errors)


async def open_loop(host: str, ports: list[int], path: str, rate: float, duration: float, connections: int) -> dict:
    queue: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    sent: dict[str, float] = {}
    errors = 0
    prefix = uuid.uuid4().hex[:8]

    async def worker(port: int) -> None:
        nonlocal errors
        conn = Connection(host, port)
        while (item := await queue.get()) is not None:
            ticket, scheduled = item
            try:
                status = await conn.post(request(path, ticket))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                conn = Connection(host, port)
                continue
            latencies.append(time.perf_counter() - scheduled)
            if status >= 300:
                errors += 1

    workers = [asyncio.create_task(worker(ports[n % len(ports)])) for n in range(connections)]
    total = int(rate * duration)
    start_perf, start_wall = time.perf_counter(), time.time()
    for i in range(total):
        at = start_perf + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        ticket = f"{prefix}-{i}"
        sent[f"thena-ticket-{ticket}"] = start_wall + (at - start_perf)  # wall clock, to compare with the receiver's
        queue.put_nowait((ticket, at))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    result = summary(latencies, time.perf_counter() - start_perf, errors)
    return {**result, "sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["closed", "open"])
    parser.add_argument("--port", required=True, help="a port, or several separated by commas (connections alternate)")
    parser.add_argument("--path", default="/thena/events?token=bench-token")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--kind", choices=["thena", "pagerduty", "mixed", "alertmanager"], default="thena")
    parser.add_argument("--out", help="write the JSON here instead of standard output")
    args = parser.parse_args()
    global KIND
    KIND = args.kind
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    ports = [int(p) for p in str(args.port).split(",")]
    if args.mode == "closed":
        result = asyncio.run(closed("127.0.0.1", ports, args.path, args.connections, args.duration))
    else:
        result = asyncio.run(open_loop("127.0.0.1", ports, args.path, args.rate, args.duration, args.connections))
    if args.out:
        with open(args.out, "w") as file:
            json.dump(result, file)
    else:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
