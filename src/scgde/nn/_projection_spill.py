"""A temporary file that holds chunks of cell projections the streaming encoder's memory
cache cannot keep.

:meth:`~scgde.nn.SetEncoder.encode_streaming` reads every cell once to project it, and needs
the projections again in each later pass. Those that do not fit in its memory budget are
written here, so that later passes read them back instead of reading and projecting the data
again: for a backed ``.h5ad``, reading a projection back from the operating system's file
cache is much cheaper than reading the counts from HDF5 and multiplying them again. Reads go
through explicit buffers (no memory map), so the file's pages never count in the process's
resident memory.

The file is a ring of at most ``budget`` bytes: when a chunk does not fit, the oldest chunks
are dropped (their space is reused) and the caller reads those again from the data. The
file is anonymous (:func:`tempfile.TemporaryFile`): it is gone when closed or when the
process ends, so nothing is ever left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque

import numpy as np
import psutil
import torch

#: Byte boundary of every tensor in the file, so that tensors read back are aligned.
_ALIGN = 64


def default_spill_bytes(folder: str | os.PathLike) -> int:
    """What a spill file may use by default: half the free space of ``folder``'s file system,
    and at most half the memory available now, so that the operating system's file cache
    can hold the file (beyond it, the file is read back from the disk) and a large
    embedding never fills the disk."""
    return min(shutil.disk_usage(folder).free, psutil.virtual_memory().available) // 2


class ProjectionSpill:
    """Chunks of tensors in a temporary file of at most ``budget`` bytes, oldest first.

    Parameters
    ----------
    folder
        Folder of the temporary file (it is created at the first :meth:`put`).
    budget
        Most bytes the file may hold (default: :func:`default_spill_bytes` of ``folder``).
    """

    def __init__(self, folder: str | os.PathLike, budget: int | None = None):
        self.folder = os.fspath(folder)
        self.budget = default_spill_bytes(self.folder) if budget is None else int(budget)
        self._file = None
        # per chunk: (offset, size, [(dtype, shape, device, offset within the chunk)])
        self._entries: deque[tuple[int, int, list]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, tensors: list[torch.Tensor]) -> int:
        """Append a chunk of tensors; returns how many chunks, the oldest first, were dropped
        to make room for it (itself included, as the last, if it is larger than the whole
        budget)."""
        layout, size = [], 0
        for t in tensors:
            layout.append((t.dtype, tuple(t.shape), t.device, size))
            size += -(-t.numel() * t.element_size() // _ALIGN) * _ALIGN
        size = max(size, _ALIGN)  # an empty chunk takes room too, so the ring stays ordered
        if size > self.budget:
            dropped = len(self._entries) + 1
            self._entries.clear()
            return dropped
        offset = self._entries[-1][0] + self._entries[-1][1] if self._entries else 0
        dropped = 0
        if offset + size > self.budget:  # wrap around to the start of the file
            # the oldest chunks lie after the newest: their space at the end is given up
            while self._entries and self._entries[0][0] >= offset:
                self._entries.popleft()
                dropped += 1
            offset = 0
        while self._entries and self._overlaps(self._entries[0], offset, size):
            self._entries.popleft()
            dropped += 1
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self.folder)
        for t, (*_, within) in zip(tensors, layout, strict=True):
            self._file.seek(offset + within)
            self._file.write(t.detach().cpu().contiguous().numpy().data)
        self._entries.append((offset, size, layout))
        return dropped

    @staticmethod
    def _overlaps(entry: tuple[int, int, list], offset: int, size: int) -> bool:
        return entry[0] < offset + size and offset < entry[0] + entry[1]

    def __iter__(self):
        """The kept chunks, oldest first, as lists of tensors on their original devices."""
        for offset, size, layout in self._entries:
            buffer = bytearray(size)
            self._file.seek(offset)
            self._file.readinto(buffer)
            tensors = []
            for dtype, shape, device, within in layout:
                n = int(np.prod(shape))
                t = (
                    torch.frombuffer(buffer, dtype=dtype, count=n, offset=within)
                    if n
                    else torch.empty(0, dtype=dtype)
                )
                tensors.append(t.reshape(shape).to(device))
            yield tensors

    def close(self) -> None:
        """Delete the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._entries.clear()
