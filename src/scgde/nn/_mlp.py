"""A small fully connected block used by encoders and generators."""

from torch import nn


def mlp(
    n_in: int, n_out: int, n_hidden: int, n_layers: int = 1, dropout: float = 0.0
) -> nn.Sequential:
    """Build ``n_layers`` hidden layers (Linear, LayerNorm, GELU, Dropout) and a linear output.

    Parameters
    ----------
    n_in, n_out
        Input and output widths.
    n_hidden
        Width of the hidden layers.
    n_layers
        Number of hidden layers (0 gives a single linear map).
    dropout
        Dropout rate after each hidden layer.
    """
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(width, n_hidden), nn.LayerNorm(n_hidden), nn.GELU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = n_hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)
