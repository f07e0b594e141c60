"""One module per benchmark, each with ``run(ctx) -> dict``: its figures, its reference's, the ratio and target.

A result has ``status``: ``ok`` (figures measured; ``met`` says whether the target was), ``skipped`` (with a
``reason``) or ``error`` (the runner fills that in when a benchmark raises).
"""

import dataclasses
import os
from dataclasses import dataclass, field

from benchmarks.harness import Run


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is. ``full`` is what the issue asks for; ``smoke`` proves every path in seconds.
    Each can be overridden by ``BENCH_<NAME>`` in the environment (``BENCH_RETOKENIZE_LARGE=100000``)."""

    wrk_seconds: float
    wrk_rounds: int
    wrk_warmup: float
    wrk_connections: int
    retokenize_small: int
    retokenize_large: int
    import_small: int
    import_large: int
    batch: int
    issuer_rate: int
    webhook: int
    webhook_latency_seconds: float
    webhook_latency_rate: float
    crypto: int
    rotate_kek_small: int
    rotate_kek_large: int
    timeout: float  # how long a queue-draining benchmark (batch, webhook) may take before it reports what it got


SCALES = {
    "full": Sizes(
        wrk_seconds=5,
        wrk_rounds=2,
        wrk_warmup=2,
        wrk_connections=16,
        retokenize_small=10_000,
        retokenize_large=1_000_000,
        import_small=100_000,
        import_large=1_000_000,
        batch=10_000,
        issuer_rate=1000,
        webhook=10_000,
        webhook_latency_seconds=20,
        webhook_latency_rate=100,
        crypto=50_000,
        rotate_kek_small=10_000,
        rotate_kek_large=1_000_000,
        timeout=600,
    ),
    "smoke": Sizes(
        wrk_seconds=1,
        wrk_rounds=1,
        wrk_warmup=0,
        wrk_connections=16,
        retokenize_small=100,
        retokenize_large=1_000,
        import_small=100,
        import_large=1_000,
        batch=40,
        issuer_rate=1000,
        webhook=40,
        webhook_latency_seconds=0.5,
        webhook_latency_rate=40,
        crypto=2_000,
        rotate_kek_small=100,
        rotate_kek_large=2_000,
        timeout=60,
    ),
}


def sizes_for(scale: str) -> Sizes:
    sizes = SCALES[scale]
    overrides = {}
    for f in dataclasses.fields(Sizes):
        value = os.environ.get(f"BENCH_{f.name.upper()}")
        if value:
            overrides[f.name] = f.type(value) if f.type in (int, float) else value
    return dataclasses.replace(sizes, **overrides)


@dataclass
class Context:
    run: Run
    sizes: Sizes
    template_db: str
    main_db: str
    cores: int
    salt: int  # 0-999, different per run: no two runs' cards collide in a kept database
    _prefixes: int = field(default=0)

    def database(self, label: str) -> str:
        """A fresh, migrated scratch database (dropped at the end of the run)."""
        name = f"{self.template_db.removesuffix('_template')}_{label}"
        self.run.create_database(name, template=self.template_db)
        return name

    def prefix(self) -> str:
        """Six leading digits (a Visa BIN) that no other card of this run starts with."""
        self._prefixes += 1
        if self._prefixes > 99:
            raise RuntimeError("out of card prefixes for this run")
        return f"4{self.salt:03d}{self._prefixes:02d}"


def verdict(value: float | None, *, at_least: float | None = None, at_most: float | None = None) -> bool | None:
    if value is None:
        return None
    if at_least is not None:
        return value >= at_least
    return value <= at_most
