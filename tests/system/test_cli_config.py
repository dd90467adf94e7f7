"""A bad configuration through the command line: exit 2 and one line naming the field,
never the file's secrets; journal-only commands run without the service's secrets;
``--version``, ``$REPLICATOR_CONFIG`` and shell completion.

The loader's own errors are unit-tested in tests/unit/test_config.py."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..unit.test_config import BROKEN_IDS, BROKEN_YAML, base_config, echoes_the_secret, write_broken


def replicator(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_journal_only_commands_run_without_the_secrets(tmp_path: Path) -> None:
    raw = base_config()
    raw["source"]["credentials"] = {"access_key_id": "${NO_SUCH_VAR_1}",
                                    "secret_access_key": "${NO_SUCH_VAR_2}"}
    raw["journal"]["path"] = str(tmp_path / "j.db")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    status = replicator("status", "-c", str(path))
    assert status.returncode == 0, status.stderr
    sync = replicator("sync", "-c", str(path))
    assert sync.returncode == 2 and "NO_SUCH_VAR_1 is not set" in sync.stderr


@pytest.mark.parametrize("command", ["run", "sync", "status"])
def test_cli_exits_2_naming_the_field(tmp_path: Path, command: str) -> None:
    raw = base_config()
    raw["regions"][2]["endpoint_url"] = "ftp//nowhere"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = replicator(command, "-c", str(path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "regions[2].endpoint_url: invalid URL" in proc.stderr


def test_cli_unreadable_file_exits_2(tmp_path: Path) -> None:
    proc = replicator("sync", "-c", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr


@pytest.mark.parametrize(("broken", "line"), BROKEN_YAML, ids=BROKEN_IDS)
def test_a_yaml_error_is_one_line_and_exit_2_without_the_secret(
        tmp_path: Path, broken: str, line: int) -> None:
    path = write_broken(tmp_path / "c.yaml", broken)
    proc = replicator("sync", "-c", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"line {line}, column " in proc.stderr
    assert not echoes_the_secret(proc.stderr), proc.stderr


# -- conventions: --version, $REPLICATOR_CONFIG, shell completion -------------------------------


def without_config_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REPLICATOR_CONFIG"}
    return {**env, **extra}


def test_version_is_the_installed_package_version() -> None:
    proc = replicator("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"replicator {importlib.metadata.version('replicator')}\n"


def test_config_defaults_to_the_replicator_config_variable(tmp_path: Path) -> None:
    raw = base_config()
    raw["journal"]["path"] = str(tmp_path / "j.db")
    good = tmp_path / "c.yaml"
    good.write_text(yaml.safe_dump(raw))
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [\n")

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "replicator", *args], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, env=without_config_env(**env))

    status = run("status", REPLICATOR_CONFIG=str(good))
    assert status.returncode == 0 and "nothing has run yet" in status.stdout, status.stderr
    # -c still wins over the variable.
    assert run("status", "-c", str(good), REPLICATOR_CONFIG=str(bad)).returncode == 0
    assert run("status", REPLICATOR_CONFIG=str(bad)).returncode == 2
    neither = run("status")
    assert neither.returncode == 2
    assert "-c/--config" in neither.stderr and "REPLICATOR_CONFIG" in neither.stderr, neither.stderr


def test_bash_completion_completes_commands_and_options() -> None:
    script = replicator("completion", "bash")
    assert script.returncode == 0, script.stderr

    def complete(*words: str) -> set[str]:
        proc = subprocess.run(
            ["bash", "-c", 'source /dev/stdin; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
                           '_shtab_replicator; printf "%s\\n" "${COMPREPLY[@]}"', "bash", *words],
            input=script.stdout, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return set(proc.stdout.split())

    assert {"status", "setup-events", "completion"} <= complete("replicator", "")
    assert complete("replicator", "app") == {"approve-deletes"}
    assert {"--repair", "--prefix", "--config"} <= complete("replicator", "verify", "--")


def test_zsh_completion_is_a_compdef() -> None:
    proc = replicator("completion", "zsh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("#compdef replicator")
    assert "approve-deletes" in proc.stdout
