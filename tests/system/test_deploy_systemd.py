"""deploy/systemd: the units are hardened, run the daemon as documented, and pass
``systemd-analyze verify``; the sysusers file creates the service user."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .deploy import INSTALLED, RUNBOOK, UNITS, VENV_BIN, default_shutdown_grace


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given (systemd keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


@pytest.mark.parametrize(("unit", "config", "state"), [
    ("replicator.service", "/etc/replicator/config.yaml", "replicator"),
    ("replicator@.service", "/etc/replicator/%i.yaml", "replicator/%i"),
])
def test_systemd_unit_is_hardened_and_runs_the_daemon(unit: str, config: str, state: str) -> None:
    s = unit_settings(UNITS / unit)

    def one(key: str) -> str:
        assert len(s.get(key, [])) == 1, f"{unit}: expected one {key}, found {s.get(key)}"
        return s[key][0]

    assert one("Service.Type") in ("simple", "notify")
    assert one("Service.ExecStart").split() == [INSTALLED, "run", "-c", config, "--log-format", "json"]
    assert one("Service.ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Service.Restart") == "on-failure"
    assert one("Service.RestartPreventExitStatus") == "2", "a bad config does not fix itself"
    assert one("Service.User") == "replicator"
    assert one("Service.StateDirectory") == state
    assert one("Service.KillSignal") == "SIGTERM"
    assert float(one("Service.TimeoutStopSec").removesuffix("s")) > default_shutdown_grace()
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "")):
        assert one(f"Service.{key}") == value, key
    assert one("Install.WantedBy") == "multi-user.target"
    assert INSTALLED in RUNBOOK.read_text(), "the runbook installs where the unit looks"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return found


def analyze_verify(tool: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, cwd=unit.parent)


@pytest.mark.parametrize(("unit", "instance"), [
    ("replicator.service", "replicator.service"),
    ("replicator@.service", "replicator@photos.service"),
])
def test_systemd_analyze_verify_passes(tmp_path: Path, unit: str, instance: str) -> None:
    """verify needs ExecStart to exist: the unit is checked with this venv's replicator in it."""
    tool = systemd_analyze()
    canary = tmp_path / "canary.service"
    canary.write_text("[Service]\nExecStart=/bin/true\n")
    if (proc := analyze_verify(tool, canary)).returncode != 0:
        pytest.skip(f"systemd-analyze verify cannot run here: {proc.stderr.strip()}")
    script = VENV_BIN / "replicator"
    assert script.exists(), "the venv has the replicator console script"
    text = (UNITS / unit).read_text(encoding="utf-8")
    assert INSTALLED in text
    (tmp_path / unit).write_text(text.replace(INSTALLED, str(script)))
    proc = analyze_verify(tool, tmp_path / instance)
    # Unknown keys and bad values are only warnings to systemd: any output is a failure here.
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def test_systemd_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        pytest.skip("systemd-sysusers not installed (apt-get install systemd)")
    (tmp_path / "etc").mkdir()
    proc = subprocess.run([tool, f"--root={tmp_path}", str(UNITS / "replicator.sysusers")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    users = {line.split(":")[0]: line for line in (tmp_path / "etc" / "passwd").read_text().splitlines()}
    assert users["replicator"].endswith(":/var/lib/replicator:/usr/sbin/nologin"), users
