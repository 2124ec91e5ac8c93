"""The compiled validator never lets through a document that jsonschema refuses.

``schema.validate`` trusts the compiled validator's "valid" and skips the
pure-Python one; that is only sound if "valid" means the same in both. Every
plan the tests know, and a few hundred seeded mutations of them (wrong types,
out-of-range numbers, strings with line breaks, unknown keys, removed keys),
must get the same verdict from both, or at least never "valid" from the fast
one alone.
"""

from __future__ import annotations

import copy
import random
from decimal import Decimal
from typing import Any

import pytest

from costplan.plan import schema
from costplan.plan.load import list_environments, load_document
from tests.conftest import ROOT

PLANS = [ROOT / "costplan.yaml", ROOT / "tests" / "plans" / "every-key.yaml", ROOT / "tests" / "plans" / "minimal.yaml"]
WEIRD = [None, True, -1, 0, Decimal("-0.5"), Decimal("1e400"), "", "x\n", "UPPER", "a" * 300, [], {}, {"unknown": 1},
         "1h\n", "0.002", 12.5, "-5", "team name"]


def _documents() -> list[Any]:
    docs = []
    for path in PLANS:
        for env in [None, *list_environments(path)]:
            docs.append(load_document(path, env).document)
    return docs


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*path, index)))
    return found


def _mutate(document: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(document)
    path = rng.choice(_paths(doc)[1:])
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    action = rng.random()
    if action < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action < 0.25 and isinstance(parent, dict):
        parent[f"{path[-1]}x"] = parent.pop(path[-1])
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(WEIRD))
    return doc


def _python_valid(document: Any) -> bool:
    return not any(True for _ in schema._validator().iter_errors(document))


@pytest.mark.skipif(schema._fast_validator() is None, reason="jsonschema-rs is not installed")
def test_fast_and_full_validators_agree_on_every_known_plan():
    for document in _documents():
        assert schema.is_valid(document) == _python_valid(document)


@pytest.mark.skipif(schema._fast_validator() is None, reason="jsonschema-rs is not installed")
@pytest.mark.parametrize("seed", range(4))
def test_the_fast_validator_never_accepts_what_jsonschema_refuses(seed):
    rng = random.Random(seed)
    documents = _documents()
    for _ in range(100):
        mutated = _mutate(rng.choice(documents), rng)
        if schema.is_valid(mutated):
            assert _python_valid(mutated), f"seed {seed}: compiled validator accepted a document jsonschema refuses"
