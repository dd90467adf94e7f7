"""The benchmark behind `make bench`: `replicator sync` against `rclone copy` on local endpoints."""
