"""The breaker: which outcomes take a region out, what brings it back, what is logged."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from replicator.health import UNCHECKED, Health
from replicator.metrics import Metrics
from replicator.model import Outcome, RegionResult

REGIONS = ["r1", "r2"]


def make_health(failures: int = 3) -> tuple[Health, CollectorRegistry]:
    registry = CollectorRegistry()
    health = Health(Metrics(registry, REGIONS), REGIONS, failures=failures)
    return health, registry


def up(registry: CollectorRegistry, region: str) -> float | None:
    return registry.get_sample_value("replicator_region_up", {"region": region})


def failed(region: str, reason: str, *, at_source: bool = False) -> RegionResult:
    return RegionResult(region, Outcome.FAILED, reason=reason, error=f"{reason} happened",
                        at_source=at_source)


def copied(region: str) -> RegionResult:
    return RegionResult(region, Outcome.COPIED)


def test_nothing_gets_work_before_its_first_answer_and_first_contact_revives_nothing() -> None:
    health, registry = make_health()
    assert health.problems == {"source": UNCHECKED, "r1": UNCHECKED, "r2": UNCHECKED}
    assert health.allowed(REGIONS) == set()
    assert up(registry, "r1") == 0
    assert health.ok("r1") is False  # nothing was held back, nothing to make due again
    assert health.allowed(REGIONS) == {"r1"}
    assert up(registry, "r1") == 1


def test_consecutive_failures_open_the_breaker_and_a_success_resets_the_streak() -> None:
    health, registry = make_health(failures=3)
    health.ok("r1")
    for _ in range(2):
        health.observe(failed("r1", "network"))
    health.observe(copied("r1"))
    for _ in range(2):
        health.observe(failed("r1", "network"))
    assert health.allowed(["r1"]) == {"r1"}  # two in a row since the success: still closed
    health.observe(failed("r1", "network"))
    assert health.allowed(["r1"]) == set()
    assert health.problems["r1"] == "network: network happened"
    assert up(registry, "r1") == 0


@pytest.mark.parametrize("reason", ["no_such_bucket", "access_denied", "clock_skew"])
def test_a_cause_no_retry_can_fix_opens_the_breaker_at_once(reason: str) -> None:
    health, _ = make_health(failures=5)
    health.ok("r2")
    health.observe(failed("r2", reason))
    assert health.allowed(REGIONS) == set()
    assert health.problems["r2"].startswith(f"{reason}: ")


@pytest.mark.parametrize("reason", ["throttled", "checksum_mismatch", "source_changed",
                                    "source_vanished"])
def test_failures_that_say_nothing_about_reachability_never_open_it(reason: str) -> None:
    health, _ = make_health(failures=1)
    health.ok("r1")
    for _ in range(10):
        health.observe(failed("r1", reason))
    assert health.allowed(["r1"]) == {"r1"}


def test_an_archived_source_object_is_not_a_source_outage() -> None:
    health, _ = make_health(failures=3)
    health.ok("source")
    for region in ("r1", "r2", "r1"):
        health.observe(failed(region, "archived", at_source=True))
    assert "source" not in health.problems


def test_a_failed_source_read_counts_against_the_source_not_the_region() -> None:
    health, registry = make_health(failures=2)
    for name in ("source", "r1"):
        health.ok(name)
    health.observe(failed("r1", "network", at_source=True))
    health.observe(failed("r1", "network", at_source=True))
    assert "source" in health.problems and health.allowed(["r1"]) == {"r1"}
    assert registry.get_sample_value("replicator_source_up") == 0


def test_a_success_closes_an_open_breaker_and_says_its_work_must_resume() -> None:
    health, registry = make_health()
    health.ok("r1")
    health.observe(failed("r1", "no_such_bucket"))
    assert health.observe(copied("r1")) is True
    assert health.allowed(["r1"]) == {"r1"} and up(registry, "r1") == 1
    assert health.observe(copied("r1")) is False  # already closed


def test_a_problem_is_logged_once_when_it_starts_and_again_only_when_its_cause_changes(
        caplog: pytest.LogCaptureFixture) -> None:
    health, _ = make_health(failures=1)
    health.ok("r1")
    with caplog.at_level(logging.INFO, logger="replicator.health"):
        for _ in range(5):
            health.observe(failed("r1", "network"))
        health.observe(failed("r1", "access_denied"))
        health.observe(copied("r1"))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "r1 is out of service: network happened" in messages[0]
    assert "fix: check the endpoint URL" in messages[0]
    assert "access_denied happened" in messages[1] and "IAM policy" in messages[1]
    assert messages[2].startswith("r1 answers again (was: access_denied")
