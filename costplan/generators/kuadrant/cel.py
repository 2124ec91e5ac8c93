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


# -- budget enforcement: the state costplan guard writes on each key Secret --


def label(key: str) -> str:
    """The value of one label of the API-key Secret Authorino matched."""
    return f"auth.identity.metadata.labels[{cel_string(key)}]"


def has_annotation(key: str) -> str:
    return f"{cel_string(key)} in auth.identity.metadata.annotations"


def annotation_or(key: str, fallback: str) -> str:
    """Annotation ``key`` when the Secret has it, else annotation ``fallback``."""
    return f"{has_annotation(key)} ? {annotation(key)} : {annotation(fallback)}"


def not_blocked() -> str:
    """True unless the guard marked the key blocked (no label: never blocked)."""
    state = cel_string(c.LABEL_BUDGET_STATE)
    return (f"!({state} in auth.identity.metadata.labels) || "
            f"{label(c.LABEL_BUDGET_STATE)} != {cel_string(c.BUDGET_STATE_BLOCKED)}")


def blocked_body(fallback: str) -> str:
    """The guard's JSON body for the refusal; ``fallback`` if the Secret carries none."""
    detail = c.ANNOTATION_BUDGET_DETAIL
    return f"{has_annotation(detail)} ? {annotation(detail)} : {cel_string(fallback)}"
