"""The benchmark runner: ``make bench`` (through ``scripts/bench.sh``, which starts PostgreSQL and Redis).

    python -m benchmarks.run --server-url postgres://postgres@127.0.0.1:5432/postgres \\
        --broker-url redis://127.0.0.1:6379/0 [--scale smoke|full] [--only tokenize,crypto] [--output FILE]

Every database it uses is a scratch one made on that server (``bench_<pid>_…``) and dropped at the end; the
processes it starts (gunicorn, Celery, wrk, the webhook receiver) use production settings plus ``/bench/bare``
(``benchmarks.settings``). It writes ``benchmarks/results/<date>.json`` (``<date>-smoke-crypto.json`` and the like
for a smaller run; ``--output`` to choose) and prints a table. A benchmark that cannot run is recorded as an error
and the others still run; the exit code is then 1.

Sizes: ``--scale`` (or ``BENCH_SCALE``), each overridable by ``BENCH_<SIZE>`` (see ``benchmarks.cases.Sizes``).
``BENCH_SETTINGS_MODULE`` names a module extending ``benchmarks.settings`` to measure a settings change (it must
be importable: put its folder on ``PYTHONPATH``).
"""

import argparse
import datetime
import importlib
import json
import logging
import os
import platform
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path

from benchmarks.cases import SCALES, Context, sizes_for
from benchmarks.harness import ROOT, BenchError, Run, ensure_wrk

BENCHMARKS = (
    "crypto",
    "tokenize",
    "forward",
    "retokenize",
    "batch",
    "webhook",
    "import",
    "hsm",
    "rotate_kek",
    "metrics",
)
MODULES = {"import": "importing"}
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server-url",
        default=os.environ.get("DATABASE_URL"),
        help="a PostgreSQL server (any database on it; default $DATABASE_URL)",
    )
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("CELERY_BROKER_URL"),
        help="a Redis for Celery (default $CELERY_BROKER_URL)",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default=os.environ.get("BENCH_SCALE", "full"))
    parser.add_argument("--only", help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    parser.add_argument("--output", type=Path, help="the JSON file (default benchmarks/results/<date>.json)")
    parser.add_argument("--logs", type=Path, help="where the processes' logs go (default var/bench/<time>)")
    parser.add_argument("--keep-databases", action="store_true", help="leave the scratch databases, to look into")
    args = parser.parse_args(argv)
    if not (args.server_url or "").startswith("postgres"):
        parser.error("--server-url (or DATABASE_URL) must be a postgres:// URL")
    if not (args.broker_url or "").startswith("redis://"):
        parser.error("--broker-url (or CELERY_BROKER_URL) must be a redis:// URL")
    selected = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(selected) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    started = time.monotonic()
    now = datetime.datetime.now(datetime.UTC)
    logs = (args.logs or ROOT / "var" / "bench" / now.strftime("%Y%m%d-%H%M%S")).resolve()
    logs.mkdir(parents=True, exist_ok=True)
    from config.settings.secrets import generated_secrets

    prefix = f"bench_{os.getpid()}"
    run = Run(server_url=args.server_url, broker_url=args.broker_url, logs=logs, secrets=generated_secrets())
    sizes = sizes_for(args.scale)
    ctx = Context(
        run=run,
        sizes=sizes,
        template_db=f"{prefix}_template",
        main_db=f"{prefix}_main",
        cores=os.cpu_count() or 1,
        salt=random.randrange(1000),
    )
    say(f"scale {args.scale}, logs in {logs}")
    load_before = os.getloadavg()

    results = {}
    if {"tokenize", "forward", "retokenize", "hsm", "metrics"} & set(selected):
        try:
            ensure_wrk()
        except BenchError as exc:
            say(str(exc))  # the benchmarks that need it say so in their results
    try:
        say("preparing the databases")
        clock = time.monotonic()
        try:
            run.create_template(ctx.template_db)
            run.create_database(ctx.main_db, template=ctx.template_db)
        except BenchError as exc:
            say(f"cannot start: {exc}")
            return 1
        environment = run.env(database=ctx.main_db)
        os.environ.clear()  # exactly the run's environment: without the switches production refuses
        os.environ.update(environment)
        import django

        django.setup()
        logging.getLogger().setLevel(logging.WARNING)  # the runner's own Django: keep its INFO lines off the table
        say(f"databases ready in {time.monotonic() - clock:.1f} s")
        for name in selected:
            say(f"{name}…")
            clock = time.monotonic()
            try:
                module = importlib.import_module(f"benchmarks.cases.{MODULES.get(name, name)}")
                results[name] = module.run(ctx)
            except Exception as exc:  # noqa: BLE001 - one benchmark's failure is recorded, the rest still run
                (logs / f"{name}-error.log").write_text(traceback.format_exc())
                results[name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
            results[name]["wall_seconds"] = round(time.monotonic() - clock, 1)
            say(f"{name}: {results[name]['status']} in {results[name]['wall_seconds']} s")
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep_databases:
            say(f"kept databases: {', '.join(run.databases)}")
        else:
            run.drop_databases()

    report = {
        "date": now.isoformat(timespec="seconds"),
        "scale": args.scale,
        "sizes": vars(sizes),
        "machine": machine(run),
        "run_seconds": round(time.monotonic() - started, 1),
        # Others' work on the machine shows here (the 1-minute load average of an idle machine is near 0).
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "benchmarks": results,
    }
    # A smaller run (another scale, some benchmarks only) is named after what it ran: it must not replace the day's
    # full run of every benchmark.
    name = (
        [f"{now:%Y-%m-%d}"]
        + ([args.scale] if args.scale != "full" else [])
        + (selected if selected != list(BENCHMARKS) else [])
    )
    output = args.output or RESULTS / f"{'-'.join(name)}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report))
    print(f"\nwritten to {output}; logs in {logs}")
    return 1 if any(r["status"] == "error" for r in results.values()) else 0


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


def machine(run: Run) -> dict:
    def first_line(command):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    cpu = None
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    postgres = {}
    try:
        with run.admin_connection() as conn:
            for setting in ("server_version", "shared_buffers", "fsync", "synchronous_commit", "max_connections"):
                postgres[setting] = conn.execute(f"SHOW {setting}").fetchone()[0]
    except Exception:  # noqa: BLE001 - the description of the machine is best effort
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "redis": first_line(["redis-server", "--version"]),
        "wrk": first_line(["wrk", "--version"]),
    }


# ------------------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------------------
def _n(value, unit="") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value < 100:
        text = f"{value:,.2f}"
    else:
        text = f"{value:,.0f}"
    return f"{text}{unit}"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "-"}[met]


def rows_of(name: str, r: dict) -> list[tuple[str, ...]]:
    """(benchmark, measured, reference, ratio, target, verdict) lines for one result."""
    if r["status"] != "ok":
        return [(name, f"{r['status']}: {r.get('reason', '')}", "", "", "", "")]
    met = verdict(r.get("met"))

    def http(f):
        return f"{_n(f['requests_per_second'])} req/s, p50 {_n(f['p50_ms'])} ms, p99 {_n(f['p99_ms'])} ms"

    if name == "tokenize":
        return [
            (
                name,
                f"POST /tokens {http(r['tokenize'])}",
                f"bare {http(r['bare'])}",
                f"{r['ratio']}",
                "req/s ratio >= 0.6",
                met,
            )
        ]
    if name == "forward":
        return [
            (
                name,
                f"POST /forward to a loopback provider {http(r['forward'])}",
                f"bare {http(r['bare'])}",
                f"{r['ratio']}",
                "reported",
                met,
            )
        ]
    if name == "retokenize":
        small, large = r["small"], r["large"]
        return [
            (
                name,
                f"{_n(large['stored_tokens'])} tokens: {http(large)}",
                f"{_n(small['stored_tokens'])} tokens: {http(small)}",
                f"{r['ratio']}",
                "p50 ratio <= 1.3",
                met,
            )
        ]
    if name == "import":
        small, large = r["small"], r["large"]
        return [
            (
                name,
                f"{_n(large['rows'])} rows: {_n(large['cards_per_second'])} cards/s",
                f"storage floor: COPY of the same rows, encrypted, into the product's tables "
                f"{_n(large['floor_rows_per_second'])} rows/s",
                f"{r['ratio']}",
                "import / floor >= 0.7",
                verdict(r["ratio_met"]),
            ),
            (
                "",
                "",
                f"COPY of the file into a table of text columns {_n(large['copy_rows_per_second'])} rows/s",
                f"{r['copy_ratio']}",
                "reported",
                "",
            ),
            (
                "",
                f"peak RSS {_n(large['peak_rss_mb'])} MB at {_n(large['rows'])} rows",
                f"{_n(small['peak_rss_mb'])} MB at {_n(small['rows'])} rows",
                f"{r['rss_ratio']}",
                "RSS ratio <= 1.2",
                verdict(r["rss_met"]),
            ),
        ]
    if name == "batch":
        return [
            (name, f"{_n(r['items'])} items: {_n(r['tokens_per_second'])} tokens/s", "", "", ">= 500 tokens/s", met),
            (
                "",
                f"busiest issuer {_n(r['highest_issuer_rate'])} calls in 1 s",
                f"limit {_n(r['highest_issuer_limit'])}/s",
                "",
                "never above",
                "met" if r["issuer_limits_respected"] else "EXCEEDED",
            ),
        ]
    if name == "webhook":
        return [
            (
                name,
                f"{_n(r['deliveries'])} events: {_n(r['deliveries_per_second'])} deliveries/s",
                "",
                "",
                ">= 500 deliveries/s",
                met,
            ),
            (
                "",
                f"commit to receipt p50 {_n(r['latency_p50_ms'])} ms, p99 {_n(r['latency_p99_ms'])} ms",
                f"at {_n(r['latency_offered_per_second'])} events/s offered",
                "",
                "",
                "",
            ),
        ]
    if name == "hsm":
        return [
            (
                name if path == "tokenize" else "",
                f"{path} with the pkcs11 provider (SoftHSM2) {http(r[path]['pkcs11'])}",
                f"local provider {http(r[path]['local'])}",
                f"{r[path]['ratio']}",
                "req/s ratio >= 0.95",
                verdict(r[path]["met"]),
            )
            for path in ("tokenize", "detokenize")
        ]
    if name == "rotate_kek":
        small, large = r["small"], r["large"]
        return [
            (
                name,
                f"rotate_kek (pkcs11) with {_n(large['cards'])} cards: {_n(large['seconds'])} s, "
                f"{large['keys_rewrapped']} keys re-wrapped (process: {_n(large['process_seconds'])} s)",
                f"with {_n(small['cards'])} cards: {_n(small['seconds'])} s "
                f"(process: {_n(small['process_seconds'])} s)",
                f"{r['ratio']}",
                f"<= reference + {r['tolerance_seconds']} s",
                met,
            )
        ]
    if name == "metrics":
        return [
            (
                name,
                f"POST /tokens counting (multiprocess) {http(r['with'])}",
                f"METRICS_ENABLED false {http(r['without'])}",
                f"{r['ratio']}",
                "req/s ratio >= 0.97",
                met,
            )
        ]
    if name == "crypto":
        return [
            (
                name,
                f"key ring {_n(r['key_ring_us_per_card'])} µs/card (encrypt + fingerprint)",
                f"bare AESGCM + hmac {_n(r['bare_us_per_card'])} µs/card",
                f"{r['ratio']}",
                "reported",
                met,
            )
        ]
    return [(name, json.dumps(r)[:80], "", "", "", "")]


def table(report: dict) -> str:
    header = ("benchmark", "measured", "reference (same run)", "ratio", "target", "verdict")
    lines = [header] + [row for name, r in report["benchmarks"].items() for row in rows_of(name, r)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    m, load = report["machine"], report["load_average_1min"]
    out.append(
        f"\n{report['scale']} run in {report['run_seconds']} s on {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB, PostgreSQL {m['postgresql'].get('server_version', '?')}; "
        f"load average {load['before']} before, {load['after']} after"
    )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
