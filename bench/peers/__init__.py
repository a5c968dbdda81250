"""Engines under test: one adapter module each, all implementing `bench.peers.base.Peer`.

`PEERS` maps a peer's name to its module and the venv it runs in. Space needs pyarrow 15 and numpy<2, so
it runs in its own venv (`space`); every other engine runs in the project venv (`main`). Nothing here
imports an engine: the worker process of each peer imports only its own adapter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeerInfo:
    """Where a peer's adapter lives and which venv runs it."""

    name: str
    module: str
    venv: str = "main"


PEERS: dict[str, PeerInfo] = {
    p.name: p
    for p in (
        PeerInfo("labelhouse", "bench.peers.labelhouse_peer"),
        PeerInfo("lance", "bench.peers.lance_peer"),
        PeerInfo("delta", "bench.peers.delta_peer"),
        PeerInfo("iceberg", "bench.peers.iceberg_peer"),
        PeerInfo("hf_datasets", "bench.peers.hf_peer"),
        PeerInfo("parquet", "bench.peers.parquet_peer"),
        PeerInfo("space", "bench.peers.space_peer", venv="space"),
    )
}
