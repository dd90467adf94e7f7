"""A bare listing of a bucket with aiobotocore, the replicator's own client library: the
floor that an unchanged `replicator sync` (list, diff, copy nothing) is held against.

Usage: python -m bench.listing ENDPOINT_URL BUCKET   (prints the number of keys)
"""

from __future__ import annotations

import asyncio
import sys

from aiobotocore.session import AioSession
from botocore.config import Config

from .servers import ACCESS_KEY, SECRET_KEY


async def count(url: str, bucket: str) -> int:
    session = AioSession()
    async with session.create_client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, config=Config(s3={"addressing_style": "path"})) as s3:
        keys = 0
        async for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, PaginationConfig={"PageSize": 1000}):
            keys += len(page.get("Contents", ()))
        return keys


if __name__ == "__main__":
    print(asyncio.run(count(sys.argv[1], sys.argv[2])))
