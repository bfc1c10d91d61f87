"""The batch's KV cache: per layer, keys and values [rows, kv_heads, capacity, head_dim].

Preallocated: a decode step writes one column in place; nothing is concatenated per step.
Rows are left-aligned to a common column count (`width`): row r holds tokens in columns
[starts[r], width) and padding before them, so every row's next token goes in column
`width` and one mask column rule (column ≥ start) describes all the padding. Capacity
grows by doubling when a step would pass it; rows leave (`select`) and join (`join`)
between steps, the only times the cache is copied.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for a batch of rows."""

    def __init__(self, layers: int, rows: int, kv_heads: int, head_dim: int, capacity: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        shape = (rows, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.width = 0
        self.starts: list[int] = [0] * rows  # each row's first real column
        self.device = device
        self._starts: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        """How many rows the cache holds."""
        return len(self.starts)

    @property
    def capacity(self) -> int:
        """Columns allocated per row."""
        return self.keys[0].shape[2] if self.keys else 0

    def starts_tensor(self) -> torch.Tensor:
        """`starts` on the device (kept until the rows change)."""
        if self._starts is None:
            self._starts = torch.tensor(self.starts, dtype=torch.long, device=self.device)
        return self._starts

    def reserve(self, columns: int) -> None:
        """Make room for `columns` more columns past `width`."""
        needed = self.width + columns
        if needed <= self.capacity:
            return
        grown = max(needed, 2 * self.capacity)
        self.keys = [_widen(t, grown) for t in self.keys]
        self.values = [_widen(t, grown) for t in self.values]

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store a forward's new keys and values at columns [width, width + tokens)."""
        end = self.width + keys.shape[2]
        self.keys[layer][:, :, self.width:end] = keys
        self.values[layer][:, :, self.width:end] = values

    def view(self, layer: int, first: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Columns [first, end) of a layer's keys and values (views, no copy)."""
        return (self.keys[layer][:, :, first:end], self.values[layer][:, :, first:end])

    def select(self, rows: list[int]) -> None:
        """Keep only these rows (in this order)."""
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.keys = [t.index_select(0, index) for t in self.keys]
        self.values = [t.index_select(0, index) for t in self.values]
        self.starts = [self.starts[r] for r in rows]
        self._starts = None
        self.trim()

    def join(self, other: KVCache) -> None:
        """Append another cache's rows, shifting the narrower one right so both end at the
        same column (the shift is padding, before the rows' starts)."""
        width = max(self.width, other.width)
        capacity = max(self.capacity - self.width, other.capacity - other.width) + width
        mine = [_shift(t, width - self.width, self.width, capacity) for t in self.keys]
        theirs = [_shift(t, width - other.width, other.width, capacity) for t in other.keys]
        self.keys = [torch.cat(pair) for pair in zip(mine, theirs, strict=True)]
        mine = [_shift(t, width - self.width, self.width, capacity) for t in self.values]
        theirs = [_shift(t, width - other.width, other.width, capacity) for t in other.values]
        self.values = [torch.cat(pair) for pair in zip(mine, theirs, strict=True)]
        self.starts = ([s + width - self.width for s in self.starts]
                       + [s + width - other.width for s in other.starts])
        self.width = width
        self._starts = None

    def trim(self) -> None:
        """Drop the leading columns that are padding in every row (left by rows that left)."""
        cut = min(self.starts, default=0)
        if cut == 0:
            return
        self.keys = [_shift(t, -cut, self.width, t.shape[2]) for t in self.keys]
        self.values = [_shift(t, -cut, self.width, t.shape[2]) for t in self.values]
        self.starts = [s - cut for s in self.starts]
        self.width -= cut
        self._starts = None


def _widen(tensor: torch.Tensor, capacity: int) -> torch.Tensor:
    grown = tensor.new_zeros((*tensor.shape[:2], capacity, tensor.shape[3]))
    grown[:, :, :tensor.shape[2]] = tensor
    return grown


def _shift(tensor: torch.Tensor, by: int, width: int, capacity: int) -> torch.Tensor:
    """Columns [0, width) moved `by` columns right (left when negative) in a new tensor."""
    moved = tensor.new_zeros((*tensor.shape[:2], capacity, tensor.shape[3]))
    if by >= 0:
        moved[:, :, by:by + width] = tensor[:, :, :width]
    else:
        moved[:, :, :width + by] = tensor[:, :, -by:width]
    return moved
