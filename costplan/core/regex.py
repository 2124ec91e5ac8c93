"""Schema patterns with the meaning their authors gave them.

JSON Schema patterns are ECMA-262 regular expressions and CRD patterns are
Go RE2 ones; in both, ``$`` (without the multi-line flag) matches only at the
very end of the input. Python's ``$`` also matches before a final newline,
so ``^[a-z]+$`` would accept ``"name\\n"``: a budget window with a trailing
newline would pass validation and break the build, a label name with one
would silently drop attribution. ``end_anchored`` rewrites each ``$`` that
is an anchor into ``\\Z``, Python's end of input.
"""

from __future__ import annotations

import re
from functools import lru_cache

_MULTILINE_FLAG = re.compile(r"\(\?[a-zA-Z]*m[a-zA-Z]*[:)]")


def end_anchored(pattern: str) -> str:
    """``pattern`` with every unescaped ``$`` outside a character class written ``\\Z``."""
    if _MULTILINE_FLAG.search(pattern):
        return pattern  # (?m): $ means end of line, as in Python
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[index + 1 : index + 2] == "]":  # "[]...]": a leading ] is literal
                out.append("[]")
                index += 2
                continue
        elif char == "$":
            char = r"\Z"
        out.append(char)
        index += 1
    return "".join(out)


@lru_cache(maxsize=1024)
def schema_regex(pattern: str) -> re.Pattern[str]:
    """A compiled schema pattern with end-of-input ``$`` (see the module docstring)."""
    return re.compile(end_anchored(pattern))
