"""``/healthz`` and ``/readyz``: what load balancers and orchestrators ask of each server.

Two questions, two answers. *Liveness* (``/healthz``): does this process answer at all; if not, restart it. It asks
nothing of anything else, so that an outage of the database, the broker or the HSM never gets every server of the
deployment restarted at once (which would cure nothing and lose the keys each holds in memory). *Readiness*
(``/readyz``): can this server serve requests now; if not, take it out of rotation. It reads the database, the
vault's keys, the KEK provider, the migrations, the broker and the webhook sweeper's heartbeat, so it lives at the
top of the ladder with the rest of what reads every app.
"""

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.dispatch import receiver
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.selectors import deliveries_sweep_ran_at
from vault.metrics import kek_ask
from vault.selectors import key_ring_problems

# What each check may read: the schema of the answers below, for the OpenAPI document and for whoever parses them.
CHECKS = {
    "database": ["ok", "down"],
    "keys": ["ok", "down", "unknown"],
    "kek": ["ok", "down"],
    "migrations": ["ok", "pending", "unknown"],
    "broker": ["ok", "down"],
    "beat": ["ok", "stale", "unknown"],
}
LIVE_SCHEMA = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
    "required": ["status"],
    "additionalProperties": False,
}


def ready_schema(*statuses: str) -> dict:
    """``/readyz``'s answer when its ``status`` is one of ``statuses``."""
    return {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": list(statuses)},
            "checks": {
                "type": "object",
                "properties": {name: {"type": "string", "enum": values} for name, values in CHECKS.items()},
                "required": list(CHECKS),
                "additionalProperties": False,
            },
        },
        "required": ["status", "checks"],
        "additionalProperties": False,
    }


class LiveView(APIView):
    """``/healthz``: the process answers. No database, broker or HSM is asked: a dependency's outage is
    ``/readyz``'s to report, and restarting processes would not cure it."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="healthz",
        auth=[],
        summary="Liveness: 200 while this process answers",
        description="Asks nothing of the database, the broker or the HSM: for a process supervisor's liveness probe.",
        responses={200: OpenApiResponse(LIVE_SCHEMA)},
    )
    def get(self, request):
        return Response({"status": "ok"})


class ReadyView(APIView):
    """``/readyz``: can this server serve, and is the deployment around it alive.

    ``checks`` holds ``database`` and ``keys`` (the key ring matches the data: ``vault.selectors.key_ring_problems``),
    without which this server cannot serve cards, ``ok`` or ``down``; ``migrations``, ``ok`` when every migration of
    this server's code is applied to the database, else ``pending``; ``kek``, ``ok`` while the KEK provider can wrap and
    unwrap keys (``vault.metrics.kek_ask``: within ``KEK_TIMEOUT`` seconds, asked at most every few seconds), else
    ``down``; ``broker`` (a fresh connection to it, within ``BROKER_TIMEOUT`` seconds), ``ok`` or ``down``; and
    ``beat``, ``ok`` while the webhook sweeper beat sends every few seconds has left its heartbeat within
    ``BEAT_STALE_AFTER_SECONDS``, else ``stale``. A check that needs the database reads ``unknown`` while it is down.

    The status is 503 only when this server cannot serve: the database or the keys down, or migrations pending (this
    code would query columns and tables the database does not have yet: a new release's server joins once
    ``migrate`` has run, and an older one stays in, the database's newer migrations being no concern of its code).
    Load balancers take it out of rotation and nothing else. A broker or beat outage is the whole deployment's, and
    the API goes on serving through it (the work it accepts waits in the database): it answers 200 with
    ``status: degraded``, for monitoring to alert on, rather than have every load balancer drop every server at once.
    The KEK provider out of reach is the same: every server shares it, and what a server holds in memory keeps
    serving cards (``vault.keys``); a server that cannot serve cards without it reads ``keys: down`` already.
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    BROKER_TIMEOUT = 1.0

    @extend_schema(
        operation_id="readyz",
        auth=[],
        summary="Readiness: 200 while this server can serve (status ok or degraded), 503 when it cannot",
        description=(
            "`checks`: `database`, `keys` (`ok`/`down`) and `migrations` (`ok`/`pending`): 503 when any is not ok; "
            "`kek` (`ok`/`down`), `broker` (`ok`/`down`) and `beat` (`ok`/`stale`), these three reported as "
            "`status: degraded` with 200. A check that needs the database reads `unknown` while it is down."
        ),
        responses={200: OpenApiResponse(ready_schema("ok", "degraded")), 503: OpenApiResponse(ready_schema("down"))},
    )
    def get(self, request):
        checks = {"database": "ok" if self._database_answers() else "down"}
        up = checks["database"] == "ok"
        checks["keys"] = self._keys() if up else "unknown"
        # After the keys, which may have just met the provider's outage; answered in a thread of its own meanwhile.
        kek = kek_ask()
        checks["migrations"] = self._migrations() if up else "unknown"
        checks["broker"] = "ok" if self._broker_answers() else "down"
        checks["beat"] = self._beat() if up else "unknown"
        checks["kek"] = "ok" if kek.answer()[1] else "down"
        checks = {name: checks[name] for name in CHECKS}  # in the documented order
        if any(checks[name] != "ok" for name in ("database", "keys", "migrations")):
            return Response({"status": "down", "checks": checks}, status=503)
        degraded = any(checks[name] != "ok" for name in ("kek", "broker", "beat"))
        return Response({"status": "degraded" if degraded else "ok", "checks": checks}, status=200)

    @staticmethod
    def _database_answers() -> bool:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any database failure is "down"
            return False

    @staticmethod
    def _keys() -> str:
        try:
            return "down" if key_ring_problems() else "ok"
        except DatabaseError:  # the database answers, but not with the keys' table (a schema not migrated yet)
            return "unknown"

    @staticmethod
    def _migrations() -> str:
        try:
            return "ok" if migrations_applied() else "pending"
        except DatabaseError:  # the database went away since it answered
            return "unknown"

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


# ------------------------------------------------------------------------------------------------------------
# Migrations: asked until they are all applied, then never again by this process
# ------------------------------------------------------------------------------------------------------------
_migrated = False


def migrations_applied() -> bool:
    """Whether every migration of this code is recorded as applied in the database (the plan ``migrate`` would run
    is empty): the migration files read and one query, about 10 ms. A yes is kept for the process's life, since its
    code does not change under it; a no is asked again next time, so a server started before ``migrate`` ran joins
    once it has. Raises DatabaseError when the database cannot be read."""
    global _migrated
    if not _migrated:
        executor = MigrationExecutor(connection)
        _migrated = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _migrated


@receiver(setting_changed)
def _reset_migrated(*, setting, **kwargs):
    # Other migration modules or another database make other code, or another schema, to compare: as a new process.
    global _migrated
    if setting in ("MIGRATION_MODULES", "DATABASES"):
        _migrated = False
