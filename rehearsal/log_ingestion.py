"""CloudWatch Logs ingestion delay, imitated on moto (rehearsal only).

On AWS a log event becomes searchable some seconds after the function wrote it; moto shows it
at once, so a log scan's polling is never exercised. Here every event put into a function's
log group (``/aws/lambda/<name>``) gets a "visible at" time: written + ``log_delay_s`` ± a
uniform ``log_jitter_s``, drawn per event from ``rehearsal.fidelity`` for that function. moto
keeps storing every event; filter_log_events, get_log_events and describe_log_streams (its
first/last event timestamps and ``lastIngestionTime``) leave out the events not yet visible.
An event's ``ingestionTime`` is its visible-at time.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from moto.logs import models as logs_models

from rehearsal import fidelity

LAMBDA_GROUP = "/aws/lambda/"
VISIBLE_AT = "_gangway_visible_at"
DESCRIBED_BY_EVENTS = ("firstEventTimestamp", "lastEventTimestamp", "lastIngestionTime")

_put_lock = threading.Lock()


class StreamView:
    """A log stream as a reader sees it now: the same name, only the visible events."""

    def __init__(self, stream: Any, events: list[Any]) -> None:
        self.log_stream_name = stream.log_stream_name
        self.events = events


def visible_at(event: Any) -> float:
    """Wall-clock time (s) from which a read may return the event (0: at once)."""
    return float(getattr(event, VISIBLE_AT, 0.0))


def _visible(stream: Any, now: float | None = None) -> list[Any]:
    moment = time.time() if now is None else now
    return [event for event in list(stream.events) if visible_at(event) <= moment]


def _delay(group_name: str) -> tuple[float, float]:
    if not group_name.startswith(LAMBDA_GROUP):
        return 0.0, 0.0
    settings = fidelity.for_function(group_name[len(LAMBDA_GROUP) :])
    return max(settings.log_delay_s, 0.0), max(settings.log_jitter_s, 0.0)


_original_put = logs_models.LogStream.put_log_events
_original_get = logs_models.LogStream.get_log_events
_original_filter = logs_models.LogStream.filter_log_events
_original_describe = logs_models.LogStream.to_describe_dict


def _put_log_events(self: Any, log_events: list[dict[str, Any]]) -> str:
    """Store as moto does, then stamp each new event with the time it becomes visible."""
    delay, jitter = _delay(self.log_group.name)
    with _put_lock:  # the new events are the tail of the list only if no other put interleaves
        before = len(self.events)
        token = _original_put(self, log_events)
        added = self.events[before:]
    if delay <= 0 and jitter <= 0:
        return token
    written = time.time()
    for event in added:
        when = written + max(delay + random.uniform(-jitter, jitter), 0.0)
        setattr(event, VISIBLE_AT, when)
        event.ingestion_time = int(when * 1000)
    return token


def _get_log_events(self: Any, *args: Any, **kwargs: Any) -> Any:
    """get_log_events over the visible events only (pagination tokens stay consistent)."""
    return _original_get(StreamView(self, _visible(self)), *args, **kwargs)


def _filter_log_events(self: Any, *args: Any, **kwargs: Any) -> Any:
    """One stream's part of filter_log_events, over the visible events only."""
    return _original_filter(StreamView(self, _visible(self)), *args, **kwargs)


def _to_describe_dict(self: Any) -> dict[str, Any]:
    """describe_log_streams' entry as of the visible events: timestamps, lastIngestionTime."""
    described = dict(_original_describe(self))
    visible = _visible(self)
    for key in DESCRIBED_BY_EVENTS:
        described.pop(key, None)
    if not visible:
        described.pop("uploadSequenceToken", None)
        return described
    stamps = [event.timestamp for event in visible]
    described.update(
        firstEventTimestamp=min(stamps),
        lastEventTimestamp=max(stamps),
        lastIngestionTime=max(int(event.ingestion_time) for event in visible),
        uploadSequenceToken=str(self.upload_sequence_token),
    )
    return described


def install() -> None:
    """Apply the ingestion-delay patches to moto's CloudWatch Logs, in this process."""
    logs_models.LogStream.put_log_events = _put_log_events
    logs_models.LogStream.get_log_events = _get_log_events
    logs_models.LogStream.filter_log_events = _filter_log_events
    logs_models.LogStream.to_describe_dict = _to_describe_dict
