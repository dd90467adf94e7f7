"""Configuration: valid files load, bad ones name the field and the problem.

The same errors through the command line (exit 2, one line) are in tests/system/test_cli_config.py."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from replicator.config import Config
from replicator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def base_config() -> dict:
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
    config = Config.parse(base_config())
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
    raw = base_config()
    mutate(raw)
    with pytest.raises(ConfigError) as caught:
        Config.parse(raw)
    assert message in str(caught.value)


def test_env_references_expand_and_missing_ones_are_named(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    raw = base_config()
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


def test_sizes_accept_units() -> None:
    raw = base_config()
    raw["replication"].update(multipart_threshold="1GiB", part_size="8 MB")
    options = Config.parse(raw).replication
    assert (options.multipart_threshold, options.part_size) == (2**30, 8_000_000)


@pytest.mark.parametrize(("size", "expected"), [
    (8388608, 8388608), ("8388608", 8388608), ("8MiB", 8 * 2**20), ("64 MB", 64 * 10**6),
    ("8mib", 8 * 2**20), ("512KiB", 512 * 2**10), ("2 kB", 2000), ("100B", 100), ("1TiB", 2**40),
    ("1.5GiB", 3 * 2**29),  # pydantic's ByteSize takes fractions, which the old parser did not
])
def test_sizes_keep_what_each_unit_meant(size: object, expected: int) -> None:
    """KB, MB, GB, TB are powers of 10 and KiB, MiB, GiB, TiB powers of 2, as they always were."""
    raw = base_config()
    raw["replication"]["part_size"] = size
    assert Config.parse(raw).replication.part_size == expected


@pytest.mark.parametrize("size", [
    "lots", "8M", "8 k", "64Mb it", "8Mbit", "8MiB of parts", "-8MiB", "0", 0, "0.1B", 8.5])
def test_sizes_refuse_what_could_be_misread(size: object) -> None:
    """A bare letter (``8M``: a million bytes to pydantic, 8 MiB to rclone and docker), bits,
    trailing words, and anything not above zero."""
    raw = base_config()
    raw["replication"]["part_size"] = size
    with pytest.raises(ConfigError, match=r"replication\.part_size: "):
        Config.parse(raw)


def test_every_error_in_a_file_is_reported_at_once(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    raw = base_config()
    raw["regions"][2]["endpoint_url"] = "not a url"
    raw["replication"]["part_size"] = "lots"
    raw["source"]["colour"] = "blue"
    raw["regions"][0]["credentials"] = {"access_key_id": "${NO_SUCH_KEY}",
                                        "secret_access_key": "${NO_SUCH_SECRET}"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    with pytest.raises(ConfigError) as caught:
        Config.load(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: 5 problems: "), message
    for problem in ("regions[0].credentials.access_key_id: environment variable NO_SUCH_KEY is not set",
                    "regions[0].credentials.secret_access_key: environment variable NO_SUCH_SECRET "
                    "is not set",
                    "source.colour: unknown field", "replication.part_size: not a size",
                    "regions[2].endpoint_url: invalid URL"):
        assert problem in message, (problem, message)
    # What only follows from a missing variable (empty keys) is not a problem of its own.
    assert "go together" not in message


def test_one_error_reads_as_before() -> None:
    raw = base_config()
    raw["regions"][2]["endpoint_url"] = "not a url"
    with pytest.raises(ConfigError) as caught:
        Config.parse(raw, origin="c.yaml")
    assert str(caught.value) == "c.yaml: regions[2].endpoint_url: invalid URL"


def test_env_references_work_in_flow_style_mappings_and_lists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``{key: ${VAR}}`` is a YAML error to a plain parser (``{`` opens a mapping); the
    loader keeps the reference whole, and expands it after parsing, so a value full of YAML
    syntax is taken as it is, never parsed."""
    text = (ROOT / "config" / "local.yaml").read_text(encoding="utf-8")
    text = text.replace("credentials: {access_key_id: testing, secret_access_key: testing}",
                        "credentials: {access_key_id: ${R_KEY}, secret_access_key: ${R_SECRET}}", 1)
    text = text.replace("replication:\n", "replication:\n  include_prefixes: [${PREFIX}, logs/]\n", 1)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    monkeypatch.setenv("R_KEY", "AKIA1")
    monkeypatch.setenv("R_SECRET", "a: b, {c}] #d")
    monkeypatch.setenv("PREFIX", "img/")
    config = Config.load(path)
    assert config.source.credentials is not None
    assert (config.source.credentials.access_key_id, config.source.credentials.secret_access_key) == (
        "AKIA1", "a: b, {c}] #d")
    assert config.replication.include_prefixes == ("img/", "logs/")
    monkeypatch.delenv("R_SECRET")
    with pytest.raises(ConfigError, match=r"source\.credentials\.secret_access_key: "
                                          "environment variable R_SECRET is not set"):
        Config.load(path)


def test_a_yaml_error_after_a_reference_names_the_right_column(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("source: {bucket: ${BUCKET}, region: [}\n")
    with pytest.raises(ConfigError, match=r"line 1, column 38: "):
        Config.load(path)


def test_prefix_filters() -> None:
    raw = base_config()
    raw["replication"].update(include_prefixes=["logs/", "img/"], exclude_prefixes=["logs/tmp/"])
    wants = Config.parse(raw).replication.wants
    assert [wants(k) for k in ("logs/a", "img/b", "logs/tmp/c", "other")] == [True, True, False, False]


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


#: Broken YAML around a secret, and the line the error must name.
BROKEN_YAML = [
    (f'    secret_access_key: "{SECRET}\n', 6),  # an unterminated quote runs to the end
    (f"    secret_access_key: {SECRET}: x\n", 6),  # a second colon on the line
    (f"    secret_access_key: {SECRET}\n\tbroken: [\n", 7),  # a tab where indentation goes
]
BROKEN_IDS = ["unterminated quote", "second colon", "tab"]


def write_broken(path: Path, broken: str) -> Path:
    path.write_text("source:\n  bucket: my-data\n  credentials:\n    access_key_id: AKIAEXAMPLE\n"
                    "    # the secret follows\n" + broken + "regions: []\n")
    return path


@pytest.mark.parametrize(("broken", "line"), BROKEN_YAML, ids=BROKEN_IDS)
def test_a_yaml_error_names_line_and_column_but_never_echoes_the_file(
        tmp_path: Path, broken: str, line: int) -> None:
    path = write_broken(tmp_path / "c.yaml", broken)
    with pytest.raises(ConfigError) as caught:
        Config.load(path)
    message = str(caught.value)
    assert not echoes_the_secret(message) and "AKIAEXAMPLE" not in message, message
    assert "\n" not in message, message
    assert message.startswith(f"{path}: not valid YAML: line ") and f"line {line}, column " in message


def echoes_the_secret(text: str) -> bool:
    """Whether any 6 characters in a row of SECRET appear (YAML quotes lines from the middle)."""
    return any(SECRET[i:i + 6] in text for i in range(len(SECRET) - 5))


def test_an_empty_env_reference_is_an_error_naming_variable_and_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = base_config()
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
    region = Config.load(path, need_secrets=False).regions[1]
    assert region.name == "us-east-1" and region.credentials is not None
    assert (region.credentials.access_key_id, region.credentials.secret_access_key) == ("", "")
