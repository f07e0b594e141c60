"""/metrics over many processes (prometheus-client's multiprocess mode, core/metrics.py): gunicorn with two workers
and a Celery worker, each counting in a folder of the test's own, and one scrape adding them up.

alice is a merchant tokenizing cards through the real gunicorn; the scraper is Prometheus, reading /metrics through
the same gunicorn or, for the Celery worker's count, through this process's view over the same folder.
"""

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.test import Client
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from tests.cards import distinct_card_numbers
from tests.conftest import (
    ROOT,
    capture_path,
    card_request,
    database_url,
    kill_celery_worker,
    start_celery_worker,
    stop_celery_worker,
    wait_for,
)
from tests.project.test_drills import api_server

TOKENS_CREATED = {"route": "tokens", "method": "POST", "status_class": "2xx"}


def tokens_created(samples) -> float:
    """The count of ``POST /tokens`` answered 2xx among prometheus-client's samples."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == "tokenvault_http_requests_total" and sample.labels == TOKENS_CREATED
    )


def scraped(url: str) -> list:
    response = requests.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200, response.text[:300]
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def counted_by_pid(directory: Path) -> dict[int, float]:
    """Each process's own count of tokens created, read from its file of the folder."""
    counts = {}
    for path in glob.glob(str(directory / "counter_*.db")):
        pid = int(Path(path).stem.rpartition("_")[2])
        samples = [sample for metric in multiprocess.MultiProcessCollector.merge([path]) for sample in metric.samples]
        counts[pid] = tokens_created(samples)
    return counts


def answered_by_pid(directory: Path) -> set[int]:
    """The processes whose file counts an answer to any request."""
    pids = set()
    for path in glob.glob(str(directory / "counter_*.db")):
        samples = [sample for metric in multiprocess.MultiProcessCollector.merge([path]) for sample in metric.samples]
        if any(sample.name == "tokenvault_http_requests_total" and sample.value for sample in samples):
            pids.add(int(Path(path).stem.rpartition("_")[2]))
    return pids


def workers_of(master: subprocess.Popen) -> set[int]:
    listed = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master.pid)], capture_output=True, text=True)
    return {int(pid) for pid in listed.stdout.split()}


@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_workers_are_scraped_as_one_sum_of_this_start_which_outlives_a_killed_worker(alice, tmp_path):
    directory = tmp_path / "metrics"
    numbers = distinct_card_numbers("411111", 40)
    env = {"DATABASE_URL": database_url(), "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    # An earlier start's server, long gone, left 5 tokenizes counted in the folder.
    earlier = "from core.metrics import HTTP_REQUESTS; HTTP_REQUESTS.labels('tokens', 'POST', '2xx').inc(5)"
    subprocess.run([sys.executable, "-c", earlier], cwd=ROOT, env={**os.environ, **env}, check=True)
    assert sum(counted_by_pid(directory).values()) == 5

    with api_server(env=env, log=capture_path("metrics-gunicorn.log", fallback=tmp_path)) as (url, master):

        def tokenize(number: str) -> int:
            # A connection each: whichever worker accepts it serves it.
            headers = {"Authorization": f"Bearer {alice.raw_key}", "Connection": "close"}
            return requests.post(f"{url}/tokens", json=card_request(cardNumber=number), headers=headers, timeout=60)

        # The server yields once one worker answered; the other may still be starting. Both serve before the load.
        def both_answered() -> bool:
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{url}/healthz", headers={"Connection": "close"}, timeout=10)
            workers = workers_of(master)
            return len(workers) == 2 and workers <= answered_by_pid(directory)

        wait_for(both_answered, timeout=120, interval=0.1)

        # Four at a time, so that both workers are busy.
        with ThreadPoolExecutor(4) as pool:
            statuses = [response.status_code for response in pool.map(tokenize, numbers)]
        assert statuses == [201] * 40

        served = {pid: count for pid, count in counted_by_pid(directory).items() if count}
        assert set(served) == workers_of(master), "both workers served"
        assert sum(served.values()) == 40
        samples = scraped(url)
        assert tokens_created(samples) == 40

        # A worker killed: gunicorn starts another, and the dead one's counts are still in the sum.
        victim = min(served)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in workers_of(master) and len(workers_of(master)) == 2, timeout=120)
        assert tokens_created(scraped(url)) == 40
        text = requests.get(f"{url}/metrics", timeout=30).text

    assert (directory / f"counter_{victim}.db").exists()
    for secret in [*numbers, alice.raw_key]:
        assert secret not in text


@pytest.mark.django_db(transaction=True)
def test_with_metrics_switched_off_gunicorn_counts_nothing_and_has_no_metrics_path(alice, tmp_path):
    directory = tmp_path / "metrics"
    env = {"DATABASE_URL": database_url(), "PROMETHEUS_MULTIPROC_DIR": str(directory), "METRICS_ENABLED": "false"}
    log = capture_path("metrics-off-gunicorn.log", fallback=tmp_path)

    with api_server(env=env, log=log) as (url, _):
        headers = {"Authorization": f"Bearer {alice.raw_key}"}
        for number in distinct_card_numbers("411111", 3, seed=1):
            response = requests.post(f"{url}/tokens", json=card_request(cardNumber=number), headers=headers, timeout=60)
            assert response.status_code == 201
        refused = requests.get(f"{url}/metrics", timeout=30)

    assert refused.status_code == 404
    assert refused.json()["errorName"] == "endpointNotFound"
    files = glob.glob(str(directory / "*.db"))
    counted = [sample for metric in multiprocess.MultiProcessCollector.merge(files) for sample in metric.samples]
    assert not [sample for sample in counted if sample.value], "nothing counted, by the middleware or the apps"


@pytest.mark.django_db(transaction=True)
def test_gunicorns_access_line_ends_with_the_request_id(alice, tmp_path):
    log = capture_path("metrics-access-gunicorn.log", fallback=tmp_path)
    start = log.stat().st_size if log.exists() else 0

    with api_server(env={"DATABASE_URL": database_url()}, log=log) as (url, _):
        headers = {"Authorization": f"Bearer {alice.raw_key}", "X-Request-Id": "scrape-check-7f3a"}
        assert requests.get(f"{url}/tokens", headers=headers, timeout=30).status_code == 200

        def access_line():
            with open(log, "rb") as out:
                out.seek(start)
                lines = out.read().decode().splitlines()
            records = [json.loads(line) for line in lines if line.startswith("{")]
            return [r for r in records if r["logger"] == "gunicorn.access" and "GET /tokens " in r["message"]]

        [record] = wait_for(access_line, timeout=10)

    assert record["message"].endswith(" scrape-check-7f3a")


# ------------------------------------------------------------------------------------------------------------
# Celery workers
# ------------------------------------------------------------------------------------------------------------
def celery_workers_counted() -> float:
    """``tokenvault_celery_worker_processes`` as a scrape of this process's /metrics shows it."""
    response = Client().get("/metrics")
    assert response.status_code == 200
    [family] = [
        family
        for family in text_string_to_metric_families(response.content.decode())
        if family.name == "tokenvault_celery_worker_processes"
    ] or [None]
    return sum(sample.value for sample in family.samples) if family else 0.0


@pytest.fixture
def shared_folder(settings, tmp_path) -> Path:
    """The metrics folder this process's /metrics adds up, which the test's Celery worker writes to."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    settings.PROMETHEUS_MULTIPROC_DIR = str(directory)
    return directory


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_counts_one_while_it_runs_and_none_once_it_stops(shared_folder):
    assert celery_workers_counted() == 0

    worker = start_celery_worker(env={"PROMETHEUS_MULTIPROC_DIR": str(shared_folder)})
    try:
        wait_for(lambda: celery_workers_counted() == 1, timeout=60, interval=0.5)
    finally:
        stop_celery_worker(worker)

    assert worker.returncode is not None
    assert celery_workers_counted() == 0


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_killed_without_a_word_leaves_the_count_at_the_next_scrape(shared_folder):
    worker = start_celery_worker(env={"PROMETHEUS_MULTIPROC_DIR": str(shared_folder)})
    try:
        wait_for(lambda: celery_workers_counted() == 1, timeout=60, interval=0.5)
    finally:
        kill_celery_worker(worker)

    assert celery_workers_counted() == 0
