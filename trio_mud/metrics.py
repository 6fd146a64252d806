"""The server's numbers for Prometheus (OpenMetrics): ``/metrics``.

One collector reads the portal when scraped, so counting costs nothing on
the hot paths beyond the integers the portal keeps anyway. The server
process's numbers (failed logins, input errors) reach the portal as
:class:`~trio_mud.messages.Counters` and are kept there across reloads and
crashes; command latency is measured by the portal, from the moment a
command leaves for the handler to the moment it is done.

Every metric is listed in ``docs/operations.md``.

Resource handling:
    :func:`render` builds the whole text on each scrape (a few hundred lines;
    about a millisecond with thousands of sessions).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import (
    CONTENT_TYPE_LATEST as OPENMETRICS_TYPE,
)
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)
from prometheus_client.registry import Collector

from .generations import LatencyHistogram

if TYPE_CHECKING:
    from .nursery_portal import Portal

__all__ = ["PortalCollector", "render"]

#: Counters the server process sends (by name) and their metric.
HANDLER_COUNTERS = {
    "failed_logins": ("trio_mud_failed_logins", "Logins refused for a wrong name or password."),
    "input_errors": (
        "trio_mud_input_errors",
        "Inputs whose input function raised (the player got one line, the log the traceback).",
    ),
}


class PortalCollector(Collector):
    """Everything the portal knows, read at scrape time."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def collect(self) -> Iterator[Metric]:
        portal = self.portal
        stats = portal.statistics()

        sessions = GaugeMetricFamily(
            "trio_mud_sessions",
            "Sessions open now, by protocol and by state (connection screen or logged in).",
            labels=["protocol", "state"],
        )
        by_kind: dict[tuple[str, str], int] = {}
        queued: list[int] = []
        for conn in portal.connections.values():
            state = "logged_in" if conn.session.logged_in else "connection_screen"
            key = (conn.session.protocol_key, state)
            by_kind[key] = by_kind.get(key, 0) + 1
            queued.append(conn.queued)
        for (protocol, state), count in sorted(by_kind.items()):
            sessions.add_metric([protocol, state], count)
        yield sessions

        accepted = CounterMetricFamily(
            "trio_mud_connections_accepted",
            "Connections that became sessions, by protocol.",
            labels=["protocol"],
        )
        for protocol, count in sorted(portal.accepted_by_protocol.items()):
            accepted.add_metric([protocol], count)
        yield accepted
        refused = CounterMetricFamily(
            "trio_mud_connections_refused",
            "Connections refused, by reason (full, banned, per_address, rate, tls_handshake,"
            " proxy_header).",
            labels=["reason"],
        )
        for reason, count in sorted(portal.refused_by_reason.items()):
            refused.add_metric([reason], count)
        yield refused

        received = CounterMetricFamily(
            "trio_mud_received_bytes",
            "Bytes from clients, by protocol: on the wire, and after MCCP3 inflation.",
            labels=["protocol", "stage"],
        )
        sent = CounterMetricFamily(
            "trio_mud_sent_bytes",
            "Bytes to clients, by protocol: before MCCP2 compression, and on the wire.",
            labels=["protocol", "stage"],
        )
        for protocol, (wire_in, wire_out, plain_in, plain_out) in sorted(portal.traffic().items()):
            received.add_metric([protocol, "wire"], wire_in)
            received.add_metric([protocol, "uncompressed"], plain_in)
            sent.add_metric([protocol, "wire"], wire_out)
            sent.add_metric([protocol, "uncompressed"], plain_out)
        yield received
        yield sent

        queue = GaugeMetricFamily(
            "trio_mud_output_queue_depth",
            "Messages waiting in clients' output queues: all of them, and the longest one.",
            labels=["of"],
        )
        queue.add_metric(["total"], sum(queued))
        queue.add_metric(["longest"], max(queued, default=0))
        yield queue
        yield CounterMetricFamily(
            "trio_mud_slow_client_disconnects",
            "Clients disconnected for not reading their output (queue full or write stalled).",
            value=stats.slow_client_disconnects,
        )
        yield GaugeMetricFamily(
            "trio_mud_pending_input",
            "Messages waiting for a handler (during a reload, say).",
            value=stats.pending_input,
        )

        generations = portal.generations
        commands = HistogramMetricFamily(
            "trio_mud_command_latency_seconds",
            "Typed commands and out-of-band input, from leaving the portal to handled.",
        )
        histogram = generations.command_latency
        commands.add_metric([], _buckets(histogram), sum_value=histogram.total)
        yield commands
        yield CounterMetricFamily(
            "trio_mud_commands",
            "Commands handled (typed lines and out-of-band input).",
            value=sum(histogram.counts),
        )
        for name, (metric, text) in HANDLER_COUNTERS.items():
            yield CounterMetricFamily(metric, text, value=portal.counters.get(name, 0))

        reloads = CounterMetricFamily(
            "trio_mud_reloads", "Reloads, by outcome.", labels=["outcome"]
        )
        reloads.add_metric(["ok"], generations.reloads_ok)
        reloads.add_metric(["failed"], generations.reloads_failed)
        yield reloads
        durations = HistogramMetricFamily(
            "trio_mud_reload_duration_seconds", "How long reloads took."
        )
        histogram = generations.reload_durations
        durations.add_metric([], _buckets(histogram), sum_value=histogram.total)
        yield durations
        yield CounterMetricFamily(
            "trio_mud_server_restarts",
            "Handler generations started after the one before died.",
            value=generations.restarts,
        )
        yield CounterMetricFamily(
            "trio_mud_poisoned_messages",
            "Messages dropped because two handlers in a row died with them in hand.",
            value=stats.poisoned_messages,
        )
        yield GaugeMetricFamily(
            "trio_mud_handler_live", "1 while a handler takes input.", value=int(stats.live)
        )
        yield GaugeMetricFamily(
            "trio_mud_start_time_seconds",
            "When the portal started (Unix time).",
            value=portal.started,
        )


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip([*histogram.bounds, float("inf")], histogram.counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return buckets


def registry_for(portal: Portal) -> CollectorRegistry:
    """A Prometheus registry holding ``portal``'s collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector(portal))
    return registry


def render(portal: Portal, *, openmetrics: bool = False) -> tuple[bytes, str]:
    """The exposition text and its content type (OpenMetrics when asked for)."""
    registry = registry_for(portal)
    if openmetrics:
        return generate_openmetrics(registry), OPENMETRICS_TYPE  # type: ignore[no-untyped-call]
    return generate_latest(registry), "text/plain; version=0.0.4; charset=utf-8"
