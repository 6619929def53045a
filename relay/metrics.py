"""The relay's Prometheus metrics: every name, type and label in one place.

Each App has a registry of its own (never prometheus_client's global one): several relays run in
one test process, and each instance reports only what it did itself. The shells count with one
call each (`app.metrics.inbound(outcome)`, `delivery(...)`, `notice_sent(...)`, `api_request(...)`,
`smtp_data()`, `webhook(...)`), so the wording of a metric never spreads through the code.

What the database knows (cases, the outbox and the webhooks by state, the oldest pending delivery
and webhook, whether the webhook endpoint is stopped) is not
counted here but read at scrape time: the /metrics route reads a Census off the event loop (one
grouped query per table) and `render` exposes it next to the counters. Those gauges are therefore
the same on every instance that shares a database; counters are per process and start at zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from relay.core.outcomes import Outcome
from relay.core.vocabulary import DeliveryState, Mail, State, WebhookState

# `*_created` series would double what every scrape carries, for a timestamp nobody here reads.
# The switch is process-wide; the relay is the only user of prometheus_client in its process.
disable_created_metrics()  # type: ignore[no-untyped-call]  # the library leaves it unannotated

# what an inbound message (or one RCPT of it) can end as; RECIPIENT_OK is a step, not an end
INBOUND_OUTCOMES = tuple(o.value for o in Outcome if o is not Outcome.RECIPIENT_OK)
DELIVERY_RESULTS = ("sent", "deferred", "failed")
NOTICE_KINDS = tuple(m.value for m in Mail if m.is_notice)
# the outbox states a scrape reports: what is still to do, and what ended badly (sent rows pile
# up for ever and say nothing about the relay's health)
OUTBOX_STATES = (DeliveryState.QUEUED.value, DeliveryState.SENDING.value, DeliveryState.FAILED.value)
CASE_STATES = (*(s.value for s in State), "declined")
# webhooks still to send and those given up on (sent ones pile up like sent deliveries)
WEBHOOK_STATES = (WebhookState.PENDING.value, WebhookState.SENDING.value, WebhookState.FAILED.value)
# what one webhook attempt came to: `stopped` is a 410 Gone that stopped the endpoint
WEBHOOK_RESULTS = ("sent", "deferred", "failed", "stopped")
# a client may send any token as a method: others are counted as one label value
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

SMTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Census:
    """What the database says at one scrape: cases and deliveries by state, the oldest pending age."""

    cases: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)
    oldest_pending_seconds: float = 0.0
    webhooks: dict[str, int] = field(default_factory=dict)
    webhooks_oldest_pending_seconds: float = 0.0
    webhooks_stopped: bool = False


class Metrics:
    """One relay's metrics, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.inbound_outcomes = Counter(
            "relay_inbound_outcomes", "SMTP answers that end a transaction or refuse a recipient, by outcome "
            "(relay/core/outcomes.py)", ["outcome"], registry=r)
        self.smtp_data_seconds = Histogram(
            "relay_smtp_data_seconds", "Time from the end of DATA to the answer: checking, sanitising and "
            "storing a message", buckets=SMTP_BUCKETS, registry=r)
        self.deliveries = Counter(
            "relay_deliveries", "Delivery attempts of the outbox worker by kind of mail and result",
            ["kind", "result"], registry=r)
        self.notices_sent = Counter(
            "relay_notices_sent", "Notices (the relay's own mail) delivered, by kind", ["kind"], registry=r)
        self.api_requests = Counter(
            "relay_api_requests", "HTTP API requests by method, route template and status",
            ["method", "route", "status"], registry=r)
        self.api_seconds = Histogram(
            "relay_api_request_seconds", "HTTP API request time by method and route template",
            ["method", "route"], buckets=API_BUCKETS, registry=r)
        self.webhook_attempts = Counter(
            "relay_webhook_attempts", "Webhook attempts of this instance by result (sent, deferred, failed for "
            "good, stopped by a 410)", ["result"], registry=r)
        self.sender_auth = Counter(
            "relay_sender_auth", "Messages to a relay address whose sender was checked, by DMARC result "
            "(pass, fail, none, temperror) and what the relay did (accepted or refused)", ["dmarc", "action"],
            registry=r)
        # known label values start at 0, so a rate over the first event is right
        for outcome in INBOUND_OUTCOMES:
            self.inbound_outcomes.labels(outcome)
        for kind in (m.value for m in Mail):
            for result in DELIVERY_RESULTS:
                self.deliveries.labels(kind, result)
        for kind in NOTICE_KINDS:
            self.notices_sent.labels(kind)
        for result in WEBHOOK_RESULTS:
            self.webhook_attempts.labels(result)
        for dmarc in ("pass", "fail", "none", "temperror"):
            for action in ("accepted", "refused"):
                self.sender_auth.labels(dmarc, action)

    def inbound(self, outcome: Outcome) -> None:
        self.inbound_outcomes.labels(outcome.value).inc()

    def sender_checked(self, dmarc: str, refused: bool) -> None:
        """One message's sender authentication (no domain as a label: senders would make them endless)."""
        self.sender_auth.labels(dmarc, "refused" if refused else "accepted").inc()

    def smtp_data(self) -> AbstractContextManager[object]:
        """Times one DATA command's processing (a `with` block)."""
        return self.smtp_data_seconds.time()

    def delivery(self, kind: str, state: str) -> None:
        """One attempt's result, from the state it leaves the delivery in (queued again: deferred)."""
        result = state if state in (DeliveryState.SENT.value, DeliveryState.FAILED.value) else "deferred"
        self.deliveries.labels(kind, result).inc()

    def webhook(self, result: str) -> None:
        """One webhook attempt's result (one of WEBHOOK_RESULTS)."""
        self.webhook_attempts.labels(result).inc()

    def notice_sent(self, kind: str) -> None:
        self.notices_sent.labels(kind).inc()

    def api_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """The Envelope's observe hook (relay.api.middleware): one finished request."""
        method = method if method in METHODS else "other"
        self.api_requests.labels(method, route, str(status)).inc()
        self.api_seconds.labels(method, route).observe(seconds)

    def render(self, census: Census | None, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) of one scrape, in the format the scraper's Accept header asks for
        (Prometheus text by default). Without a census (the database did not answer) the database
        gauges are left out and `relay_database_up` says 0."""
        encoder, content_type = choose_encoder(accept)
        return encoder(_Scrape(self.registry, census)), content_type


class _Scrape(Collector):
    """The registry's metrics and one census's gauges, as one collector for one scrape: no state is
    kept between scrapes, so two scrapes at once cannot mix their censuses."""

    def __init__(self, registry: CollectorRegistry, census: Census | None) -> None:
        self.registry, self.census = registry, census

    def collect(self) -> Iterable[Metric]:
        yield from self.registry.collect()
        up = GaugeMetricFamily("relay_database_up", "1 when this scrape read the database gauges, 0 when the "
                               "database did not answer (they are left out)")
        up.add_metric([], 0.0 if self.census is None else 1.0)
        yield up
        if self.census is None:
            return
        yield _by_state("relay_cases", "Cases in the database by state", CASE_STATES, self.census.cases)
        yield _by_state("relay_outbox_deliveries", "Deliveries in the outbox by state (queued, sending, failed)",
                        OUTBOX_STATES, self.census.outbox)
        oldest = GaugeMetricFamily("relay_outbox_oldest_pending_age_seconds",
                                   "Age of the oldest queued or sending delivery; 0 when none is pending")
        oldest.add_metric([], self.census.oldest_pending_seconds)
        yield oldest
        yield _by_state("relay_webhooks", "Webhooks in the database by state (pending, sending, failed)",
                        WEBHOOK_STATES, self.census.webhooks)
        age = GaugeMetricFamily("relay_webhooks_oldest_pending_age_seconds",
                                "Age of the oldest pending or sending webhook; 0 when none is pending")
        age.add_metric([], self.census.webhooks_oldest_pending_seconds)
        yield age
        stopped = GaugeMetricFamily("relay_webhooks_stopped", "1 while the webhook endpoint is stopped (it "
                                    "answered 410 Gone; `relay webhooks enable` resumes)")
        stopped.add_metric([], 1.0 if self.census.webhooks_stopped else 0.0)
        yield stopped


def _by_state(name: str, documentation: str, known: Iterable[str], counts: dict[str, int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["state"])
    for state in dict.fromkeys([*known, *sorted(counts)]):
        gauge.add_metric([state], float(counts.get(state, 0)))
    return gauge
