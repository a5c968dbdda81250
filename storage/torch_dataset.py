"""A PyTorch map-style dataset over random access rows. Imported only when torch is installed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from .access import RandomAccess


class TorchDataset(Dataset[Any]):
    """Rows of one snapshot by index, as dicts or as whatever `transform` makes of each row.

    Picklable (the transform must be too), so DataLoader worker processes each open their own files.
    """

    def __init__(self, access: RandomAccess, transform: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.access = access
        self.transform = transform

    def __len__(self) -> int:
        return len(self.access)

    def __getitem__(self, index: int) -> Any:
        row = self.access[index]
        return row if self.transform is None else self.transform(row)

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        # DataLoader calls this with a whole batch of indices: one grouped read instead of one per row.
        rows = self.access.__getitems__(indices)
        return rows if self.transform is None else [self.transform(r) for r in rows]
