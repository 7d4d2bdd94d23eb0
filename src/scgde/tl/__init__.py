"""Tools on distribution embeddings, scanpy style: compute, write to ``adata``, return.

:func:`group_distances`
    Group × group distance matrix, between the groups' embeddings (``"euclidean"``) or between
    their cells (``"energy"``), written to ``adata.uns``.
"""

from ._distances import group_distances

__all__ = ["group_distances"]
