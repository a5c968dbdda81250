"""Defaults shared by the flows, deployments and the CLI."""

from __future__ import annotations

DEFAULT_CATALOG = "./lakehouse"
CATALOG_ENV = "LABELHOUSE_CATALOG"
DEFAULT_PROJECT = "default"
MAX_FAILURE_RATE = 0.1  # above this share of failing rows in a table, a batch is refused, not quarantined
DEFAULT_MAINTENANCE_CRON = "0 3 * * *"  # nightly
DEFAULT_PULL_CRON = "*/15 * * * *"
DEFAULT_BUCKET_CRON = "*/5 * * * *"
