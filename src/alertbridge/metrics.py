"""Prometheus metrics, one registry per app so tests and embedders can hold several."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.received = Counter(
            "alertbridge_requests_received", "Requests that reached an endpoint", ["endpoint"], registry=r
        )
        self.refused = Counter(
            "alertbridge_requests_refused",
            "Requests refused, by reason (bad_token, too_large, bad_payload, unknown_path, store_unavailable …)",
            ["endpoint", "reason"],
            registry=r,
        )
        self.events = Counter(
            "alertbridge_events_stored",
            "Events stored, by whether they were new or a redelivery",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "alertbridge_ingest_seconds",
            "Time from request to durable answer",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.routed = Counter(
            "alertbridge_events_routed",
            "Routing decisions, by result (routed, unmatched, failed, suppressed, silenced, inhibited)",
            ["status"],
            registry=r,
        )
        self.silenced = Counter(
            "alertbridge_events_silenced_total",
            "Events a silence or a maintenance window muted when they were routed",
            ["endpoint"],
            registry=r,
        )
        self.inhibited = Counter(
            "alertbridge_events_inhibited_total",
            "Events an inhibit rule muted when they were routed (a firing alert inhibited them)",
            ["endpoint"],
            registry=r,
        )
        self.deliveries = Counter(
            "alertbridge_delivery_attempts",
            "Delivery attempts by target and outcome (success, retry, permanent), and dead letters (outcome=dead)",
            ["target", "outcome"],
            registry=r,
        )
        self.send_seconds = Histogram(
            "alertbridge_delivery_send_seconds",
            "Time the target took to answer",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "alertbridge_end_to_end_seconds",
            "From receiving an event to its delivery landing",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.team_lookups = Counter(
            "alertbridge_team_lookups",
            "Which-team lookups, by source and result (found, not_found)",
            ["source", "result"],
            registry=r,
        )
        self.team_events = Counter(
            "alertbridge_team_events",
            "Events routed to a team, by source, team and the identifier that matched",
            ["source", "team", "matched_by"],
            registry=r,
        )
        self.team_deliveries = Counter(
            "alertbridge_team_deliveries",
            "Attempts of deliveries for a team (forwards to its agent), by source, team and outcome",
            ["source", "team", "outcome"],
            registry=r,
        )
        self.team_end_to_end_seconds = Histogram(
            "alertbridge_team_end_to_end_seconds",
            "From receiving an event to its delivery for a team landing, by source and team",
            ["source", "team"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("alertbridge_deliveries_in_flight", "Deliveries being sent now", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
