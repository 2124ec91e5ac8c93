"""Keeping secrets and control characters out of everything costplan prints.

A plan holds references to keys, never keys; yet people paste a key where a
name belongs, put ``user:password@`` into a Prometheus URL, or run behind a
proxy that echoes request headers into an error body. Anything costplan
prints (diagnostics, errors, progress, JSON diagnostics) passes through
``redact`` on its way out, so a credential is replaced by ``[REDACTED]``
wherever it came from. ``printable`` escapes control characters, so a value
can never start a new line (forging a diagnostic or a CI annotation) or
drive the terminal.

Detection is by form, not by knowing the secret:

* the user-info part of a URL (``scheme://user:pass@host``);
* the value after ``Authorization:``, ``Bearer`` / ``Basic``, and after
  ``token=`` / ``password=`` / ``api_key=`` style parameters and headers;
* tokens of well-known formats (``sk-...``, ``ghp_...``, ``xoxb-...``,
  ``AKIA...``, JWTs) and any long run of mixed letters and digits that
  no Kubernetes or Prometheus name would be (20 characters or more, with
  lower-case letters and at least three upper-case letters and three digits).
"""

from __future__ import annotations

import re
import urllib.parse

REDACTED = "[REDACTED]"

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@'\"]*@")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization|proxy-authorization|x-api-key|api-key|cookie|set-cookie)(\"?\s*[:=]\s*\"?)[^\r\n\"',}]+")
_SCHEME_TOKEN = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_PARAMETER = re.compile(
    r"(?i)\b((?:access_|refresh_|id_|auth_|private_|client_)?(?:token|secret|password|passwd|api_?key)"
    r"(?:=|[\"']\s*:\s*[\"']))([^\s&\"',;}]+)"
)
_KNOWN_TOKEN = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}|sk_(?:live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|"
    r"github_pat_[A-Za-z0-9_]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|"
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,}")


def _looks_random(token: str) -> bool:
    return (
        sum(c.isupper() for c in token) >= 3
        and any(c.islower() for c in token)
        and sum(c.isdigit() for c in token) >= 3
    )


def redact(text: str) -> str:
    """``text`` with every credential-shaped part replaced by ``[REDACTED]``."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SCHEME_TOKEN.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _PARAMETER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _KNOWN_TOKEN.sub(REDACTED, text)
    return _LONG_TOKEN.sub(lambda m: REDACTED if _looks_random(m.group(0)) else m.group(0), text)


def redact_url(url: str) -> str:
    """A URL fit to print: scheme, host and port only (paths and queries of webhooks carry tokens)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<an invalid URL>"
    if not parts.scheme or not host:
        return "<a URL without scheme or host>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return printable(f"{parts.scheme}://{netloc}")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def printable(text: str) -> str:
    """``text`` with control and bidi-override characters written as escapes (``\\n``, ``\\x1b``)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
        if named:
            return named
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(escape, text)


def safe(text: str) -> str:
    """What every printed message goes through: secrets redacted, control characters escaped."""
    return printable(redact(text))
