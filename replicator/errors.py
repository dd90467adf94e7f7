"""The project's errors, sorted by what to do about them.

    ReplicatorError
    ├── ConfigError            bad configuration file; exit code 2
    ├── RetryableError         try again after a back-off
    │   ├── Throttled          503 SlowDown, 429; may carry Retry-After
    │   └── TransientError     5xx, timeouts, connection errors
    ├── PermanentError         retrying now will not help; fail fast with a reason
    │   ├── AccessDenied       wrong or expired credentials, missing permission
    │   ├── NoSuchBucket       the bucket does not exist
    │   ├── NoSuchKey          the object is gone (source vanished)
    │   ├── NoSuchQueue        the events feed's SQS queue does not exist
    │   ├── SourceChanged      the object changed under a pinned read (412)
    │   └── Archived           the source is in an archive class (GLACIER...); restore it first
    ├── ReplicaChanged         a conditional replica write lost (412): look again, then re-plan
    └── ChecksumMismatch       bytes differ from what was read; retry, never "done"

Every error carries a short ``reason`` code (``throttled``, ``network``,
``access_denied``...) used in the journal, logs and metrics. botocore errors are
translated into these in one place: ``replicator.s3``.
"""

from __future__ import annotations


class ReplicatorError(Exception):
    """Base of every error the service raises on purpose."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(ReplicatorError):
    """The configuration file is missing, unreadable or invalid."""

    reason = "config"


class RetryableError(ReplicatorError):
    """A fault that may pass: try again after a back-off."""

    reason = "network"


class Throttled(RetryableError):
    """The endpoint asked us to slow down."""

    reason = "throttled"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(RetryableError):
    """A server error, timeout or dropped connection."""

    reason = "network"


class PermanentError(ReplicatorError):
    """Retrying at once will not help; the item waits for its cause to be fixed."""

    reason = "permanent"


class AccessDenied(PermanentError):
    reason = "access_denied"


class NoSuchBucket(PermanentError):
    reason = "no_such_bucket"


class NoSuchKey(PermanentError):
    reason = "source_vanished"


class NoSuchQueue(PermanentError):
    reason = "no_such_queue"


class SourceChanged(PermanentError):
    """The source object was overwritten while it was being read."""

    reason = "source_changed"


class Archived(PermanentError):
    """GET answered InvalidObjectState: the object must be restored before it can be read."""

    reason = "archived"


class ReplicaChanged(ReplicatorError):
    """The replica is not the one the write was planned over: someone else wrote it since."""

    reason = "replica_changed"


class ChecksumMismatch(ReplicatorError):
    """Bytes written or read do not match their checksum: the copy is not done."""

    reason = "checksum_mismatch"
