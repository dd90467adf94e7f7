"""Configuration: valid files load, bad ones name the field and the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
import yaml

from replicator.config import Config
from replicator.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _base() -> dict:
    return yaml.safe_load((ROOT / "config" / "local.yaml").read_text())


def test_shipped_configs_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("SOURCE_AWS_SECRET_ACCESS_KEY", "secret")
    example = Config.load(ROOT / "config" / "example.yaml")
    assert len(example.regions) == 3
    assert example.source.credentials is not None
    assert example.source.credentials.access_key_id == "AKIAEXAMPLE"
    local = Config.load(ROOT / "config" / "local.yaml")
    assert [r.endpoint_url for r in local.regions] == [
        "http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"]
    assert local.replication.multipart_threshold == 8 * 2**20
    events = Config.load(ROOT / "config" / "local-events.yaml")
    assert (events.feed.kind, events.feed.queue) == ("events", "demo-events")


def test_config_is_frozen() -> None:
    config = Config.parse(_base())
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.shutdown_grace = 1  # type: ignore[misc]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c["regions"][2].update(endpoint_url="not a url"), "regions[2].endpoint_url: invalid URL"),
    (lambda c: c["regions"][1].update(name=c["regions"][0]["name"]), "is used twice"),
    (lambda c: c.update(regions=[]), "regions: Tuple should have at least 1 item"),
    (lambda c: c["replication"].update(part_size="lots"), "replication.part_size: not a size"),
    (lambda c: c["replication"].update(concurrency=0), "replication.concurrency: Input should be greater"),
    (lambda c: c["replication"].update(checksum_algorithm="md4"), "replication.checksum_algorithm"),
    (lambda c: c["source"].pop("bucket"), "source.bucket: Field required"),
    (lambda c: c["source"].update(colour="blue"), "source.colour: unknown field"),
    (lambda c: c["regions"][0]["credentials"].pop("secret_access_key"), "go together"),
    (lambda c: c.update(http={"listen": "9108"}), "http.listen: expected host:port"),
    (lambda c: c["feed"].update(kind="events"), "feed: feed.kind events needs feed.queue"),
])
def test_bad_config_names_the_field(mutate, message: str) -> None:
    raw = _base()
    mutate(raw)
    with pytest.raises(ConfigError) as caught:
        Config.parse(raw)
    assert message in str(caught.value)


def test_env_references_expand_and_missing_ones_are_named(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _base()
    raw["regions"][1]["credentials"] = {"access_key_id": "${R2_KEY}", "secret_access_key": "${R2_SECRET}"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("R2_KEY", "key-from-env")
    monkeypatch.delenv("R2_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"regions\[1\]\.credentials\.secret_access_key: "
                                          "environment variable R2_SECRET is not set"):
        Config.load(path)
    monkeypatch.setenv("R2_SECRET", "s3cr3t")
    creds = Config.load(path).regions[1].credentials
    assert creds is not None and (creds.access_key_id, creds.secret_access_key) == ("key-from-env", "s3cr3t")


def test_journal_only_commands_run_without_the_secrets(tmp_path: Path) -> None:
    raw = _base()
    raw["source"]["credentials"] = {"access_key_id": "${NO_SUCH_VAR_1}",
                                    "secret_access_key": "${NO_SUCH_VAR_2}"}
    raw["journal"]["path"] = str(tmp_path / "j.db")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    status = subprocess.run([sys.executable, "-m", "replicator", "status", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    sync = subprocess.run([sys.executable, "-m", "replicator", "sync", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert sync.returncode == 2 and "NO_SUCH_VAR_1 is not set" in sync.stderr


def test_sizes_accept_units() -> None:
    raw = _base()
    raw["replication"].update(multipart_threshold="1GiB", part_size="8 MB")
    options = Config.parse(raw).replication
    assert (options.multipart_threshold, options.part_size) == (2**30, 8_000_000)


def test_prefix_filters() -> None:
    raw = _base()
    raw["replication"].update(include_prefixes=["logs/", "img/"], exclude_prefixes=["logs/tmp/"])
    wants = Config.parse(raw).replication.wants
    assert [wants(k) for k in ("logs/a", "img/b", "logs/tmp/c", "other")] == [True, True, False, False]


@pytest.mark.parametrize("command", ["run", "sync", "status"])
def test_cli_exits_2_naming_the_field(tmp_path: Path, command: str) -> None:
    raw = _base()
    raw["regions"][2]["endpoint_url"] = "ftp//nowhere"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "replicator", command, "-c", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "regions[2].endpoint_url: invalid URL" in proc.stderr


def test_cli_unreadable_file_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "replicator", "sync", "-c", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(("broken", "line"), [
    (f'    secret_access_key: "{SECRET}\n', 6),  # an unterminated quote runs to the end
    (f"    secret_access_key: {SECRET}: x\n", 6),  # a second colon on the line
    (f"    secret_access_key: {SECRET}\n\tbroken: [\n", 7),  # a tab where indentation goes
], ids=["unterminated quote", "second colon", "tab"])
def test_a_yaml_error_names_line_and_column_but_never_echoes_the_file(
        tmp_path: Path, broken: str, line: int) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("source:\n  bucket: my-data\n  credentials:\n    access_key_id: AKIAEXAMPLE\n"
                    "    # the secret follows\n" + broken + "regions: []\n")
    with pytest.raises(ConfigError) as caught:
        Config.load(path)
    message = str(caught.value)
    assert not _echoes_the_secret(message) and "AKIAEXAMPLE" not in message, message
    assert "\n" not in message, message
    assert message.startswith(f"{path}: not valid YAML: line ") and f"line {line}, column " in message
    proc = subprocess.run([sys.executable, "-m", "replicator", "sync", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert not _echoes_the_secret(proc.stderr), proc.stderr


def _echoes_the_secret(text: str) -> bool:
    """Whether any 6 characters in a row of SECRET appear (YAML quotes lines from the middle)."""
    return any(SECRET[i:i + 6] in text for i in range(len(SECRET) - 5))


def test_an_empty_env_reference_is_an_error_naming_variable_and_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _base()
    raw["regions"][1]["credentials"] = {"access_key_id": "${R2_KEY}", "secret_access_key": "${R2_SECRET}"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("R2_KEY", "key-from-env")
    monkeypatch.setenv("R2_SECRET", "")
    with pytest.raises(ConfigError, match=r"regions\[1\]\.credentials\.secret_access_key: "
                                          "environment variable R2_SECRET is empty"):
        Config.load(path)
    monkeypatch.setenv("R2_KEY", "")  # both empty would silently mean "the ambient AWS chain"
    with pytest.raises(ConfigError, match=r"regions\[1\]\.credentials\.access_key_id: "
                                          "environment variable R2_KEY is empty"):
        Config.load(path)
    # Journal-only commands need no secrets: unset or empty, they are not looked at.
    assert Config.load(path, need_secrets=False).regions[1].name
