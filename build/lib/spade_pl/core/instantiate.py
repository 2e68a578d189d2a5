"""Building config nodes: Hydra's ``instantiate``, with our own input errors surfacing as themselves."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from spade_pl.core.errors import SpadeInputError


def build(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, but our own input errors surface as themselves (one line), not wrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, SpadeInputError):
            raise err.__cause__ from None
        raise
