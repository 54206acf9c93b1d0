"""Seed 000 as its README describes it: PagerDuty called inside the request, idempotency in an in-memory set."""

import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PD_EVENTS_URL = os.environ["PD_EVENTS_URL"]
WEBHOOK_TOKEN = os.environ["WEBHOOK_TOKEN"]
DEFAULT_SERVICE_GROUP = os.environ.get("DEFAULT_SERVICE_GROUP", "A")
ASSIGNEE_TO_SERVICE_GROUP = {
    "hossamhafez@luciq.ai": "A",
    "mahmoudelfiqi@luciq.ai": "A",
    "ibrahimsalem@luciq.ai": "A",
    "bedourelborai@luciq.ai": "B",
    "omarabdelsattar@luciq.ai": "B",
    "mirettewagdy@luciq.ai": "B",
}
SERVICE_GROUP_TO_ROUTING_KEY = {"A": os.environ["PD_ROUTING_KEY_A"], "B": os.environ["PD_ROUTING_KEY_B"]}
TICKETS_TRIGGERED: set[str] = set()
client = httpx.AsyncClient(timeout=10)


def assignee_email(assigned):  # type: ignore[no-untyped-def]
    if isinstance(assigned, list):
        assigned = assigned[0] if assigned else None
    if isinstance(assigned, dict):
        assigned = assigned.get("email")
    return assigned.lower() if isinstance(assigned, str) else None


async def events(request: Request) -> JSONResponse:
    if request.query_params.get("token") != WEBHOOK_TOKEN:
        return JSONResponse({"detail": "Invalid token"}, status_code=401)
    body = await request.json()
    message = body.get("message", body)
    ticket = message.get("payload", {}).get("ticket", {})
    group = ASSIGNEE_TO_SERVICE_GROUP.get(assignee_email(ticket.get("assignedTo")) or "", DEFAULT_SERVICE_GROUP)
    if ticket.get("id") not in TICKETS_TRIGGERED:
        TICKETS_TRIGGERED.add(ticket.get("id"))
        await client.post(
            PD_EVENTS_URL,
            json={
                "routing_key": SERVICE_GROUP_TO_ROUTING_KEY[group],
                "event_action": "trigger",
                "dedup_key": f"thena-ticket-{ticket.get('id')}",
                "payload": {
                    "summary": ticket.get("title", "Thena ticket"),
                    "source": "thena",
                    "severity": "error",
                    "custom_details": ticket,
                },
            },
        )
    return JSONResponse({"ok": True, "serviceGroup": group})


app = Starlette(routes=[Route("/thena/events", events, methods=["POST"])])
