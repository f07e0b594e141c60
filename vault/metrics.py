"""The vault's metrics: what tokenize, detokenize and forwards end in, counted where the service decides it, and
whether this process can reach its KEK provider, read at scrape time.

Labels come from the fixed sets below, never from a request: no card number, token id, merchant, destination or
URL ever becomes a label value (a label is kept for ever in the time series database and shown to every operator).
Each counter's children are made here, once: a scrape shows every outcome from the start (at 0), so ``rate()`` and
the alerts see the first one, and the services' cost is one increment.

**The KEK provider** (``tokenvault_kek_available{provider}``): 0 while ``vault.keys`` knows of an outage (the
provider failed within ``KEK_RETRY_SECONDS``, so the ring does not ask it again either); otherwise the provider's own
answer to a wrap of a throwaway key, asked at most every ``KEK_PROBE_SECONDS`` per provider and process, so that a
scrape is not an HSM round trip. The question runs in a thread of its own, its answer waited for ``KEK_TIMEOUT``
seconds at most (``kek_ask``, which ``/readyz`` asks too): an HSM that hangs reads 0 at once, and no other question
is started behind the stuck one.
"""

import logging
import os
import threading
import time
from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily

from core.metrics import counter
from vault.kek import KekUnavailable, kek_provider
from vault.keys import kek_outage_known

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------------------
# Counted by the services
# ------------------------------------------------------------------------------------------------------------
TOKENIZE_OUTCOMES = ("created", "matched", "conflict", "namespace_full")
TOKENIZE = counter(
    "tokenize",
    "Cards tokenized (API, browser capture), by outcome: created (201), matched (200), conflict (409), "
    "namespace_full (the namespace's card limit refused it). A replayed idempotent answer is not counted again.",
    ["outcome"],
)
TOKENIZED = {outcome: TOKENIZE.labels(outcome=outcome) for outcome in TOKENIZE_OUTCOMES}

# What a detokenize attempt's answer status says about it, for attempts refused before the card was read.
DETOKENIZE_REFUSED = {401: "denied", 403: "denied", 404: "not_found", 429: "rate_limited", 503: "unavailable"}
DETOKENIZE_RESULTS = ("released", "denied", "not_found", "rate_limited", "unavailable", "failed")
DETOKENIZE = counter(
    "detokenize",
    "Detokenize attempts, by result: released (the card was returned), denied (no key or scope), not_found, "
    "rate_limited, unavailable (keys or KEK provider not available), failed (any other error).",
    ["result"],
)
DETOKENIZED = {result: DETOKENIZE.labels(result=result) for result in DETOKENIZE_RESULTS}

FORWARD_RESULTS = ("ok", "destination_error", "unreachable", "timeout", "refused")
FORWARDS = counter(
    "forwards",
    "Forwards, by result: ok (the destination answered 2xx), destination_error (it answered otherwise), "
    "unreachable (refused connection, TLS or network failure), timeout (no answer in time), refused (nothing was "
    "sent: scope, rate limit, template, unknown token or destination, ...).",
    ["result"],
)
FORWARDED = {result: FORWARDS.labels(result=result) for result in FORWARD_RESULTS}


def detokenize_refused_result(status: int) -> str:
    """The ``result`` label of a detokenize attempt that released nothing and answered ``status``."""
    return DETOKENIZE_REFUSED.get(status, "failed")


def forward_result(status: int) -> str:
    """The ``result`` label of a forward whose destination answered ``status``."""
    return "ok" if 200 <= status < 300 else "destination_error"


# ------------------------------------------------------------------------------------------------------------
# Read at scrape time
# ------------------------------------------------------------------------------------------------------------
KEK_PROBE_SECONDS = 5.0
PROBE_KEY_BYTES = 32


class _KekProbe:
    """The provider's last answer to a wrap, per provider object (new settings make a new one, as a new process)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._provider = None
        self._available = False
        self._at = float("-inf")

    def available(self, provider) -> bool:
        with self._lock:
            if provider is self._provider and time.monotonic() - self._at < KEK_PROBE_SECONDS:
                return self._available
        try:
            provider.wrap(os.urandom(PROBE_KEY_BYTES))
            available = True
        except KekUnavailable:
            available = False  # the provider logs why (without key material), once per probe at most
        except Exception as exc:  # noqa: BLE001 - a provider's bug must not fail every scrape: unavailable
            logger.error("the KEK provider's probe failed: unexpected %s", type(exc).__name__)
            available = False
        with self._lock:
            self._provider, self._available, self._at = provider, available, time.monotonic()
        return available


_probe = _KekProbe()


def _kek_asked() -> tuple[str, bool]:
    """This process's KEK provider's name and whether it can wrap and unwrap keys now, without a bound on the time
    the provider takes. A provider that cannot even be made from the settings is unavailable."""
    try:
        provider = kek_provider()
    except Exception:  # noqa: BLE001 - ImproperlyConfigured, or a custom provider failing to start: not available
        return _configured_name(), False
    name = getattr(provider, "name", "custom")
    if kek_outage_known():
        return name, False
    return name, _probe.available(provider)


def _configured_name() -> str:
    return settings.VAULT_KEK_PROVIDER if "." not in settings.VAULT_KEK_PROVIDER else "custom"


KEK_TIMEOUT = 1.0


class KekAsk:
    """A question to the KEK provider (``_kek_asked``), asked in a thread of its own as soon as it is made."""

    last_name = ""  # the provider's name as the last question answered it

    def __init__(self):
        self.at = time.monotonic()
        self.answered = threading.Event()
        self.name, self.available = "", False
        self.thread = threading.Thread(target=self._run, name="kek-ask", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.name, self.available = _kek_asked()
        KekAsk.last_name = self.name
        self.answered.set()

    def answer(self) -> tuple[str, bool]:
        """The provider's name and whether it can wrap and unwrap keys: no when it has not answered within
        ``KEK_TIMEOUT`` seconds of the question (named then as the question before answered, or by the settings)."""
        self.thread.join(timeout=max(0.0, self.at + KEK_TIMEOUT - time.monotonic()))
        if self.answered.is_set():
            return self.name, self.available
        return KekAsk.last_name or _configured_name(), False


_kek_lock = threading.Lock()
_kek_ask: KekAsk | None = None


def kek_ask() -> KekAsk:
    """Ask whether this process's KEK provider wraps and unwraps keys now (``KekAsk.answer`` waits for the answer):
    while a question is stuck in the provider, it is returned rather than a new one started behind it."""
    global _kek_ask
    with _kek_lock:
        # Answered (its thread may not have ended yet: its answer is still an old one) or ended without an answer.
        if _kek_ask is None or _kek_ask.answered.is_set() or not _kek_ask.thread.is_alive():
            _kek_ask = KekAsk()
        return _kek_ask


def kek_available() -> tuple[str, bool]:
    """This process's KEK provider's name and whether it can wrap and unwrap keys now, within ``KEK_TIMEOUT`` seconds
    (see the module's docstring)."""
    return kek_ask().answer()


class StateCollector:
    """The vault's state gauges, computed at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        name, available = kek_available()
        kek = GaugeMetricFamily(
            "tokenvault_kek_available",
            "Whether this process can reach its KEK provider now (1) or not (0): card operations needing a key not "
            "in memory answer 503 meanwhile.",
            labels=["provider"],
        )
        kek.add_metric([name], 1 if available else 0)
        yield kek
