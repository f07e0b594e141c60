"""What operators install beside the product: the Prometheus alert rules (deploy/prometheus/alerts.yml, with their
promtool unit tests in alerts.test.yml), the example scrape configuration and the Grafana dashboard
(deploy/grafana/tokenvault.json). promtool validates the rules and runs their tests; every metric they and the
dashboard name must be one GET /metrics exposes, so renaming a metric in the code breaks this file, not the
operators' night.

promtool comes from Debian's ``prometheus`` package, which scripts/test.sh installs.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "tokenvault.json"
# The product's metrics: what the alerts and the dashboard may name.
NAME = re.compile(r"\btokenvault_[a-z0-9_]+\b")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: install Debian's `prometheus` package (apt-get install prometheus; scripts/test.sh "
            "does) to check deploy/prometheus/",
            pytrace=False,
        )
    return subprocess.run([path, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict]:
    """Every panel, those inside collapsed rows too; rows themselves are no panels of data."""
    found = []
    for panel in dashboard()["panels"]:
        found.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return found


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# ------------------------------------------------------------------------------------------------------------
# The alert rules
# ------------------------------------------------------------------------------------------------------------
def test_the_alert_rules_are_valid_for_prometheus():
    checked = promtool("check", "rules", "alerts.yml")

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_on_its_trouble_and_none_on_a_normal_day():
    tested = promtool("test", "rules", "alerts.test.yml")

    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_and_says_how_bad_what_and_what_to_do():
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    firing = {
        case["alertname"] for group in tests for case in group.get("alert_rule_test", []) if case.get("exp_alerts")
    }

    for rule in alert_rules():
        assert rule["alert"] in firing, f"alerts.test.yml never makes {rule['alert']} fire"
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_the_example_scrape_configuration_is_valid_and_loads_the_rules():
    checked = promtool("check", "config", "--syntax-only", "prometheus.yml")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert "alerts.yml" in config["rule_files"]
    job = config["scrape_configs"][0]
    assert job["job_name"] == "tokenvault"  # what TokenvaultTargetDown matches
    assert job["authorization"]["credentials_file"]  # METRICS_TOKEN from a file, never in the configuration


# ------------------------------------------------------------------------------------------------------------
# The dashboard
# ------------------------------------------------------------------------------------------------------------
def test_the_dashboard_asks_for_its_prometheus_and_every_panel_queries_it():
    board = dashboard()
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}

    assert board["schemaVersion"] >= 36
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard_panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_dashboard_query_is_valid_promql(tmp_path):
    # promtool parses PromQL in rules only: each query becomes a recording rule, Grafana's interval a fixed one.
    rules = [
        {"record": f"dashboard:query_{number}", "expr": expr.replace("$__rate_interval", "5m")}
        for number, expr in enumerate(dashboard_exprs())
    ]
    (tmp_path / "dashboard-queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))

    checked = promtool("check", "rules", "dashboard-queries.yml", cwd=tmp_path)

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_shows_each_part_of_the_product():
    shown = " ".join(dashboard_exprs())

    for metric in (
        "tokenvault_http_request_duration_seconds_bucket",
        "tokenvault_tokenize_total",
        "tokenvault_detokenize_total",
        "tokenvault_webhook_backlog",
        "tokenvault_webhook_oldest_due_age_seconds",
        "tokenvault_webhook_attempts_total",
        "tokenvault_webhook_attempt_duration_seconds_bucket",
        "tokenvault_tsp_requests_total",
        "tokenvault_tsp_request_duration_seconds_bucket",
        "tokenvault_issuer_calls_total",
        "tokenvault_issuer_call_limit",
        "tokenvault_batch_items",
        "tokenvault_async_requests_pending",
        "tokenvault_kek_available",
        "tokenvault_celery_worker_processes",
        "tokenvault_beat_heartbeat_age_seconds",
    ):
        assert metric in shown, metric


# ------------------------------------------------------------------------------------------------------------
# Every name they use is one the product exposes
# ------------------------------------------------------------------------------------------------------------
def exposed_names() -> set[str]:
    """The series names GET /metrics may carry: each family's ``# TYPE`` line lists it even before it has a sample;
    a histogram's series are its ``_bucket``, ``_sum`` and ``_count``."""
    text = Client().get("/metrics").content.decode()
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        names.add(name)
        if kind in {"histogram", "summary"}:
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_every_metric_the_alerts_and_the_dashboard_name_is_one_the_product_exposes(db):
    used = set()
    for rule in alert_rules():
        used |= set(NAME.findall(rule["expr"]))
    for expr in dashboard_exprs():
        used |= set(NAME.findall(expr))

    assert used, "no tokenvault_ metric found in deploy/: the pattern no longer matches"
    assert sorted(used - exposed_names()) == []
