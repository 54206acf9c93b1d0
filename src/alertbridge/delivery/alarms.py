"""Telling operators that a target keeps failing: once when it starts, once when it recovers.

A target is failing when one of its deliveries is dead-lettered, or when more than
`threshold` of its last `window` attempts failed. The alarm is a notification in the inbox for
every user of the org, and the actions configured under `delivery.failure_alert.actions` (a
Slack message, a PagerDuty event of its own). While the alarm is up, further failures add
nothing. It is cleared, and operators told so, by a success: the next one after a dead letter,
or, for a rate alarm, one that leaves the rate since the alarm under the threshold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from alertbridge import logs
from alertbridge.config import FailureAlertConfig
from alertbridge.store.base import Delivery, Inbox, NewDelivery

log = logs.get("alertbridge.alarms")


class Alarms:
    def __init__(self, config: FailureAlertConfig, store: Inbox, targets: Mapping[str, Any]) -> None:
        self.config = config
        self.store = store
        self.targets = targets
        self.recent: dict[str, deque[bool]] = {}
        self.up: dict[str, bool] = {}  # target → whether a dead letter (rather than the rate) raised it

    def _rate(self, target: str) -> float:
        seen = self.recent.get(target) or deque()
        return sum(1 for ok in seen if not ok) / len(seen) if seen else 0.0

    async def attempt(
        self, delivery: Delivery, succeeded: bool, dead: bool, reason: str, now: float
    ) -> list[NewDelivery]:
        """Note one attempt's outcome; the alarm deliveries to make, if this starts an alarm."""
        target = delivery.target
        seen = self.recent.setdefault(target, deque(maxlen=self.config.window))
        seen.append(succeeded)
        failing = dead or (len(seen) >= self.config.min_attempts and self._rate(target) > self.config.threshold)
        if failing and target not in self.up:
            self.up[target] = dead
            why = (
                f"a delivery was dead-lettered: {reason}"
                if dead
                else f"{self._rate(target):.0%} of recent attempts failed: {reason}"
            )
            log.error("target_failing", target=target, reason=why)
            seen.clear()  # from now on the window holds what happened since operators were told
            await self._notify(delivery.org, target, f"{target} is failing", why, now)
            return self._actions(delivery, target, why, now)
        if succeeded and target in self.up and (self.up[target] or self._rate(target) <= self.config.threshold):
            del self.up[target]
            log.info("target_recovered", target=target)
            await self._notify(delivery.org, target, f"{target} has recovered", "deliveries succeed again", now)
        return []

    async def _notify(self, org: str, target: str, title: str, body: str, now: float) -> None:
        note = {"title": title, "body": body, "data": {"kind": "target.failing", "target": target}}
        try:
            await self.store.notify_all(org, f"target:{target}", note, None, now)
        except Exception as exc:  # the alarm must never take the dispatcher down
            log.error("alarm_not_stored", target=target, error=str(exc))

    def _actions(self, delivery: Delivery, target: str, reason: str, now: float) -> list[NewDelivery]:
        made = []
        for index, spec in enumerate(self.config.actions):
            name = str(spec.get("target"))
            if name not in self.targets or name == target:
                continue
            fields = {
                k: (v.format(target=target, reason=reason) if isinstance(v, str) else v)
                for k, v in spec.items()
                if k not in ("target", "action")
            }
            made.append(
                NewDelivery.after(
                    delivery,
                    route=f"failure alarm for {target}",
                    target=name,
                    action=str(spec.get("action")),
                    fields=fields,
                    key=f"alarm:{target}:{int(now)}:{index}",
                    now=now,
                )
            )
        return made
