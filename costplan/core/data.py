"""Where the user-facing data files live: ``schemas/``.

They sit at the top of the repository (they are part of the contract a user
reads) and ship inside the wheel as ``costplan/_data/``. One function finds
them either way, so every stage that reads them agrees.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def data_dir(name: str, checkout_root: Path = CHECKOUT_ROOT) -> Path:
    """``<checkout>/<name>`` in a source checkout, else the packaged ``_data/<name>``."""
    local = checkout_root / name
    if local.is_dir():
        return local
    return Path(str(resources.files("costplan") / "_data" / name))
