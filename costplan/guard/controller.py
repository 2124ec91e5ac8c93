"""The reconcile loop, its HTTP endpoints and its metrics.

``reconcile`` is one pass over every key the plan's enforcing budgets cover.
``Controller.run`` repeats it every ``period`` seconds and at once when
Alertmanager posts to ``/webhook`` (the post carries no decision: it only
wakes the loop). ``/healthz`` answers while the process serves; ``/readyz``
once a reconcile has completed within three periods; ``/metrics`` exposes
``costplan_guard_*`` in the Prometheus text format.

Every transition is written three times: the patch itself, a Kubernetes
Event on the Secret, and one JSON log line (the audit trail). ``dry_run``
does everything but the patch and the Event.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from costplan.core import conventions as c
from costplan.guard import decide
from costplan.guard.clients import PrometheusUnavailable
from costplan.plan.enforcement import GuardConfig

Clock = Callable[[], dt.datetime]
Log = Callable[[dict[str, Any]], None]


class SpendSource(Protocol):
    def budget_spend(self, at: dt.datetime) -> dict[decide.SpendKey, Decimal]: ...


class SecretStore(Protocol):
    calls: int

    def get(self, name: str) -> dict[str, Any] | None: ...

    def patch(self, name: str, body: dict[str, Any]) -> None: ...

    def event(self, secret: dict[str, Any], reason: str, message: str, warning: bool, now: dt.datetime) -> None: ...


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def describe(exc: Exception) -> str:
    """A failure in one line without response bodies or headers (an API error's body could echo a Secret)."""
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if status is not None:
        return f"{type(exc).__name__}: HTTP {status} {reason or ''}".rstrip()
    return f"{type(exc).__name__}: {exc}"


REASONS = {decide.NORMAL: "BudgetReleased", decide.THROTTLED: "BudgetThrottled", decide.BLOCKED: "BudgetBlocked"}


@dataclass
class Outcome:
    """What one reconcile did; ``held`` means Prometheus was down and keys kept their state."""

    prometheus_up: bool = True
    held: bool = False
    keys: int = 0
    transitions: int = 0
    patched: int = 0
    skipped_missing: int = 0
    skipped_foreign: int = 0
    states: dict[str, int] = field(default_factory=dict)
    api_calls: int = 0


@dataclass
class Metrics:
    reconciles: dict[str, int] = field(default_factory=lambda: {"ok": 0, "held": 0, "failed": 0})
    transitions: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    prometheus_up: int = 0
    last_success: float = 0.0
    last_duration: float = 0.0
    webhooks: int = 0

    def render(self) -> str:
        p = c.GUARD_METRICS_PREFIX
        lines = [
            f"# HELP {p}reconciles_total Reconcile passes by result.", f"# TYPE {p}reconciles_total counter",
            *(f'{p}reconciles_total{{result="{k}"}} {v}' for k, v in sorted(self.reconciles.items())),
            f"# HELP {p}transitions_total Key state changes written, by new state.",
            f"# TYPE {p}transitions_total counter",
            *(f'{p}transitions_total{{state="{k}"}} {v}' for k, v in sorted(self.transitions.items())),
            f"# HELP {p}keys Keys per budget state after the last reconcile.", f"# TYPE {p}keys gauge",
            *(f'{p}keys{{state="{k}"}} {v}' for k, v in sorted(self.keys.items())),
            f"# HELP {p}prometheus_up Whether the last budget query succeeded.", f"# TYPE {p}prometheus_up gauge",
            f"{p}prometheus_up {self.prometheus_up}",
            f"# HELP {p}last_success_timestamp_seconds End of the last completed reconcile.",
            f"# TYPE {p}last_success_timestamp_seconds gauge",
            f"{p}last_success_timestamp_seconds {self.last_success:.3f}",
            f"# HELP {p}reconcile_duration_seconds Wall time of the last reconcile.",
            f"# TYPE {p}reconcile_duration_seconds gauge",
            f"{p}reconcile_duration_seconds {self.last_duration:.6f}",
            f"# HELP {p}webhooks_total Alertmanager notifications received.", f"# TYPE {p}webhooks_total counter",
            f"{p}webhooks_total {self.webhooks}",
        ]
        return "\n".join(lines) + "\n"


class Reconciler:
    """One reconcile at a time; remembers since when Prometheus has been unreachable."""

    def __init__(self, config: GuardConfig, prometheus: SpendSource, secrets: SecretStore, *,
                 clock: Clock = utc_now, log: Log = lambda record: None, dry_run: bool = False) -> None:
        self.config = config
        self.prometheus = prometheus
        self.secrets = secrets
        self.clock = clock
        self.log = log
        self.dry_run = dry_run
        self.unreachable_since: dt.datetime | None = None
        self.last_answer: dt.datetime | None = None
        self.metrics = Metrics()
        self.lock = threading.Lock()

    def _wanted(self, now: dt.datetime) -> dict[str, decide.Wanted] | None:
        """Wanted state per team; ``None`` while an outage is younger than ``failAfter`` (hold)."""
        try:
            spend = self.prometheus.budget_spend(now)
        except PrometheusUnavailable as exc:
            self.metrics.prometheus_up = 0
            if self.unreachable_since is None:
                # Unreachable since the last answer (or since now, if there never was one).
                self.unreachable_since = self.last_answer or now
            self.log({"event": "prometheus_unreachable", "error": str(exc), "since": self.unreachable_since.isoformat()})
            if Decimal(str((now - self.unreachable_since).total_seconds())) < self.config.fail_after_seconds:
                return None
            return {t.name: decide.failed_state(self.config, t, now) for t in self.config.teams}
        self.metrics.prometheus_up = 1
        self.unreachable_since = None
        self.last_answer = now
        return {t.name: decide.team_state(self.config, t, spend, now) for t in self.config.teams}

    def reconcile(self) -> Outcome:
        with self.lock:
            started = time.monotonic()
            calls_before = self.secrets.calls
            now = self.clock()
            outcome = Outcome()
            wanted_by_team = self._wanted(now)
            if wanted_by_team is None:
                outcome.prometheus_up, outcome.held = False, True
                self.metrics.reconciles["held"] += 1
                return outcome
            outcome.prometheus_up = self.metrics.prometheus_up == 1
            for team, key in self.config.keys():
                outcome.keys += 1
                secret = self.secrets.get(key)
                if secret is None:
                    outcome.skipped_missing += 1
                    continue
                if not decide.owned(secret, self.config):
                    outcome.skipped_foreign += 1
                    continue
                wanted = decide.with_override(wanted_by_team[team.name], secret, now)
                current = decide.observed(secret)
                outcome.states[wanted.state] = outcome.states.get(wanted.state, 0) + 1
                if current.same_as(wanted):
                    continue
                outcome.transitions += 1
                self._transition(team.name, key, secret, current, wanted, now)
                if not self.dry_run:
                    outcome.patched += 1
            outcome.api_calls = self.secrets.calls - calls_before
            self.metrics.reconciles["ok"] += 1
            self.metrics.keys = dict(outcome.states)
            self.metrics.last_duration = time.monotonic() - started
            self.metrics.last_success = time.time()
            return outcome

    def _transition(self, team: str, key: str, secret: dict[str, Any], current: decide.Wanted,
                    wanted: decide.Wanted, now: dt.datetime) -> None:
        self.log({
            "event": "transition", "plan": self.config.plan, "team": team, "secret": key,
            "from": current.state, "to": wanted.state, "tier": wanted.tier, "reason": wanted.reason,
            "dryRun": self.dry_run, "time": now.isoformat(),
        })
        if self.dry_run:
            return
        self.secrets.patch(key, decide.patch(wanted))
        self.metrics.transitions[wanted.state] = self.metrics.transitions.get(wanted.state, 0) + 1
        tier = f" (tier {wanted.tier})" if wanted.tier else ""
        self.secrets.event(secret, REASONS[wanted.state], f"{current.state} -> {wanted.state}{tier}: {wanted.reason}",
                           wanted.state != decide.NORMAL, now)


class Controller:
    """The loop and the HTTP endpoints around a ``Reconciler``."""

    def __init__(self, reconciler: Reconciler, period: float, listen: tuple[str, int]) -> None:
        self.reconciler = reconciler
        self.period = period
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.completed = 0
        self.serving = False
        self.httpd = http.server.ThreadingHTTPServer(listen, self._handler())
        self.httpd.daemon_threads = True

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def ready(self) -> bool:
        last = self.reconciler.metrics.last_success
        return last > 0 and time.time() - last < 3 * self.period + 30

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        controller = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, text: str, kind: str = "text/plain; charset=utf-8") -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == c.GUARD_LIVENESS_PATH:
                    self._reply(200, "ok\n")
                elif self.path == c.GUARD_READINESS_PATH:
                    self._reply(200, "ready\n") if controller.ready() else self._reply(503, "not ready\n")
                elif self.path == c.GUARD_METRICS_PATH:
                    self._reply(200, controller.reconciler.metrics.render(), "text/plain; version=0.0.4")
                else:
                    self._reply(404, "not found\n")

            def do_POST(self) -> None:
                if self.path != c.GUARD_WEBHOOK_PATH:
                    self._reply(404, "not found\n")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(min(length, 1 << 20))  # the content is not used: the reconcile reads Prometheus
                controller.reconciler.metrics.webhooks += 1
                controller.wake.set()
                self._reply(200, json.dumps({"status": "queued"}) + "\n", "application/json")

        return Handler

    def serve(self) -> threading.Thread:
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        self.serving = True
        return thread

    def run(self) -> None:
        """Reconcile until ``stop`` is set: every period, sooner on a webhook."""
        while not self.stop.is_set():
            self.wake.clear()
            try:
                self.reconciler.reconcile()
            except Exception as exc:  # an API error must not end the loop; the next pass retries
                self.reconciler.metrics.reconciles["failed"] += 1
                self.reconciler.log({"event": "reconcile_failed", "error": describe(exc)})
            self.completed += 1
            self.wake.wait(self.period)

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
        if self.serving:  # shutdown() waits for serve_forever, which never ran otherwise
            self.httpd.shutdown()
        self.httpd.server_close()
