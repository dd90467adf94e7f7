"""replicator: keep three regional copies of an S3 bucket, and prove every copy."""

from .config import Config
from .errors import ConfigError, ReplicatorError
from .service import Service
from .version import VERSION as __version__

__all__ = ["Config", "ConfigError", "ReplicatorError", "Service", "__version__"]
