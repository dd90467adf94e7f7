"""aiobotocore clients: one per distinct endpoint and credentials, sharing one session.

Every S3 and SQS client the service uses is made here, with the settings the
data path depends on (tenacity retries instead of botocore's, our own checksums,
unsigned payloads, connection limits and timeouts).
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiobotocore.session import AioSession
from botocore.config import Config as BotoConfig

from .config import Endpoint


def _s3_options(addressing: str) -> Any:
    """Every body carries Content-MD5 (a signed header) and x-amz-checksum-*, so the server
    proves its integrity; SigV4-hashing it once more per region would be pure CPU."""
    return {"payload_signing_enabled": False, "addressing_style": addressing}


class Clients:
    """One aiobotocore client per distinct endpoint and credentials, created once."""

    def __init__(self, pool_size: int) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[Any, ...], Any] = {}
        # One session per profile: each session loads its own copy of the service
        # models, about 12 MiB per client otherwise.
        self._sessions: dict[str | None, AioSession] = {}
        self._boto_config = BotoConfig(
            max_pool_connections=pool_size,
            retries={"total_max_attempts": 1},  # tenacity retries; botocore must not as well
            request_checksum_calculation="when_required",  # we compute and send our own
            response_checksum_validation="when_required",
            connect_timeout=5, read_timeout=60, tcp_keepalive=True,  # > SQS long-poll wait
            s3=_s3_options("path"),
        )

    async def client_for(self, endpoint: Endpoint, service: str = "s3") -> Any:
        creds = endpoint.credentials
        key = (service, endpoint.endpoint_url, endpoint.region, creds)
        if key not in self._clients:
            profile = creds.profile if creds else None
            if profile not in self._sessions:
                self._sessions[profile] = AioSession(profile=profile)
            session = self._sessions[profile]
            kwargs: dict[str, Any] = {}
            if creds and creds.access_key_id:
                kwargs = {"aws_access_key_id": creds.access_key_id,
                          "aws_secret_access_key": creds.secret_access_key,
                          "aws_session_token": creds.session_token}
            config = self._boto_config
            if endpoint.endpoint_url is None:
                config = config.merge(BotoConfig(s3=_s3_options("auto")))
            self._clients[key] = await self._stack.enter_async_context(session.create_client(
                service, endpoint_url=endpoint.endpoint_url, region_name=endpoint.region,
                config=config, **kwargs))
        return self._clients[key]

    async def close(self) -> None:
        await self._stack.aclose()
