"""WebDataset connector: tar shards (brace patterns) into items and their components.

`ingest_shards` (and `write_shards`/`commit_shards`) live in `tasks.webdataset.ingest`, the per-shard work
of a worker in `tasks.webdataset.worker`; this package root imports only what parsing needs, so parsing a
shard does not load the checks (Great Expectations).
"""

from .components import COMPONENTS_SCHEMA, components_name, ensure_components
from .patterns import expand_pattern
from .shard import ParsedShard, parse_shard

__all__ = ["COMPONENTS_SCHEMA", "ParsedShard", "components_name", "ensure_components", "expand_pattern", "parse_shard"]
