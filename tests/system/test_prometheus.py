"""deploy/: the alert rules, the scrape config and the Grafana dashboard.

promtool checks the rule and config files and runs the alerts' unit tests; then
a real Prometheus scrapes a real daemon and evaluates every rule and every
dashboard query, so a misspelt metric or a query that only Grafana could parse
fails here rather than on an operator's screen.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from testing.motostack import free_port

from ..conftest import REGIONS, World, wait_for

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
SCRAPE_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "replicator.json"
DATASOURCE = "${datasource}"
#: What Grafana puts in place of its variables, as the live test queries them.
GRAFANA_VARIABLES = {"$region": ".*", "$job": ".*", "$instance": ".*", "$__rate_interval": "1m",
                     "$__interval": "15s", "$__range": "5m"}
#: What every selector of a replicator_* family on the dashboard must carry, so that two
#: daemons scraped by one Prometheus are never summed into one line.
DAEMON_FILTER = ('job=~"$job"', 'instance=~"$instance"')
LAG_P99 = ("histogram_quantile(0.99, sum by (region, le) "
           "(rate(replicator_replication_lag_seconds_bucket[1m])))")
CAUGHT_UP = ("replicator_consistency_ratio == 1 and replicator_last_audit_timestamp_seconds > 0 "
             "and replicator_oldest_pending_age_seconds == 0")


def binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK)
                                   else None)
    if found is None:
        pytest.skip(f"{name} not installed: apt-get install prometheus")
    return found


def promtool(*args: str) -> None:
    proc = subprocess.run([binary("promtool"), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
            for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def test_rules_pass_promtool_check() -> None:
    promtool("check", "rules", str(ALERTS.relative_to(REPO)))


def test_alert_unit_tests_pass() -> None:
    promtool("test", "rules", str(ALERT_TESTS.relative_to(REPO)))


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", ()):
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - silent == set(), "alerts never shown to stay silent"


def test_every_alert_has_for_severity_and_a_runbook() -> None:
    for rule in alerts():
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["annotations"]["runbook_url"].endswith(f"docs/operations.md#{name.lower()}"), name


def test_scrape_config_passes_promtool_check() -> None:
    promtool("check", "config", str(SCRAPE_CONFIG.relative_to(REPO)))


def test_dashboard_panels_query_the_datasource_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    job, instance, region = variables["job"], variables["instance"], variables["region"]
    assert job["definition"] == "label_values(replicator_build_info, job)"
    assert instance["definition"] == 'label_values(replicator_build_info{job=~"$job"}, instance)'
    assert region["definition"] == ('label_values(replicator_region_up{job=~"$job", '
                                    'instance=~"$instance"}, region)')
    for variable in (job, instance, region):
        assert variable["datasource"]["uid"] == DATASOURCE, variable["name"]
        assert variable["query"]["query"] == variable["definition"], variable["name"]
    assert instance["multi"] and region["multi"]
    assert list(variables) == ["datasource", "job", "instance", "region"]  # the order they filter in
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        assert panel.get("title"), panel
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"])["uid"] == DATASOURCE, panel["title"]
            # A query of a per-region family that ignores the region picker is a bug.
            if "region" in target["expr"]:
                assert 'region=~"$region"' in target["expr"], (panel["title"], target["expr"])
            for selector in re.finditer(r"(?<![\w:])(replicator_\w+)(\{[^}]*\})?", target["expr"]):
                matchers = selector.group(2) or ""
                assert all(m in matchers for m in DAEMON_FILTER), (panel["title"], selector.group(0))


# -- a real Prometheus scraping a real daemon ---------------------------------------------------


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class Prometheus:
    """A prometheus server on a free loopback port, with its data in a temp directory."""

    def __init__(self, tmp: Path, target: str) -> None:
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "replicator",
                                "static_configs": [{"targets": [target]}]}],
        }))
        self.log = tmp / "prometheus.log"
        self.url = f"http://127.0.0.1:{free_port()}"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [binary("prometheus"), f"--config.file={config}",
                 f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address={self.url.removeprefix('http://')}"],
                stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def api(self, path: str, **params: str) -> Any:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        return get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")

    def query(self, expr: str) -> dict[str, Any]:
        """The API's whole answer; an expression Prometheus rejects comes back as HTTP 400."""
        answer: dict[str, Any]
        try:
            answer = self.api("query", query=expr)
        except urllib.error.HTTPError as exc:
            with exc:
                answer = json.load(exc)
        return answer

    def regions(self, expr: str) -> set[str]:
        return {s["metric"].get("region", "") for s in self.query(expr)["data"]["result"]}

    def target_up(self) -> bool:
        try:
            targets = self.api("targets")["data"]["activeTargets"]
        except OSError:
            return False
        return any(t["health"] == "up" for t in targets)


def rfc3339(stamp: str) -> float:
    """Prometheus stamps carry nanoseconds; datetime takes microseconds."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", stamp)).timestamp()


@pytest.fixture
def daemon(world: World) -> Iterator[str]:
    """`replicator run` on a free port, serving /metrics; yields its address."""
    for i in range(5):
        world.put(f"obj/{i}", os.urandom(100 + i))
    address = f"127.0.0.1:{free_port()}"
    # Audits soon, so the audit figures are real numbers rather than start-up zeros, yet
    # seldom enough that scrape and evaluation delays (1s each) never make one look stale.
    config = world.config_file(http__listen=address, audit__interval=5)
    log = world.tmp / "daemon.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "replicator", "run", "-c", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=world.tmp)

    def serving() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=2) as response:
                return b"replicator_region_up" in response.read()
        except OSError:
            return False

    try:
        wait_for(serving, timeout=20, what="the daemon's /metrics")
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]


def test_a_live_scrape_passes_promtool_check_metrics(daemon: str) -> None:
    """The exposition itself: names Prometheus's lint accepts (no gauge named ``…_count``),
    no ``_created`` series doubling every counter and histogram, and the build's version."""
    with urllib.request.urlopen(f"http://{daemon}/metrics", timeout=10) as response:
        scrape = response.read()
    proc = subprocess.run([binary("promtool"), "check", "metrics"], input=scrape,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
    text = scrape.decode()
    assert "_created" not in text
    version = importlib.metadata.version("replicator")
    assert f'replicator_build_info{{version="{version}"}} 1.0' in text.splitlines()


@pytest.mark.slow
def test_real_prometheus_evaluates_every_rule_and_dashboard_query(
        daemon: str, tmp_path: Path) -> None:
    prometheus = Prometheus(tmp_path, daemon)
    try:
        wait_for(prometheus.target_up, timeout=20, what="prometheus to scrape the daemon")
        # A rate over [1m] needs two scrapes; then every region must show up in it.
        wait_for(lambda: prometheus.regions(LAG_P99) == set(REGIONS), timeout=20,
                 what=f"lag p99 for every region in {prometheus.url}")
        wait_for(lambda: prometheus.regions(CAUGHT_UP) == set(REGIONS), timeout=20,
                 what="an audit finding every region identical to the source")
        data_since = float(prometheus.query("time()")["data"]["result"][0])

        exprs = [rule["expr"] for rule in rules()] + [
            re.sub("|".join(re.escape(v) for v in GRAFANA_VARIABLES),
                   lambda m: GRAFANA_VARIABLES[m.group(0)], expr)
            for expr in dashboard_exprs()]
        rejected = {expr: answer for expr in exprs
                    if (answer := prometheus.query(expr))["status"] != "success"}
        assert rejected == {}

        for expr in ("replicator_oldest_pending_age_seconds", "replicator_backlog_objects",
                     "replicator_backlog_bytes", LAG_P99):
            assert prometheus.regions(expr) == set(REGIONS), expr
        # The dashboard's region picker: label_values(replicator_region_up{…}, region).
        picker = prometheus.api("label/region/values", **{"match[]": "replicator_region_up"})
        assert set(picker["data"]) == set(REGIONS)
        # The job and instance pickers: label_values(replicator_build_info, job / instance).
        for label, values in (("job", {"replicator"}), ("instance", {daemon})):
            picker = prometheus.api(f"label/{label}/values", **{"match[]": "replicator_build_info"})
            assert set(picker["data"]) == values, label

        # Every replicator_* family a rule or panel names is one the daemon exports
        # (names inside recording-rule names, which contain ':', do not count).
        exported = set(prometheus.api("label/__name__/values")["data"])
        named = {name for expr in exprs
                 for name in re.findall(r"(?<![\w:])replicator_\w+(?![\w:])", expr)}
        assert named - exported == set()

        def evaluated_since_data() -> list[dict[str, Any]] | None:
            groups = prometheus.api("rules")["data"]["groups"]
            return groups if all(rfc3339(g["lastEvaluation"]) > data_since for g in groups) else None

        groups = wait_for(evaluated_since_data, timeout=20, what="rules evaluated on scraped data")
        broken = {r["name"]: r.get("lastError") for g in groups for r in g["rules"]
                  if r["health"] != "ok"}
        assert broken == {}
        # A healthy daemon that has just started must not even have a pending alert.
        assert prometheus.query("ALERTS")["data"]["result"] == []
    finally:
        prometheus.stop()
