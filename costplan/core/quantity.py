"""Kubernetes resource quantities (``512Mi``, ``250m``, ``1.5``) as exact numbers.

The plan's container resources are compared before anything reaches the
API server, which refuses a container whose request is above its limit
(``ValidateResourceRequirements`` in Kubernetes'
``pkg/apis/core/validation/validation.go``). The suffixes are those of
apimachinery's ``pkg/api/resource/suffix.go``: binary ``Ki``..``Ei`` (powers
of 1024), decimal ``k``..``E`` (powers of 1000) and ``m`` (a thousandth).
The schema admits only ``digits[.digits][suffix]``; exponent forms
(``1e3``) are not part of it.
"""

from __future__ import annotations

import re
from decimal import Decimal

_FORM = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?")
_FACTORS: dict[str | None, Decimal] = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    **{suffix: Decimal(1000) ** power for power, suffix in enumerate("kMGTPE", start=1)},
    **{suffix + "i": Decimal(1024) ** power for power, suffix in enumerate("KMGTPE", start=1)},
}


def quantity_value(text: str) -> Decimal | None:
    """The quantity's value in base units (bytes, cores), or ``None`` when it is not a quantity."""
    match = _FORM.fullmatch(text)
    if match is None:
        return None
    return Decimal(match.group(1)) * _FACTORS[match.group(2)]
