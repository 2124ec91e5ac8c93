"""Validate generated Kubernetes objects offline, before anything is written.

The build must not hand Argo CD a manifest the API server will reject, and it
must find out without a cluster. Three sources of truth are combined:

* **Core kinds** (ConfigMap, CronJob, RBAC, ...) are checked against the strict
  JSON schemas that ``kubernetes-validate`` ships for Kubernetes 1.25–1.37.
  Its own ``validate()`` re-reads a 1.45 MB definitions file on every call and
  stops at the first error, so this module loads each per-kind schema once,
  registers ``_definitions.json`` once and keeps one compiled validator per
  (Kubernetes version, apiVersion, kind).
* **Custom resources** are checked against JSON schemas found through
  kubeconform-style schema locations (``{{.Group}}/{{.ResourceKind}}_
  {{.ResourceAPIVersion}}.json``), local paths only. A custom kind without a
  schema is a ``missing-schema`` problem: a warning, or an error in strict mode.
* **Compiled first.** Each object is first asked "valid?" of a compiled
  (Rust, ``jsonschema_rs``) validator of the same schema, formats not
  asserted, patterns on Rust's RE2-like ``regex``; a schema whose patterns
  use a Perl class (ASCII in RE2, Unicode in Rust) gets none. A valid
  object (nearly all of them) needs nothing more; any other answer goes to
  ``jsonschema``, whose errors carry the paths and messages the findings
  need (and which reads integral Decimals as integers), so an invalid
  object is explained exactly as before. ``jsonschema`` is imported only then.
* **Rules outside the schemas** (names, labels, sizes, cron syntax, the CEL
  rules of the Kuadrant CRDs) live in ``manifest_checks.py``.

Speed, measured on 2 cores (CPython 3.11): the first core object of a
Kubernetes version costs ~15 ms (reading and indexing
``_definitions.json``); the schema check of a valid plan's 512 core objects
takes ~13 ms compiled against ~0.10 s with jsonschema alone (all rules
outside the schemas come on top). ``kubernetes_validate.validate()`` needs
~15 ms for a single ConfigMap, i.e. ~7 s for 500.

Caches live in a ``ManifestValidator`` instance, not in module globals: a
build creates one per run and throws it away, so nothing leaks between runs
or tests.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costplan.core.artifacts import Artifact
from costplan.core.canonical_yaml import content_key
from costplan.core.diagnostics import Diagnostic, object_finding
from costplan.core.errors import UsageProblem
from costplan.core.regex import end_anchored
from costplan.output.kubeconform import KubeconformUnavailable, run_kubeconform
from costplan.output.manifest_checks import check_object, pointer

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

__all__ = [
    "DEFAULT_KUBERNETES_VERSION",
    "KubeconformUnavailable",
    "ManifestValidator",
    "Diagnostic",
    "SCHEMA_LOCATION_ENV",
    "SchemaLocation",
    "UnsupportedKubernetesVersion",
    "default_schema_locations",
    "go_regex",
    "has_errors",
    "run_kubeconform",
    "split_locations",
    "supported_kubernetes_versions",
]

DEFAULT_KUBERNETES_VERSION = "1.33"
SCHEMA_LOCATION_ENV = "COSTPLAN_SCHEMA_LOCATION"
MAX_MESSAGE = 300  # jsonschema puts the whole offending value into its message


# --- Kubernetes versions ---------------------------------------------------


class UnsupportedKubernetesVersion(UsageProblem, ValueError):
    """The requested Kubernetes version has no bundled core schemas."""


def _bundled_schema_root() -> Path:
    # find_spec locates the package without importing it (its import pulls in
    # more than the schema files are needed for).
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:
        raise UnsupportedKubernetesVersion("kubernetes-validate is not installed; it provides the core schemas")
    return Path(spec.origin).parent / "kubernetes-json-schema"


def supported_kubernetes_versions() -> list[str]:
    """``1.25`` ... ``1.37``: the minors that have a strict schema directory."""
    found = []
    for entry in _bundled_schema_root().iterdir():
        match = re.fullmatch(r"v1\.(\d+)\.0-local-strict", entry.name)
        if match and entry.is_dir():
            found.append(int(match.group(1)))
    return [f"1.{minor}" for minor in sorted(found)]


def normalize_kubernetes_version(version: str) -> str:
    """``v1.33.4`` / ``1.33`` -> ``1.33``; anything unsupported -> a clear error.

    kubernetes-validate itself crashes with a bare IndexError below 1.25, so
    the range is checked here against the directories actually installed.
    """
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", version.strip())
    supported = supported_kubernetes_versions()
    span = f"{supported[0]} to {supported[-1]}" if supported else "none installed"
    if not match:
        raise UnsupportedKubernetesVersion(
            f"Kubernetes version {version!r} is not of the form 1.33 (supported: {span})"
        )
    minor = f"{int(match.group(1))}.{int(match.group(2))}"
    if minor not in supported:
        raise UnsupportedKubernetesVersion(
            f"Kubernetes version {version} is not supported: core schemas exist for {span}"
        )
    return minor


# --- schema locations ------------------------------------------------------

_TEMPLATE_VAR = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
_TEMPLATE_VARS = frozenset(
    {
        "Group",
        "ResourceKind",
        "ResourceAPIVersion",
        "KindSuffix",
        "NormalizedKubernetesVersion",
        "StrictSuffix",
        "Kind",
        "Version",
    }
)
# kubeconform appends this to a location that does not name a .json file.
_DIRECTORY_SUFFIX = (
    "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
)


def split_locations(values: Iterable[str] | str | None) -> list[str]:
    """Locations from CLI values or the environment, split on os.pathsep or ','.

    The separator is not split inside ``scheme://`` so that a URL given by
    mistake yields one clear "local paths only" error instead of fragments.
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    separator = re.compile(rf",|{re.escape(os.pathsep)}(?!//)")
    out: list[str] = []
    for value in values:
        for part in separator.split(value):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def default_schema_locations(environ: Mapping[str, str] | None = None) -> list[str]:
    """Schema locations from ``COSTPLAN_SCHEMA_LOCATION`` (empty if unset)."""
    env = os.environ if environ is None else environ
    return split_locations(env.get(SCHEMA_LOCATION_ENV, ""))


class SchemaLocation:
    """One kubeconform-style location template, checked when constructed.

    Variables, for ``apiVersion: kuadrant.io/v1, kind: RateLimitPolicy``:
    ``{{.Group}}`` kuadrant.io, ``{{.ResourceKind}}`` ratelimitpolicy,
    ``{{.ResourceAPIVersion}}`` (alias ``{{.Version}}``) v1, ``{{.Kind}}``
    RateLimitPolicy, ``{{.KindSuffix}}`` -kuadrant-v1,
    ``{{.NormalizedKubernetesVersion}}`` v1.33.0, ``{{.StrictSuffix}}`` -strict.
    A location that does not end in ``json`` is a directory in the
    kubernetes-json-schema layout, as in kubeconform.
    """

    def __init__(self, template: str):
        self.raw = template
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", template) and not template.startswith("file://"):
            raise ValueError(
                f"schema location {template!r}: only local paths are supported; mirror the schemas into a directory"
            )
        template = template.removeprefix("file://")
        if not template.endswith("json"):
            template = template.rstrip("/") + _DIRECTORY_SUFFIX
        unknown = sorted({m.group(1) for m in _TEMPLATE_VAR.finditer(template)} - _TEMPLATE_VARS)
        if unknown:
            raise ValueError(
                f"schema location {self.raw!r}: unknown variable(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_TEMPLATE_VARS))})"
            )
        if "{{" in _TEMPLATE_VAR.sub("", template):
            raise ValueError(f"schema location {self.raw!r}: malformed '{{{{ .Variable }}}}' placeholder")
        self.template = template

    def path_for(self, api_version: str, kind: str, kubernetes_version: str) -> str:
        group, _, version = api_version.rpartition("/")
        values = {
            # kubeconform fills Group with the first apiVersion part, "v1" for the core group.
            "Group": group or version,
            "ResourceKind": kind.lower(),
            "ResourceAPIVersion": version,
            "Version": version,
            "Kind": kind,
            "KindSuffix": "-" + (group.split(".")[0].lower() + "-" + version.lower() if group else version.lower()),
            "NormalizedKubernetesVersion": f"v{kubernetes_version}.0",
            "StrictSuffix": "-strict",
        }
        return _TEMPLATE_VAR.sub(lambda m: values[m.group(1)], self.template)

    def __repr__(self) -> str:
        return f"SchemaLocation({self.raw!r})"


# --- validators --------------------------------------------------------------


def _is_integer(checker: Any, instance: Any) -> bool:
    """Integers as generators build them: int, integral float, integral Decimal."""
    if isinstance(instance, bool):
        return False
    if isinstance(instance, Decimal):
        return instance.is_finite() and instance == instance.to_integral_value()
    return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())


_GO_FLAGS = re.compile(r"\(\?([imsU]+)\)")


def go_regex(pattern: str) -> re.Pattern[str] | None:
    """Compile a schema ``pattern`` written for Go's RE2, as CRDs are.

    RE2 allows a flag group mid-pattern (``^(?i)(abort|warn)?$`` in the
    PrometheusRule CRD); Python needs it scoped, ``^(?i:(abort|warn)?$)``.
    A pattern Python still cannot compile is not checked (None): the fault is
    in the schema, not in the manifest. ``re`` caches compiled patterns.
    """
    pattern = end_anchored(pattern)  # RE2's $ is the end of the text, as \Z is in Python
    try:
        return re.compile(pattern)
    except re.error:
        pass
    match = _GO_FLAGS.search(pattern)
    head = pattern[: match.start()] if match else ""
    if match and "U" not in match.group(1) and head.count("(") == head.count(")"):  # top level only
        scoped = f"{head}(?{match.group(1)}:{pattern[match.end():]})"
        try:
            return re.compile(scoped)
        except re.error:
            return None
    return None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "string"):
        return
    regex = go_regex(pattern)
    if regex is not None and not regex.search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.lru_cache(maxsize=1)
def _python_validator_class() -> Any:
    """jsonschema's 2020-12 validator with RE2 patterns and Decimal integers.

    Generators emit Decimal for money; YAML writes Decimal('5') as 5, so the
    schema must see it as the integer it will become.
    """
    import jsonschema

    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        validators={"pattern": _pattern},
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
    )


def _rust_validator(schema: dict[str, Any], registry: Any = None) -> Any:
    """The compiled validator of a schema, or None where there is none (then jsonschema answers alone).

    Formats are not asserted (as jsonschema, given no format checker, does
    not), and patterns run on Rust's ``regex`` engine: RE2's syntax and
    meaning (``$`` is the end of the text, flag groups anywhere) as Go's
    API server has them, except for the Perl classes (see ``_re2_equivalent``).
    """
    try:
        import jsonschema_rs

        options = {"registry": registry} if registry is not None else {}
        return jsonschema_rs.validator_for(
            schema, validate_formats=False, pattern_options=jsonschema_rs.RegexOptions(), **options
        )
    except Exception:  # not installed, or a construct it does not compile
        return None


# ``\d``, ``\w``, ``\s`` and ``\b`` are ASCII in RE2 and Unicode in Rust's regex.
_PERL_CLASS = re.compile(r"\\[dDwWsSbB]")


def _re2_equivalent(schema: Any) -> bool:
    """Whether every ``pattern`` in a schema means in Rust's regex what it means in RE2."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str) and _PERL_CLASS.search(pattern):
                return False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


class _Schema:
    """One schema: a compiled verdict first where there is one, jsonschema's errors when it is not "valid"."""

    def __init__(
        self, schema: dict[str, Any], python_registry: Any = None, rust_registry: Any = None, compiled: bool = True
    ) -> None:
        self.schema = schema
        self._registry = python_registry
        self._fast = _rust_validator(schema, rust_registry) if compiled else None
        self._python: Any = None

    def python(self) -> Any:
        if self._python is None:
            cls = _python_validator_class()
            registry = self._registry() if callable(self._registry) else None
            self._python = cls(self.schema, registry=registry) if registry is not None else cls(self.schema)
        return self._python

    def problems(self, obj: Any, where: str) -> list[Diagnostic]:
        if self._fast is not None:
            try:
                if self._fast.is_valid(obj):
                    return []
            except Exception:  # a value it cannot read (a Decimal): jsonschema decides
                pass
        return _schema_problems(self.python(), obj, where)


def _rust_registry(definitions: dict[str, Any]) -> Any:
    """``_definitions.json`` for the compiled validators (None without ``jsonschema_rs``)."""
    try:
        import jsonschema_rs

        return jsonschema_rs.Registry([(definitions["$id"], definitions)])
    except Exception:
        return None


class _CoreSchemas:
    """The bundled strict schemas of one Kubernetes minor version."""

    def __init__(self, root: Path, kubernetes_version: str):
        self.directory = root / f"v{kubernetes_version}.0-local-strict"
        with (self.directory / "_definitions.json").open(encoding="utf-8") as handle:
            definitions = json.load(handle)
        self.definitions = definitions
        self._python_registry: Any = None
        self.rust_registry = _rust_registry(definitions)
        # Every (group, kind) -> versions this Kubernetes serves; also tells a
        # built-in API group (a removed version is an error) from a CRD group.
        self.served: dict[tuple[str, str], set[str]] = {}
        for schema in definitions.get("$defs", {}).values():
            for gvk in schema.get("x-kubernetes-group-version-kind", ()):
                self.served.setdefault((gvk["group"], gvk["kind"]), set()).add(gvk["version"])
        self.groups = {group for group, _ in self.served}

    def python_registry(self) -> Any:
        """``_definitions.json`` in a ``referencing.Registry``, made when jsonschema is first needed."""
        if self._python_registry is None:
            import referencing
            import referencing.jsonschema

            resource = referencing.Resource.from_contents(
                self.definitions, default_specification=referencing.jsonschema.DRAFT202012
            )
            self._python_registry = resource @ referencing.Registry()
        return self._python_registry

    def schema_file(self, group: str, version: str, kind: str) -> Path:
        prefix = f"{group.split('.')[0]}-" if group else ""
        return self.directory / f"{kind.lower()}-{prefix}{version}.json"


class ManifestValidator:
    """Validates objects against core schemas, CRD schemas and extra rules.

    ``strict`` turns a custom kind without a schema into an error (default: a
    warning). ``schema_locations=None`` reads ``COSTPLAN_SCHEMA_LOCATION``;
    an explicit list (even empty) is used as given. Bad locations or an
    unsupported Kubernetes version raise ``ValueError`` here, before any
    object is looked at.
    """

    def __init__(
        self,
        kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
        schema_locations: Sequence[str] | None = None,
        strict: bool = False,
    ):
        self.kubernetes_version = normalize_kubernetes_version(kubernetes_version)
        raw = default_schema_locations() if schema_locations is None else split_locations(schema_locations)
        self.schema_locations = [SchemaLocation(loc) for loc in raw if loc != "default"]
        self.strict = strict
        self._root = _bundled_schema_root()
        self._core: dict[str, _CoreSchemas] = {}
        # (kubernetes version, apiVersion, kind) -> compiled validator or why there is none
        self._validators: dict[tuple[str, str, str], _Lookup] = {}
        self._checked: dict[str, list[Diagnostic]] = {}  # content key -> findings
        self._files: dict[str, Any] = {}

    # -- public API --

    def validate(self, obj: Any, location: str | None = None) -> list[Diagnostic]:
        """Every problem of one object (all schema errors, not only the first)."""
        if not isinstance(obj, Mapping):
            return [object_finding(location or "?", "", f"a Kubernetes object must be a mapping, not {type(obj).__name__}")]
        where = location or _object_label(obj)
        found = [object_finding(where, ptr, msg, "error", "required-field") for ptr, msg in _identity_problems(obj)]
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not (isinstance(api_version, str) and api_version and isinstance(kind, str) and kind):
            return found  # without them no schema and no rule applies
        lookup = self._validator(api_version, kind)
        if lookup.problem is not None:
            found.append(replace(lookup.problem, file=where))
        if lookup.validator is not None:
            found.extend(lookup.validator.problems(obj, where))
        found.extend(object_finding(where, ptr, msg, sev, check) for ptr, msg, check, sev in check_object(obj))
        return sorted(set(found), key=lambda p: (p.pointer, p.message, p.check_id))

    def validate_all(self, artifacts: Iterable[Artifact], reuse: bool = False) -> list[Diagnostic]:
        """Problems of every manifest, in artifact order; plain files are skipped.

        With ``reuse`` (several environments in one build), an object
        identical to one already validated gets that object's findings, at
        its own path.
        """
        problems: list[Diagnostic] = []
        for artifact in artifacts:
            if not artifact.is_manifest:
                continue
            key = content_key(artifact.data) if reuse else None
            if key is None:
                problems.extend(self.validate(artifact.data, artifact.path))
                continue
            if key not in self._checked:
                self._checked[key] = self.validate(artifact.data, artifact.path)
            problems.extend(replace(p, file=artifact.path) for p in self._checked[key])
        return problems

    def schema_source(self, api_version: str, kind: str) -> str | None:
        """Which schema file validates this kind (None: no usable schema)."""
        lookup = self._validator(api_version, kind)
        return lookup.source if lookup.validator is not None else None

    # -- lookup --

    def _core_schemas(self) -> _CoreSchemas:
        version = self.kubernetes_version
        if version not in self._core:
            self._core[version] = _CoreSchemas(self._root, version)
        return self._core[version]

    def _validator(self, api_version: str, kind: str) -> _Lookup:
        key = (self.kubernetes_version, api_version, kind)
        if key not in self._validators:
            self._validators[key] = self._find_validator(api_version, kind)
        return self._validators[key]

    def _find_validator(self, api_version: str, kind: str) -> _Lookup:
        group, _, version = api_version.rpartition("/")
        core = self._core_schemas()
        if group in core.groups:
            path = core.schema_file(group, version, kind)
            if version in core.served.get((group, kind), ()) and path.is_file():
                with path.open(encoding="utf-8") as handle:
                    schema = json.load(handle)
                compiled = core.rust_registry is not None and _re2_equivalent(schema)
                return _Lookup(_Schema(schema, core.python_registry, core.rust_registry, compiled), str(path))
            served = sorted(core.served.get((group, kind), ()))
            hint = f"; served: {', '.join(f'{group}/{v}' if group else v for v in served)}" if served else ""
            return _Lookup(
                None,
                "",
                object_finding(
                    "",
                    "/apiVersion",
                    f"Kubernetes {self.kubernetes_version} does not serve {kind} in {api_version}{hint}",
                    "error",
                    "unknown-api",
                ),
            )
        tried = []
        for location in self.schema_locations:
            candidate = location.path_for(api_version, kind, self.kubernetes_version)
            tried.append(candidate)
            if os.path.isfile(candidate):
                try:
                    return _Lookup(self._file_validator(candidate), candidate)
                except (OSError, ValueError) as exc:
                    message = f"schema file {candidate} is unusable: {_shorten(str(exc).splitlines()[0])}"
                    return _Lookup(None, candidate, object_finding("", "", message, "error", "schema-file"))
        looked = f"looked in: {', '.join(tried)}" if tried else "no schema location given (--schema-location)"
        return _Lookup(
            None,
            "",
            object_finding(
                "",
                "",
                f"no schema for {kind} {api_version} ({looked})",
                "error" if self.strict else "warning",
                "missing-schema",
            ),
        )

    def _file_validator(self, path: str) -> Any:
        if path not in self._files:
            with open(path, encoding="utf-8") as handle:
                schema = json.load(handle)
            if not isinstance(schema, dict):
                raise ValueError("the top level is not a JSON object")
            # No meta-schema check: it costs seconds on large CRDs (2.3 s for
            # ApplicationSet) and rejects valid RE2 patterns. A broken schema
            # shows up as a schema-file problem when it is used.
            # CRD patterns are RE2's: compiled where Rust's regex reads them alike,
            # else jsonschema alone (``go_regex`` translates them).
            self._files[path] = _Schema(schema, compiled=_re2_equivalent(schema))
        return self._files[path]


@dataclass(frozen=True)
class _Lookup:
    """A compiled validator and its file, or the problem that stands in for it."""

    validator: _Schema | None
    source: str
    problem: Diagnostic | None = None


def has_errors(problems: Iterable[Diagnostic]) -> bool:
    return any(p.is_error for p in problems)


# --- problem building -------------------------------------------------------


def _object_label(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return f"{str(obj.get('kind') or '?').lower()}/{name or '?'}"


def _identity_problems(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for field in ("apiVersion", "kind"):
        value = obj.get(field)
        if not (isinstance(value, str) and value):
            out.append(("/" + field, f"{field} is required (a non-empty string)"))
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        out.append(("/metadata", "metadata is required (a mapping with a name)"))
    elif not (isinstance(meta.get("name"), str) and meta["name"]):
        out.append(("/metadata/name", "metadata.name is required (a non-empty string)"))
    return out


def _schema_problems(validator: Any, obj: Any, where: str) -> list[Diagnostic]:
    import jsonschema
    import referencing.exceptions

    problems = []
    try:
        for error in validator.iter_errors(obj):
            for ptr, message in _describe(error):
                problems.append(object_finding(where, ptr, _shorten(message), "error", "schema"))
    except (jsonschema.exceptions.UnknownType, referencing.exceptions.Unresolvable, re.error) as exc:
        # A broken schema file: say so instead of failing the whole build.
        problems.append(object_finding(where, "", _shorten(f"the schema cannot be evaluated: {exc}"), "error", "schema-file"))
    return problems


def _describe(error: ValidationError) -> list[tuple[str, str]]:
    """One (pointer, message) per fault; an unknown field points at the field."""
    at = pointer(*error.absolute_path)
    closed = error.validator == "additionalProperties" and error.validator_value is False
    if closed and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        extra = [k for k in error.instance if k not in known and not any(_matches(p, k) for p in patterns)]
        if extra:
            return [(at + pointer(k), f"unknown field {k!r}") for k in extra]
    if error.validator in ("anyOf", "oneOf") and error.context:
        from jsonschema.exceptions import best_match

        best = best_match(error.context)
        return [(at, f"{error.message} (e.g. {best.message})")]
    return [(at, error.message)]


def _matches(pattern: str, text: str) -> bool:
    regex = go_regex(pattern)
    return regex is None or bool(regex.search(text))


def _shorten(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
