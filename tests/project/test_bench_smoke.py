"""``make bench`` at smoke size, inside ``make test``: every benchmark really runs (gunicorn under wrk, Celery
workers on Redis, the webhook receiver, ``import_cards``, the crypto loops) and the JSON holds every figure.

The figures themselves are not judged: tiny sizes on a test machine busy with the rest of the suite mean nothing.
The runner makes its own scratch databases on the test run's PostgreSQL server and drops them; its Celery
messages go to Redis database 15, away from the suite's.
"""

import json
import os
import subprocess
import sys
from numbers import Number
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from tests.conftest import ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.celery]

# benchmark → the figures its result must hold, as paths into it.
FIGURES = {
    "crypto": ["key_ring_us_per_card", "bare_us_per_card", "ratio"],
    "tokenize": [
        "tokenize.requests_per_second",
        "tokenize.p50_ms",
        "tokenize.p99_ms",
        "bare.requests_per_second",
        "bare.p50_ms",
        "bare.p99_ms",
        "ratio",
    ],
    "forward": [
        "forward.requests_per_second",
        "forward.p50_ms",
        "forward.p99_ms",
        "bare.requests_per_second",
        "bare.p50_ms",
        "bare.p99_ms",
        "ratio",
    ],
    "retokenize": ["small.stored_tokens", "small.p50_ms", "large.stored_tokens", "large.p50_ms", "ratio"],
    "batch": ["tokens_per_second", "highest_issuer_rate", "highest_issuer_limit"],
    "webhook": ["deliveries_per_second", "latency_p50_ms", "latency_p99_ms"],
    "import": [
        "cards_per_second",
        "floor_rows_per_second",
        "ratio",
        "copy_rows_per_second",
        "small.peak_rss_mb",
        "large.peak_rss_mb",
        "rss_ratio",
    ],
    "hsm": [
        "tokenize.pkcs11.requests_per_second",
        "tokenize.local.requests_per_second",
        "tokenize.ratio",
        "detokenize.pkcs11.requests_per_second",
        "detokenize.local.requests_per_second",
        "detokenize.ratio",
    ],
    "rotate_kek": ["small.seconds", "large.seconds", "small.keys_rewrapped", "large.keys_rewrapped", "ratio"],
    "metrics": ["with.requests_per_second", "without.requests_per_second", "ratio", "tokenizes_counted"],
}


def figure(result: dict, path: str):
    for key in path.split("."):
        result = result[key]
    return result


def import_cards_exists() -> bool:
    from django.core.management import get_commands

    return "import_cards" in get_commands()


@pytest.fixture
def servers():
    """The PostgreSQL server of the test run (any database on it will do) and a Redis database of the runner's own."""
    db = connection.settings_dict
    server = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/postgres"
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        pytest.fail("the benchmark smoke run needs a real Redis: run it through `make test` or set CELERY_BROKER_URL")
    return server, urlunsplit(urlsplit(broker)._replace(path="/15"))


def test_the_benchmark_runner_measures_every_figure_at_smoke_size(servers, tmp_path):
    server, broker = servers
    output = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}  # smoke sizes, whatever the shell says
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--scale",
            "smoke",
            "--server-url",
            server,
            "--broker-url",
            broker,
            "--output",
            str(output),
            "--logs",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,  # ten benchmarks, on a machine busy with the rest of the suite
    )
    errors = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in (tmp_path / "logs").glob("*-error.log"))
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}{errors}"

    report = json.loads(output.read_text())
    results = report["benchmarks"]
    assert set(results) == set(FIGURES)
    for name, paths in FIGURES.items():
        result = results[name]
        if name == "import" and not import_cards_exists():
            assert (result["status"], result["reason"]) == ("skipped", "import_cards missing")
            continue
        assert result["status"] == "ok", (name, result)
        for path in paths:
            value = figure(result, path)
            assert isinstance(value, Number) and value > 0, (name, path, value)

    # Each benchmark went down the path it claims to measure.
    assert set(results["tokenize"]["tokenize"]["statuses"]) == {"201"}
    assert set(results["tokenize"]["bare"]["statuses"]) == {"200"}
    assert set(results["forward"]["forward"]["statuses"]) == set(results["forward"]["bare"]["statuses"]) == {"200"}
    assert set(results["retokenize"]["small"]["statuses"]) == set(results["retokenize"]["large"]["statuses"]) == {"200"}
    assert results["batch"]["statuses"] == {"SUCCEEDED": report["sizes"]["batch"]}
    assert results["webhook"]["deliveries"] == report["sizes"]["webhook"]
    for provider in ("local", "pkcs11"):
        assert set(results["hsm"]["tokenize"][provider]["statuses"]) == {"201"}
        assert set(results["hsm"]["detokenize"][provider]["statuses"]) == {"200"}
    assert results["hsm"]["keks"]["pkcs11"] == ["pkcs11:bench-kek"]
    assert (
        results["rotate_kek"]["small"]["keks_after"] == results["rotate_kek"]["large"]["keks_after"] == ["pkcs11:kek-b"]
    )
    if results["import"]["status"] == "ok":
        assert results["import"]["large"]["tokens_stored"] == report["sizes"]["import_large"]
    assert report["machine"]["cores"] and report["run_seconds"] > 0
    print(run.stdout)
