"""Webhook delivery that never loses an event.

The outbox: ``event_emit`` writes the event, and nothing else, in the caller's transaction, so an event exists
exactly when the change that caused it committed, and a request pays for one insert. After commit a message (one
per ``events_emit`` call, for a merchant with an enabled endpoint) asks a worker to fan the new events out
(``events_fan_out``): one delivery per subscribed endpoint, written in the transaction that marks the event fanned
out, then queued to Celery, a batch of ids per message; a trickle (one batch at most) is written claimed and sent by
the worker that fanned it out, sparing a second trip through the broker. If a message is lost
(broker down, process killed), nothing is: the event says it is not fanned out yet, the delivery row says it is due
(``next_attempt_at``), and the sweeper, run by beat every few seconds, fans out and queues whatever is left.

A worker first claims the due deliveries of its message, filled up with other due deliveries of the same endpoints,
with one conditional UPDATE (a lease, ``claimed_until``, under a random ``claim``), so duplicate messages,
redelivered messages and the sweeper never make two workers send the same attempt at once; a worker killed
mid-batch leaves leases that expire, and the sweeper hands those deliveries to another worker. Delivery is therefore
at least once, with a stable ``webhook-id``. The claimed deliveries of one endpoint go out one after the other over
one kept-alive connection, and the attempts are recorded with a few statements for the whole batch; endpoint health
is written only when it changes, with conditional updates rather than a lock on the endpoint row, so workers sending
to one endpoint never take turns.

The retry schedule (``WEBHOOK_RETRY_SCHEDULE``, seconds after each failed attempt, ±20 % jitter) lives in
``next_attempt_at``, not in broker countdowns. A ``Retry-After`` answer replaces the scheduled wait, bounded to
[1 s, 24 h]. 410 Gone disables the endpoint. After the last scheduled attempt the delivery is FAILED (a dead
letter) and can be replayed. An endpoint that has failed without a single success for 5 days is disabled.
"""

from notifications.services.attempts import (
    claimed_deliveries_attempt,
    deliveries_attempt,
    delivery_attempt,
    event_body,
)
from notifications.services.endpoints import (
    SECRET_GRACE,
    UNSET,
    deliveries_replay,
    delivery_retry_now,
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_replay_failed,
    endpoint_rotate_secret,
    endpoint_update,
    event_redeliver,
)
from notifications.services.outbox import (
    SWEEP_PAGE,
    deliveries_queue,
    deliveries_sweep,
    event_emit,
    event_rows,
    events_emit,
    events_fan_out,
    events_new,
    events_stored,
    heartbeat_record,
)

__all__ = [
    "SECRET_GRACE",
    "SWEEP_PAGE",
    "UNSET",
    "claimed_deliveries_attempt",
    "deliveries_attempt",
    "deliveries_queue",
    "deliveries_replay",
    "deliveries_sweep",
    "delivery_attempt",
    "delivery_retry_now",
    "endpoint_create",
    "endpoint_delete",
    "endpoint_disable",
    "endpoint_replay_failed",
    "endpoint_rotate_secret",
    "endpoint_update",
    "event_body",
    "event_emit",
    "event_redeliver",
    "events_emit",
    "events_fan_out",
    "event_rows",
    "events_new",
    "events_stored",
    "heartbeat_record",
]
