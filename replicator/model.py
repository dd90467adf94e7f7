"""Typed values that flow between the pipeline stages."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

#: User-metadata keys (sent as ``x-amz-meta-<key>``) that every replica carries,
#: so that a copy can be recognised, skipped, and never overwritten by an older one.
META_SOURCE_ETAG = "replicator-source-etag"
META_SOURCE_MTIME = "replicator-source-last-modified"
META_SOURCE_VERSION = "replicator-source-version-id"
#: The md5 and the additional checksum (``algorithm:base64``) of the bytes written, on a
#: single-part replica: they prove it intact where its etag cannot (SSE-KMS, SSE-C).
META_MD5 = "replicator-md5"
META_CHECKSUM = "replicator-checksum"
MARKER_KEYS = (META_SOURCE_ETAG, META_SOURCE_MTIME, META_SOURCE_VERSION, META_MD5, META_CHECKSUM)


class Kind(enum.StrEnum):
    PUT = "put"
    DELETE = "delete"


class Outcome(enum.StrEnum):
    """What happened to one change in one region."""

    COPIED = "copied"        # written and proven by checksum
    SKIPPED = "skipped"      # the region already held this content (or newer)
    DELETED = "deleted"      # replica removed (or already absent)
    SUPERSEDED = "superseded"  # the source changed; a newer change replaces this one
    FAILED = "failed"        # not done; stays in the journal with its reason


DONE = frozenset({Outcome.COPIED, Outcome.SKIPPED, Outcome.DELETED, Outcome.SUPERSEDED})


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one source key: the newest known state of that key."""

    key: str
    kind: Kind
    etag: str = ""
    size: int = 0
    last_modified: float = 0.0
    version_id: str | None = None
    origin: float = 0.0  # when lag starts counting: the source write, or when first seen

    @property
    def multipart_etag(self) -> bool:
        return "-" in self.etag


@dataclass(frozen=True, slots=True)
class RegionResult:
    """The outcome of one change in one region."""

    region: str
    outcome: Outcome
    nbytes: int = 0
    reason: str | None = None
    error: str | None = None
    permanent: bool = False  # retrying soon will not help; wait for the cause to be fixed
    at_source: bool = False  # the source failed, not this region
    #: Copied, but the bytes could not be proven (the source offers no digest of them,
    #: or an encrypted destination echoed no checksum): counted and logged, never hidden.
    unproven: bool = False
    #: When this region's outcome was known: its lag ends here, not when the slowest
    #: region of the same copy is done.
    finished: float = field(default_factory=time.time, compare=False)

    @property
    def done(self) -> bool:
        return self.outcome in DONE


#: Storage classes whose objects cannot be read until restored (GET answers InvalidObjectState).
ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


@dataclass(frozen=True, slots=True)
class Listed:
    """One entry of a bucket listing."""

    key: str
    etag: str
    size: int
    last_modified: float
    storage_class: str | None = None

    @property
    def archived(self) -> bool:
        return self.storage_class in ARCHIVED_CLASSES


@dataclass(frozen=True, slots=True)
class Written:
    """What a PUT, UploadPart or CompleteMultipartUpload returned."""

    etag: str
    checksum: str | None = None
    #: Stored under SSE-KMS or SSE-C: the etag is not the md5 of the bytes.
    encrypted: bool = False
