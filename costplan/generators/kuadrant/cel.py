"""The CEL expressions the Kuadrant policies evaluate, built in one place.

Predicates select a tier's limits and counters split them per user. They are
assembled here from constant field paths and ``names.cel_string`` literals
only, so a tier name or user id can never become CEL syntax, and the tests
can evaluate exactly what the generators emit.
"""

from __future__ import annotations

from costplan.core import conventions as c
from costplan.core.names import cel_string


def identity(field: str) -> str:
    """``auth.identity.<field>``: a property the AuthPolicy success filter publishes.

    ``field`` is always a constant from ``conventions``, never plan text.
    """
    return f"auth.identity.{field}"


def annotation(key: str) -> str:
    """The value of one annotation of the API-key Secret Authorino matched.

    Authorino's authorization JSON holds the whole Secret under
    ``auth.identity``, so annotations are read with an index, which copes with
    the dots and slashes in annotation keys.
    """
    return f"auth.identity.metadata.annotations[{cel_string(key)}]"


def tier_predicate(tier: str) -> str:
    """True exactly for requests authenticated with a key of ``tier``."""
    return f"{identity(c.IDENTITY_TIER)} == {cel_string(tier)}"


def per_user_counter() -> str:
    """One counter per user: the key Limitador counts each limit under."""
    return identity(c.IDENTITY_USER)
