"""What counting costs: ``POST /tokens`` with a new card per request on a gunicorn that counts (METRICS_ENABLED, its
workers writing to a PROMETHEUS_MULTIPROC_DIR of the run's, as production runs) beside one that counts nothing
(METRICS_ENABLED false: no request middleware, every app's counters inert), wrk sending to each in turn.

A tokenize costs a few counter increments and a histogram observation, each a write to a memory-mapped file under
a lock: microseconds beside the card's encryption and its rows. The ratio with / without should be about 1 (target
>= 0.97). The result also says how many tokenizes the folder counted, which must be at least the 201s wrk saw.
"""

import glob
import shutil
import tempfile
from pathlib import Path

from prometheus_client import multiprocess

from benchmarks import seed
from benchmarks.cases import Context, verdict
from benchmarks.harness import alternate

TARGET = 0.97
SIDES = {"with": "metrics-on-gunicorn", "without": "metrics-off-gunicorn"}


def tokenizes_counted(directory: Path) -> int:
    """``POST /tokens`` answered 2xx, as the folder's files add up (what /metrics would show)."""
    metrics = multiprocess.MultiProcessCollector.merge(glob.glob(str(directory / "*.db")))
    wanted = {"route": "tokens", "method": "POST", "status_class": "2xx"}
    return int(
        sum(
            sample.value
            for metric in metrics
            for sample in metric.samples
            if sample.name == "tokenvault_http_requests_total" and sample.labels == wanted
        )
    )


def run(ctx: Context) -> dict:
    s = ctx.sizes
    _, api_key = seed.merchant_with_key("Bench metrics")
    directory = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    try:
        envs = {
            SIDES["with"]: {"METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(directory)},
            SIDES["without"]: {"METRICS_ENABLED": "false"},
        }
        with ctx.run.gunicorns({server: ctx.main_db for server in SIDES.values()}, workers=ctx.cores, env=envs) as urls:
            measured = alternate(
                {
                    # A fresh prefix per wrk run: its counters start again at 1, the cards must not.
                    side: (
                        f"{urls[server]}/tokens",
                        lambda: {"BENCH_API_KEY": api_key, "BENCH_MODE": "new", "BENCH_PREFIX": ctx.prefix()},
                    )
                    for side, server in SIDES.items()
                },
                # Twice the others' rounds: the two sides differ by less than a busy machine's moods.
                rounds=2 * s.wrk_rounds,
                seconds=s.wrk_seconds,
                warmup=s.wrk_warmup or min(1.0, s.wrk_seconds),
                connections=s.wrk_connections,
                threads=2,
                log=ctx.run.logs / "metrics-wrk.log",
            )
        counted = tokenizes_counted(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    figures = {side: measured[side].figures() for side in SIDES}
    on, off = figures["with"]["requests_per_second"], figures["without"]["requests_per_second"]
    ratio = round(on / off, 3) if off else None
    notes = [
        f"tokenize {side} metrics answered {figures[side]['statuses']} (all should be 201)"
        for side in SIDES
        if set(figures[side]["statuses"]) != {"201"}
    ]
    if counted < figures["with"]["statuses"].get("201", 0):
        notes.append(f"the metrics counted {counted} tokenizes, fewer than the {figures['with']['statuses']} wrk saw")
    return {
        "status": "ok",
        "with": figures["with"],
        "without": figures["without"],
        "ratio": ratio,
        "target": f"with / without req/s >= {TARGET}",
        "met": verdict(ratio, at_least=TARGET),
        "tokenizes_counted": counted,
        "config": {
            "gunicorn_sync_workers_each": ctx.cores,
            "connections": s.wrk_connections,
            "wrk_threads": 2,
            "rounds": 2 * s.wrk_rounds,
            "seconds_per_round": s.wrk_seconds,
            "multiprocess": True,
        },
        "notes": notes,
    }
