"""replicator: keep three regional copies of an S3 bucket, and prove every copy."""

from .config import Config
from .errors import ConfigError, ReplicatorError
from .service import Service

__all__ = ["Config", "ConfigError", "ReplicatorError", "Service"]
__version__ = "0.1.0"
