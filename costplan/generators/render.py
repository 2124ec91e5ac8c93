"""The one Jinja2 environment: templates do layout, never escaping.

Templates live in ``templates/`` at the top of the project. Every value
reaches the YAML through the ``yaml`` filter, which serialises it as a JSON
scalar or flow collection (valid YAML), so no plan value can break out of
its place; ``StrictUndefined`` turns a missing variable into an error. The
rendered text is parsed back into data before it is used: the output of a
template is always checked to be a single YAML mapping.
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import yaml

from costplan.core.data import data_dir
from costplan.core.errors import InternalError
from costplan.core.money import format_decimal


class TemplateError(InternalError):
    """A template failed to render or did not produce one YAML mapping."""


def templates_dir() -> Path:
    """``templates/`` next to the package in a checkout, or inside it when installed."""
    return data_dir("templates")


def _to_yaml_scalar(value: Any) -> str:
    """JSON is a subset of YAML: quoting and escaping come for free and are exact."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return format_decimal(obj)
        raise TypeError(f"cannot place {type(obj).__name__} into a template")

    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=default)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yaml"] = _to_yaml_scalar
    return env


def render_mapping(template: str, **context: Any) -> dict[str, Any]:
    """Render ``template`` and parse it back; the result must be one mapping."""
    try:
        text = environment().get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{template}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{template}: rendered text is not YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{template}: rendered to {type(data).__name__}, not a mapping")
    return data
