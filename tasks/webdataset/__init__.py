"""WebDataset connector: tar shards (brace patterns) into items and their components.

`ingest_shards` lives in `tasks.webdataset.ingest`; this package root imports only what parsing needs,
so a Ray worker that runs `parse_shard` does not load the checks (Great Expectations) it never uses.
"""

from .components import COMPONENTS_SCHEMA, components_name, ensure_components
from .patterns import expand_pattern
from .shard import ParsedShard, parse_shard

__all__ = ["COMPONENTS_SCHEMA", "ParsedShard", "components_name", "ensure_components", "expand_pattern", "parse_shard"]
