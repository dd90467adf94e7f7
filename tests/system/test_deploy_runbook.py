"""docs/operations.md, the runbook: a section for every alert, every command and every metric,
and every link and path in it resolves."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from replicator.metrics import Metrics

from .deploy import ALERTS, REPO, RUNBOOK


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lowercase, punctuation dropped, spaces to dashes."""
    anchors = set()
    for line in markdown.splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def runbook() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        yield from (r for r in group["rules"] if "alert" in r)


def test_runbook_has_the_section_every_alert_links_to() -> None:
    anchors = github_anchors(runbook())
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("/docs/operations.md"), url
        assert anchor == rule["alert"].lower() and anchor in anchors, \
            f"{rule['alert']}: docs/operations.md has no section #{anchor}"


def test_runbook_links_and_paths_resolve() -> None:
    text = runbook()
    anchors = github_anchors(text)
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors, f"link to a missing section: #{anchor}"
    for path in set(re.findall(r"\b((?:deploy/\w+|config|docs)/[\w./@-]*\w)", text)):
        assert (REPO / path).exists(), f"the runbook names {path}, which does not exist"


def test_runbook_documents_every_command_and_metric() -> None:
    text = runbook()
    usage = subprocess.run([sys.executable, "-m", "replicator", "--help"], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    commands = re.search(r"\{([\w,-]+)\}", usage)
    assert commands, usage
    for command in commands.group(1).split(","):
        assert f"replicator {command}" in text or f"replicatorctl {command}" in text, \
            f"`replicator {command}` is not in the runbook"
    registry = CollectorRegistry()
    Metrics(registry, ["r"])
    for family in registry.collect():
        if family.name.startswith("replicator_"):
            assert family.name in text, f"metric {family.name} is not in the runbook"
