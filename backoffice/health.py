"""``/healthz``: it reads the database, the vault's keys, the broker and the webhook sweeper's heartbeat, so it lives
at the top of the ladder with the rest of what reads every app."""

from django.conf import settings
from django.db import connection
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.selectors import deliveries_sweep_ran_at
from vault.selectors import key_ring_problems


class HealthView(APIView):
    """``/healthz``: can this server serve, and is the deployment around it alive.

    ``checks`` holds ``database`` and ``keys`` (the key ring matches the data: ``vault.selectors.key_ring_problems``),
    without which this server cannot serve cards, ``ok`` or ``down``; ``broker`` (a fresh connection to it, within
    ``BROKER_TIMEOUT`` seconds), ``ok`` or ``down``; and ``beat``, ``ok`` while the webhook sweeper beat sends every
    few seconds has left its heartbeat within ``BEAT_STALE_AFTER_SECONDS``, else ``stale``. A check that needs the
    database reads ``unknown`` while it is down.

    The status is 503 only when this server cannot serve (database or keys): load balancers take it out of rotation
    and nothing else. A broker or beat outage is the whole deployment's, and the API goes on serving through it (the
    work it accepts waits in the database): it answers 200 with ``status: degraded``, for monitoring to alert on,
    rather than have every load balancer drop every server at once.
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    BROKER_TIMEOUT = 1.0

    @extend_schema(
        operation_id="healthz",
        auth=[],
        summary="Health: 200 while this server can serve (status ok or degraded), 503 when it cannot",
        description=(
            "`checks`: `database` and `keys` (`ok`/`down`: 503 when either is down), `broker` (`ok`/`down`) and "
            "`beat` (`ok`/`stale`), these two reported as `status: degraded` with 200."
        ),
        responses={200: {"type": "object"}, 503: {"type": "object"}},
    )
    def get(self, request):
        checks = {"database": "ok" if self._database_answers() else "down"}
        if checks["database"] == "ok":
            checks["keys"] = "down" if key_ring_problems() else "ok"
        else:
            checks["keys"] = "unknown"
        checks["broker"] = "ok" if self._broker_answers() else "down"
        checks["beat"] = self._beat() if checks["database"] == "ok" else "unknown"
        if checks["database"] != "ok" or checks["keys"] != "ok":
            return Response({"status": "down", "checks": checks}, status=503)
        degraded = checks["broker"] != "ok" or checks["beat"] != "ok"
        return Response({"status": "degraded" if degraded else "ok", "checks": checks}, status=200)

    @staticmethod
    def _database_answers() -> bool:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any database failure is "down"
            return False

    def _broker_answers(self) -> bool:
        from config import celery_app

        timeout = self.BROKER_TIMEOUT
        try:
            # A connection of its own, not one from the pool: a pooled connection can look alive after the broker
            # went away. Connecting to Redis sends a PING; both it and the connect are bounded by the timeout.
            options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
            with celery_app.connection_for_write(connect_timeout=timeout, transport_options=options) as broker:
                broker.ensure_connection(max_retries=0)
            return True
        except Exception:  # noqa: BLE001 - whatever the transport raises, the broker is not there for us
            return False

    @staticmethod
    def _beat() -> str:
        last = deliveries_sweep_ran_at()
        fresh = last is not None and (timezone.now() - last).total_seconds() <= settings.BEAT_STALE_AFTER_SECONDS
        return "ok" if fresh else "stale"
