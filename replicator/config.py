"""The configuration file: one YAML document, validated into a frozen model.

``Config.load(path)`` is the only way in. Strings may reference environment
variables as ``${NAME}`` so that secrets never have to be written in the file.
Every error names the field path and the problem, e.g.
``regions[2].endpoint_url: invalid URL``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from .errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: ``${NAME}`` as the loader hands it to YAML: ``{`` and ``}`` would open and close a mapping
#: in flow style (``{key: ${NAME}}``), these private-use characters are plain text anywhere,
#: and the width is the same, so YAML's error columns still match the file.
_HIDDEN_REF = re.compile("\\$\ue000([A-Za-z_][A-Za-z0-9_]*)\ue001")
#: The sizes ByteSize is given: bytes, or a number and one of B, KB…PB (powers of 10) and
#: KiB…PiB (powers of 2), as before. ByteSize alone would also take bare letters (``8M``: a
#: million bytes to it, 8 MiB to rclone and docker), bits, and words after the unit.
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*([KMGTP]i?B|B)?\s*$", re.IGNORECASE)


def _parse_size(value: Any) -> Any:
    """Refuse a size whose unit could be misread; pydantic's ByteSize does the arithmetic."""
    if isinstance(value, str) and not _SIZE.match(value):
        raise ValueError("not a size: use bytes or a unit such as 8MiB (MB = 10^6 bytes, MiB = 2^20)")
    return value


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("invalid URL")
    try:
        _ = parsed.port  # raises on a port out of range or not a number
    except ValueError:
        raise ValueError("invalid URL") from None
    return value.rstrip("/")


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port, e.g. 127.0.0.1:9108")
    return value


Size = Annotated[ByteSize, BeforeValidator(_parse_size), Field(gt=0)]
Url = Annotated[str | None, AfterValidator(_check_url)]
#: A field path and what is wrong with it.
Problem = tuple[tuple[Any, ...], str]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Credentials(_Model):
    """Where a client's credentials come from; omit for the standard AWS chain."""

    profile: str | None = Field(None, description="named profile from ~/.aws/config")
    access_key_id: str | None = Field(None, description="access key id, usually ${ENV_VAR}")
    secret_access_key: str | None = Field(None, description="secret key, usually ${ENV_VAR}")
    session_token: str | None = Field(None, description="session token for temporary credentials")

    @model_validator(mode="after")
    def _one_kind(self) -> Credentials:
        keys = (self.access_key_id, self.secret_access_key)
        if self.profile and any(keys):
            raise ValueError("give either profile or access keys, not both")
        if any(keys) and not all(keys):
            raise ValueError("access_key_id and secret_access_key go together")
        return self


class Endpoint(_Model):
    """A bucket on an S3 endpoint."""

    bucket: str = Field(min_length=3, max_length=63, description="bucket name")
    endpoint_url: Url = Field(None, description="S3 endpoint; omit for AWS")
    region: str = Field("us-east-1", description="signing region of the endpoint")
    credentials: Credentials | None = Field(None, description="omit for the AWS chain")


class Source(Endpoint):
    """The bucket that is watched."""

    sse_customer_key: str | None = Field(
        None, description="SSE-C: the base64 256-bit key the source's objects are encrypted "
        "with, usually ${ENV_VAR}; sent with every read of the source")

    @model_validator(mode="after")
    def _key_is_256_bits(self) -> Source:
        if self.sse_customer_key is not None:
            try:
                key = base64.b64decode(self.sse_customer_key, validate=True)
            except binascii.Error:
                raise ValueError("sse_customer_key: not base64") from None
            if len(key) != 32:
                raise ValueError(f"sse_customer_key: {len(key) * 8} bits, SSE-C needs 256")
        return self

    def read_args(self) -> dict[str, Any]:
        """What every read of the source sends (botocore adds the key's MD5 itself)."""
        if self.sse_customer_key is None:
            return {}
        return {"SSECustomerAlgorithm": "AES256",
                "SSECustomerKey": base64.b64decode(self.sse_customer_key)}


class Region(Endpoint):
    """One regional copy."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="label in logs and metrics")
    storage_class: str | None = Field(None, description="storage class of replicas, e.g. STANDARD_IA")
    sse: Literal["AES256", "aws:kms"] | None = Field(
        None, description="server-side encryption of replicas; omit for the bucket's default")
    kms_key_id: str | None = Field(None, description="sse aws:kms: the KMS key (id, ARN or alias); "
                                   "omit for the account's aws/s3 key")

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> Region:
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError("kms_key_id needs sse: aws:kms")
        return self

    def write_args(self) -> dict[str, Any]:
        """What every object created in this region is sent with."""
        args: dict[str, Any] = {"ServerSideEncryption": self.sse} if self.sse else {}
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args


class Replication(_Model):
    include_prefixes: tuple[str, ...] = Field((), description="replicate only keys under these")
    exclude_prefixes: tuple[str, ...] = Field((), description="never replicate keys under these")
    replicate_deletes: bool = Field(True, description="delete replicas of keys deleted at the source")
    concurrency: int = Field(16, ge=1, le=1024, description="objects copied at once")
    multipart_threshold: Size = Field(ByteSize(16 * 2**20),
                                      description="objects larger than this go multipart")
    part_size: Size = Field(ByteSize(8 * 2**20), description="multipart part size (S3 needs >= 5MiB)")
    parts_in_flight: int = Field(4, ge=1, le=64, description="parts of one object buffered at once")
    max_bytes_in_flight: Size = Field(ByteSize(48 * 2**20), description="bytes of object data held in "
                                      "memory at once, across all copies")
    checksum_algorithm: Literal["sha256", "sha1", "crc32", "crc32c", "crc64nvme", "none"] = Field(
        "sha256", description="additional checksum sent with every write and checked against "
        "what the region stores; none for S3-compatible stores that reject x-amz-checksum-* "
        "(Content-MD5 is still sent)")

    def wants(self, key: str) -> bool:
        """Whether a key is in scope for replication."""
        if self.include_prefixes and not key.startswith(self.include_prefixes):
            return False
        return not key.startswith(self.exclude_prefixes) if self.exclude_prefixes else True


class Feed(_Model):
    kind: Literal["poll", "events"] = Field(
        "poll", description="poll: list the source on an interval; events: S3 event "
        "notifications from an SQS queue, plus a periodic listing sweep")
    poll_interval: float = Field(30.0, gt=0, description="seconds between source listings")
    queue: str | None = Field(None, description="events: SQS queue name (on the source's "
                              "endpoint, with its credentials)")
    sweep_interval: float = Field(3600.0, gt=0, description="events: seconds between listing "
                                  "sweeps that catch what events missed (deletes, lost events)")
    visibility_timeout: int = Field(60, ge=1, le=43200, description="events: seconds a received "
                                    "message stays hidden; extended while its copy runs")
    wait_time: int = Field(20, ge=0, le=20, description="events: SQS long-poll seconds")
    max_receives: int = Field(5, ge=1, description="events: receives before SQS moves a message "
                              "to the dead-letter queue (set by `replicator setup-events`)")

    @model_validator(mode="after")
    def _queue_for_events(self) -> Feed:
        if self.kind == "events" and not self.queue:
            raise ValueError("feed.kind events needs feed.queue (an SQS queue name)")
        return self


class Journal(_Model):
    path: Path = Field(Path("replicator.db"), description="SQLite file of pending work")


class Retry(_Model):
    request_attempts: int = Field(4, ge=1, le=20, description="tries of one request")
    request_backoff: float = Field(0.2, gt=0, description="first back-off between tries, seconds")
    request_backoff_max: float = Field(10.0, gt=0, description="longest back-off between tries")
    item_attempts: int = Field(8, ge=1, description="copies of one item before it is marked failed")
    item_backoff: float = Field(2.0, gt=0, description="first delay before an item is retried")
    item_backoff_max: float = Field(300.0, gt=0, description="longest delay between item retries")
    failed_interval: float = Field(900.0, gt=0, description="how often failed items are tried again")


class Http(_Model):
    listen: Annotated[str, AfterValidator(_check_listen)] = Field(
        "127.0.0.1:9108", description="address of /metrics, /healthz, /readyz, /status")
    lag_slo: float = Field(300.0, gt=0, description="oldest-pending age that alerts page on")


class Breaker(_Model):
    failures: int = Field(5, ge=1, description="consecutive failures that take a region out")
    probe_interval: float = Field(15.0, gt=0, description="seconds between reachability probes; "
                                  "a region taken out is probed this often to bring it back")


class Deletes(_Model):
    max_per_pass: int = Field(10000, ge=0, description="a pass deleting more waits for approval")
    max_fraction: float = Field(0.5, ge=0, le=1, description="same, as a fraction of the listing "
                                "(applies once a pass deletes more than 10 objects)")

    def allows(self, deletes: int, listed_before: int, listed_now: int) -> bool:
        """Whether a pass may delete this many replicas without an operator's approval."""
        if listed_now == 0 and deletes:
            return False  # a source that suddenly lists empty is far likelier broken than emptied
        if deletes > self.max_per_pass:
            return False
        return deletes <= 10 or deletes <= self.max_fraction * max(listed_before, 1)


class Audit(_Model):
    interval: float = Field(3600.0, gt=0, description="seconds between consistency audits")
    repair: bool = Field(True, description="queue every difference an audit finds for replication")


class Config(_Model):
    source: Source
    regions: tuple[Region, ...] = Field(min_length=1, description="the copies; three in production")
    replication: Replication = Replication()
    feed: Feed = Feed()
    journal: Journal = Journal()
    retry: Retry = Retry()
    http: Http = Http()
    audit: Audit = Audit()
    breaker: Breaker = Breaker()
    delete_guard: Deletes = Deletes()
    shutdown_grace: float = Field(30.0, ge=0, description="seconds to finish copies on SIGTERM")

    @model_validator(mode="after")
    def _unique_regions(self) -> Config:
        seen: set[str] = set()
        for region in self.regions:
            if region.name in seen:
                raise ValueError(f"region name {region.name!r} is used twice")
            seen.add(region.name)
        return self

    @classmethod
    def load(cls, path: str | Path, *, need_secrets: bool = True) -> Config:
        """Read, expand ``${VAR}`` references and validate; raise ConfigError.

        Commands that only read the journal pass ``need_secrets=False``, so an
        operator can run them without the service's credentials in the environment.
        """
        try:
            raw = yaml.safe_load(_hide_refs(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text: byte {exc.start}") from None
        except yaml.YAMLError as exc:
            # `from None`: the YAML error quotes the offending line, which may hold a secret.
            raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        unset: list[Problem] = []
        return cls.parse(_expand(raw, (), need_secrets, unset), origin=str(path), problems=unset)

    @classmethod
    def parse(cls, raw: dict[str, Any], origin: str = "config",
              problems: Sequence[Problem] = ()) -> Config:
        """Validate; one ConfigError naming every problem at once (``problems`` found before,
        such as unset variables, come first), so a file is fixed in one go, not one by one."""
        try:
            config = cls.model_validate(raw)
        except ValidationError as exc:
            # An error inside or around a field whose variable is unset only follows from it.
            found = [*problems, *((e["loc"], _message(e)) for e in exc.errors()
                                  if not any(_related(e["loc"], loc) for loc, _ in problems))]
        else:
            if not problems:
                return config
            found = list(problems)
        text = "; ".join(f"{_field_path(loc)}: {message}" for loc, message in found)
        count = f"{len(found)} problems: " if len(found) > 1 else ""
        raise ConfigError(f"{origin}: {count}{text}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what is wrong, never the file's text: PyYAML's own message quotes the
    offending line (a credential, as likely as not), and that line would reach the logs."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        out = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem or 'syntax error'}"
        if exc.context and exc.context_mark is not None:
            start = exc.context_mark
            out += f" ({exc.context} at line {start.line + 1}, column {start.column + 1})"
    elif isinstance(exc, yaml.reader.ReaderError):
        out = f"character {exc.position + 1}: {exc.reason}"
    else:
        out = type(exc).__name__
    return " ".join(out.split())  # one line, whatever the problem text holds


def _hide_refs(text: str) -> str:
    """The file's text with each ``${NAME}`` in a form YAML takes as plain text everywhere.

    Expanding before parsing would make ``{key: ${NAME}}`` work too, but a value holding YAML
    syntax (a secret with ``#``, ``: `` or ``}``) would then change the file's structure;
    references are expanded after parsing instead (``_expand``), into the values only.
    """
    return _ENV_REF.sub(lambda m: f"$\ue000{m.group(1)}\ue001", text)


def _show_refs(text: str) -> str:
    return _HIDDEN_REF.sub(lambda m: f"${{{m.group(1)}}}", text)


def _expand(value: Any, path: tuple[Any, ...], strict: bool, problems: list[Problem]) -> Any:
    """Values with their ``${NAME}`` references replaced from the environment; each unset (or,
    when ``strict``, empty) variable is appended to ``problems``, all of them, not the first."""
    if isinstance(value, dict):
        shown = [(_show_refs(k) if isinstance(k, str) else k, v) for k, v in value.items()]
        return {k: _expand(v, (*path, k), strict, problems) for k, v in shown}
    if isinstance(value, list):
        return [_expand(v, (*path, i), strict, problems) for i, v in enumerate(value)]
    if isinstance(value, str):
        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            found = os.environ.get(name)
            if strict and found is None:
                problems.append((path, f"environment variable {name} is not set"))
            # An empty credential would silently mean "the ambient AWS chain": another identity.
            elif strict and found == "":
                problems.append((path, f"environment variable {name} is empty"))
            return found or ""
        return _ENV_REF.sub(lookup, _show_refs(value))
    return value


def _related(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether one field path contains the other (``credentials`` and ``credentials.key``);
    the top level contains everything, so it counts as related to nothing."""
    return bool(a and b) and (a[:len(b)] == b or b[:len(a)] == a)


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(error: Any) -> str:
    msg = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return msg.removeprefix("Value error, ")
