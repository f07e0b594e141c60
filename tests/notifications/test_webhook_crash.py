"""A worker killed with SIGKILL in the middle of a run of deliveries loses none of them.

A real Celery worker (with its beat, for the sweeper) on the real Redis broker fans 500 events out (the message sent
when they committed) and delivers them to a slow receiver on loopback; it is killed without warning part-way, a new
one is started, and every event must reach the receiver at least once: the sweeper hands over what the dead worker
had claimed or never got to.
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from notifications import services
from notifications.models import Delivery
from tests.conftest import kill_celery_worker, start_celery_worker, stop_celery_worker, wait_for

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]

EVENTS = 500
# Short leases so the drill takes seconds, not the production minutes.
FAST_RECOVERY = {
    "WEBHOOK_CLAIM_LEASE_SECONDS": "3",
    "WEBHOOK_QUEUE_LEASE_SECONDS": "5",
    "WEBHOOK_SWEEP_INTERVAL_SECONDS": "1",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
}


class SlowReceiver(ThreadingHTTPServer):
    """Answers 200 after 30 ms and remembers every webhook-id it was sent."""

    daemon_threads = True

    def __init__(self):
        self.ids: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(0.03)
                with receiver.lock:
                    receiver.ids.append(self.headers["webhook-id"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def distinct(self) -> int:
        with self.lock:
            return len(set(self.ids))


def test_a_worker_killed_mid_run_loses_no_delivery(alice):
    receiver = SlowReceiver()
    endpoint = services.endpoint_create(merchant=alice, url=f"http://127.0.0.1:{receiver.server_port}/hooks")
    # One transaction, one message: the worker makes the deliveries (with its own leases) and queues them.
    events = services.events_emit(
        merchant=alice, type="token.updated", data=[{"tokenId": f"T{i:04d}"} for i in range(EVENTS)]
    )

    first = start_celery_worker(beat=True, env=FAST_RECOVERY)
    second = None
    try:
        wait_for(lambda: receiver.distinct() >= EVENTS // 5, timeout=60)
        kill_celery_worker(first)
        killed_at = receiver.distinct()
        assert killed_at < EVENTS, "the worker finished before it could be killed: nothing was tested"

        second = start_celery_worker(beat=True, env=FAST_RECOVERY)
        wait_for(lambda: receiver.distinct() == EVENTS, timeout=120)
        wait_for(
            lambda: not Delivery.objects.filter(endpoint=endpoint).exclude(status=Delivery.SUCCEEDED).exists(),
            timeout=30,
        )
    finally:
        stop_celery_worker(first)
        if second is not None:
            stop_celery_worker(second)
        receiver.shutdown()

    assert set(receiver.ids) == {event.public_id for event in events}
    assert killed_at < EVENTS
