"""The SQS adapter: the events feed's queue, behind the same error translation as S3."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .retry import RequestRetry
from .s3 import translated


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    receipt: str
    body: str


class SqsQueue:
    """One SQS queue: long-poll receive, batch delete, visibility extension."""

    def __init__(self, client: Any, name: str, retry: RequestRetry) -> None:
        self._client = client
        self.name = name
        self._retry = retry
        self.url = ""

    async def _call(self, op: str, fn: Any) -> Any:
        async def attempt() -> Any:
            with translated("queue", op):
                return await fn()
        return await self._retry.call(attempt, name="queue", op=op)

    async def resolve(self) -> str:
        resp = await self._call("GetQueueUrl", lambda: self._client.get_queue_url(QueueName=self.name))
        self.url = str(resp["QueueUrl"])
        return self.url

    async def receive(self, *, wait: int, visibility: int) -> list[Message]:
        resp = await self._call("ReceiveMessage", lambda: self._client.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
            VisibilityTimeout=visibility))
        return [Message(m["MessageId"], m["ReceiptHandle"], m.get("Body", ""))
                for m in resp.get("Messages", ())]

    async def delete(self, messages: list[tuple[str, str]]) -> None:
        """Acknowledge (id, receipt) pairs; a stale receipt is already someone else's."""
        for start in range(0, len(messages), 10):
            batch = messages[start:start + 10]
            await self._call("DeleteMessageBatch", lambda batch=batch: self._client.delete_message_batch(
                QueueUrl=self.url, Entries=[{"Id": str(i), "ReceiptHandle": receipt}
                                            for i, (_, receipt) in enumerate(batch)]))

    async def extend(self, receipt: str, seconds: int) -> None:
        await self._call("ChangeMessageVisibility", lambda: self._client.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds))
