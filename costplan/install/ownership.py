"""Whether applying a body again would change anything, read from the live object alone.

Server-side apply records, per field manager, the set of fields that
manager last applied (``metadata.managedFields``, format ``FieldsV1``). An
apply as ``costplan`` changes nothing when both hold:

* the fields ``costplan`` owns are exactly the fields the body sets (a field
  it owns but no longer sets would be removed; a field it sets but does not
  own would be taken over), and
* the live value of every field the body sets equals the body's value.

Then costplan can report ``ok`` without a dry run and without a write, which
is what makes a no-op apply cost one list per kind. Anything this module
cannot prove (a list item addressed by position, a ``null``, a value the
server normalised, a field set recorded for another API version) answers
``False``, and the caller asks the server's dry run instead: a wrong
``False`` costs a request, never a missed change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from costplan.install.cluster import FIELD_MANAGER

# Fields the API server strips from every manager's field set
# (kubernetes/apimachinery pkg/util/managedfields/internal/stripmeta.go).
_IDENTITY_TOP = ("apiVersion", "kind")
_IDENTITY_META = ("name", "namespace", "creationTimestamp", "selfLink", "uid", "generation",
                  "managedFields", "resourceVersion", "clusterName")


def applied_fields(live: Mapping[str, Any], api_version: str, manager: str = FIELD_MANAGER) -> dict[str, Any] | None:
    """``manager``'s applied field set on ``live`` for ``api_version``, or ``None`` when there is none."""
    entries = [e for e in ((live.get("metadata") or {}).get("managedFields") or [])
               if e.get("manager") == manager and e.get("operation") == "Apply" and not e.get("subresource")]
    if len(entries) != 1 or entries[0].get("apiVersion") != api_version:
        return None
    fields = entries[0].get("fieldsV1")
    return fields if isinstance(fields, dict) else None


def _without_identity(body: Mapping[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in body.items() if k not in _IDENTITY_TOP}
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _IDENTITY_META}
    if meta:
        result["metadata"] = meta
    else:
        result.pop("metadata", None)
    return result


def _children(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k != "."}


def _owns_exactly(fields: Any, desired: Any, live: Any) -> bool:
    if not isinstance(fields, Mapping):
        return False
    if desired is None:
        return False
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        children = _children(fields)
        if not desired:
            return not children and live == {}
        if set(children) != {f"f:{name}" for name in desired}:
            return False
        return all(_owns_exactly(children[f"f:{name}"], value, live.get(name)) for name, value in desired.items())
    if isinstance(desired, list):
        if live != desired:
            return False
        children = _children(fields)
        if not children:  # an atomic list: owned whole
            return True
        if len(children) != len(desired):
            return False
        for entry, sub in children.items():
            if entry.startswith("v:"):
                try:
                    if json.loads(entry[2:]) not in desired:
                        return False
                except ValueError:
                    return False
            elif entry.startswith("k:"):
                try:
                    keys = json.loads(entry[2:])
                except ValueError:
                    return False
                items = [i for i in desired if isinstance(i, Mapping) and isinstance(keys, Mapping)
                         and all(i.get(k) == v for k, v in keys.items())]
                if len(items) != 1 or not _owns_exactly(sub, items[0], items[0]):
                    return False
            else:  # "i:<index>" or anything newer: not provable here
                return False
        return True
    return not _children(fields) and live == desired and type(live) is type(desired)


def unchanged_by_apply(live: Mapping[str, Any] | None, body: Mapping[str, Any],
                       manager: str = FIELD_MANAGER) -> bool:
    """True when applying ``body`` as ``manager`` onto ``live`` would provably change nothing."""
    if live is None or live.get("apiVersion") != body.get("apiVersion"):
        return False  # read in another version: only the server can say what this one would do
    fields = applied_fields(live, str(body.get("apiVersion", "")), manager)
    if fields is None:
        return False
    return _owns_exactly(fields, _without_identity(body), _without_identity(live))
