"""The impact as one pull-request comment (Markdown) or as JSON for policy gates.

The comment starts with a hidden marker so a CI job finds and updates it in
place; long tables fold into ``<details>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from costplan.core.money import decimal_places, format_decimal
from costplan.core.redact import printable
from costplan.impact.compare import (
    DETAILS_OVER_ROWS,
    LIST_TIER,
    MARKER,
    MEMBER_KINDS,
    NO_IMPACT,
    Exposure,
    PlanImpact,
    fraction_to_decimal,
)
from costplan.impact.estimate import CostLine, Estimate
from costplan.impact.manifests import ManifestDiff

# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentReport:
    impact: PlanImpact
    estimate: Estimate | None = None
    manifests: ManifestDiff | None = None


def money(value: Decimal) -> str:
    """``1,500.00`` for whole cents, else every significant digit (``0.0000024``)."""
    if value == 0:
        return "0.00"
    normal = value.normalize()
    if decimal_places(normal) <= 2:
        return f"{value.quantize(Decimal('0.01')):,f}"
    return f"{normal:,f}"


def signed_money(value: Decimal) -> str:
    return ("+" if value > 0 else "") + money(value)


def _quantity(value: Decimal) -> str:
    return f"{value.normalize():,f}" if value == value.to_integral_value() else format_decimal(value)


def _fraction_money(value: Fraction, signed: bool = False) -> str:
    amount, exact = fraction_to_decimal(value)
    text = signed_money(amount) if signed else money(amount)
    return text if exact else f"≈ {text}"


def _fraction_json(value: Fraction) -> str:
    return format_decimal(fraction_to_decimal(value)[0])


def _percent(value: Decimal | None) -> str:
    if value is None:
        return "new"
    return ("+" if value > 0 else "") + format_decimal(value) + "%"


def _cell(value: Decimal | None, is_money: bool) -> str:
    if value is None:
        return "—"
    return money(value) if is_money else _quantity(value)


# Anything Markdown or GitHub could read as markup, a link, a mention or an HTML tag.
_MARKUP = re.compile(r"(?i)[\\`*_{}\[\]<>#!|@~&$]|://|www\.|^[-+=>\s]|\s$|^\d+\.|\b(javascript|data|vbscript):")


def md(value: object, table: bool = False, code: bool = False) -> str:
    """A name from a plan, a file name or a usage export, safe in the comment.

    Plain names stay as they are; anything else (or everything, with
    ``code``) becomes a code span, where GitHub renders no HTML, links,
    mentions or headings. Line breaks and control characters are escaped, so
    a value cannot end a table row, start a heading or close a ``<details>``;
    in a table a ``|`` is escaped so it cannot split a cell.
    """
    text = printable(str(value))
    if not code and text and not _MARKUP.search(text):
        return text
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    if table:
        text = text.replace("|", "\\|")
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _table(header: Sequence[str], align: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return out


def _section(title: str, lines: list[str], rows: int) -> list[str]:
    """A titled table, folded into ``<details>`` when it is long."""
    if rows > DETAILS_OVER_ROWS:
        return ["<details>", f"<summary><b>{title}</b></summary>", "", *lines, "", "</details>", ""]
    return [f"**{title}**", "", *lines, ""]


def _counts(impact: PlanImpact) -> list[str]:
    parts = []
    if impact.budgets:
        parts.append(_plural(len(impact.budgets), "budget"))
    if impact.prices:
        parts.append(_plural(len(impact.prices), "price"))
    if impact.limits:
        parts.append(_plural(len(impact.limits), "tier setting"))
    members = impact.members.count()
    if members:
        parts.append(_plural(members, "team, user or model change"))
    return parts


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def headline(reports: Sequence[EnvironmentReport]) -> str:
    """One sentence: the change in monthly budget exposure, then what else moves."""
    changed = [r.impact for r in reports if r.impact.changed]
    named = len(reports) > 1
    exposures = [
        f"**{_fraction_money(i.exposure.delta, signed=True)} {i.currency}**" + (f" in {md(i.environment)}" if named else "")
        for i in changed
        if i.exposure.delta != 0
    ]
    sentence = "Monthly budget exposure " + (_join(exposures) if exposures else "unchanged")
    counts = []
    for impact in changed:
        parts = _counts(impact)
        if parts:
            counts.append(_join(parts) + (f" in {md(impact.environment)}" if named else ""))
    if counts:
        sentence += "; changed: " + "; ".join(counts)
    return sentence + "."


def _budget_lines(impact: PlanImpact) -> list[str]:
    cur = impact.currency
    exposure = impact.exposure
    lines = [
        (
            f"Monthly exposure {_fraction_money(exposure.before)} → {_fraction_money(exposure.after)} {cur} "
            f"(**{_fraction_money(exposure.delta, signed=True)} {cur}**; teams "
            f"{_fraction_money(impact.team_exposure.delta, signed=True)}, global "
            f"{_fraction_money(impact.global_exposure.delta, signed=True)})¹"
        ),
        "",
    ]
    if not impact.budgets:
        return lines
    rows = []
    for b in impact.budgets:
        period = b.period_after or b.period_before or ""
        if b.period_before and b.period_after and b.period_before != b.period_after:
            period = f"{b.period_before} → {b.period_after}"
        rows.append(
            [md(b.team, True) if b.team else "(global)", md(b.name, True), md(period, True), b.status,
             _cell(b.before, True), _cell(b.after, True),
             signed_money(b.delta), _fraction_money(b.monthly_delta, signed=True)]
        )
    lines += _table(
        ["team", "budget", "period", "", f"before ({cur})", f"after ({cur})", "delta", "monthly delta"],
        "llllrrrr",
        rows,
    )
    acting = [b for b in impact.budgets if b.actions_before != b.actions_after]
    if acting:
        lines.append("")
        for b in acting:
            lines.append(f"Actions of {b.team or '(global)'}/{b.name}: {b.actions_before or 'none'} → "
                         f"{b.actions_after or 'none'}")
    return lines


def _price_lines(impact: PlanImpact) -> list[str]:
    cur = impact.currency
    rows = []
    for p in impact.prices:
        charge = p.charge if p.money else f"{p.charge} ({p.per})"
        per = p.per if p.money else ""
        tier = "(list)" if p.tier == LIST_TIER and p.kind == "model" else p.tier
        rows.append(
            [md(p.subject, True), md(tier, True), md(charge, True), md(per, True), _cell(p.before, p.money), _cell(p.after, p.money),
             (signed_money(p.delta) if p.money else ("+" if p.delta > 0 else "") + _quantity(p.delta)),
             _percent(p.percent)]
        )
    return _table(
        ["model / GPU", "tier", "charge", "per", f"before ({cur})", f"after ({cur})", "delta", "change"],
        "llllrrrr",
        rows,
    )


def _limit_lines(impact: PlanImpact) -> list[str]:
    rows = [[md(lc.tier, True), md(lc.setting, True), lc.status, md(lc.before, True) if lc.before else "—",
             md(lc.after, True) if lc.after else "—"] for lc in impact.limits]
    return _table(["tier", "setting", "", "before", "after"], "lllrr", rows)


def _member_lines(impact: PlanImpact) -> list[str]:
    members = impact.members
    lines = []
    for kind in MEMBER_KINDS:
        added, removed = members.added[kind], members.removed[kind]
        if added:
            lines.append(f"- {kind} added ({len(added)}): {', '.join(md(name) for name in added)}")
        if removed:
            lines.append(f"- {kind} removed ({len(removed)}): {', '.join(md(name) for name in removed)}")
    for team, old, new in members.team_tiers:
        lines.append(f"- team {team} moves from tier {old} to {new}")
    return lines


def _estimate_lines(estimate_: Estimate, currency: str, source: str) -> list[str]:
    lines = []
    for title, table in (("team", estimate_.by_team), ("model", estimate_.by_model)):
        rows = [[md(line.name, True), money(line.before), money(line.after), signed_money(line.delta)] for line in table]
        t = estimate_.total
        rows.append(["**total**", money(t.before), money(t.after), f"**{signed_money(t.delta)}**"])
        lines += _table([title, f"before ({currency})", f"after ({currency})", "delta"], "lrrr", rows) + [""]
    lines.append(f"Usage from {md(source, code=True)}, priced by each plan's rules.²")
    # Notes are sentences around names from the usage file: each word is escaped on its own.
    lines += ["- " + " ".join(md(word) for word in note.split(" ")) for note in estimate_.notes]
    return lines


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _manifest_lines(diff: ManifestDiff) -> list[str]:
    if not diff.changed_files:
        return ["Rendered manifests: no change.", ""]
    fence = _fence(diff.text)
    lines = [
        "<details>",
        f"<summary>Rendered manifests: {_plural(len(diff.changed_files), 'file')} change</summary>",
        "",
        f"{fence}diff",
        diff.text,
        fence,
    ]
    if diff.truncated_lines:
        lines.append(
            f"\n… {diff.truncated_lines} more diff lines not shown; run `costplan build` on both revisions "
            "and diff the output for all of it."
        )
    return lines + ["", "</details>", ""]


FOOTNOTE_EXPOSURE = (
    "¹ Monthly exposure is the sum of every team and global budget normalised to a 30-day month: "
    "day × 30, week × 30/7, month × 1, a rolling window × 30 days ÷ its length. "
    "Sums are exact; values marked ≈ have no finite decimal form and are rounded to cents."
)
FOOTNOTE_ESTIMATE = (
    "² The included-token allowance is pooled per usage row and volume bands apply to each row's volume "
    "as one period; a row without a tier is priced at its team's tier in each plan."
)


def render_markdown(reports: Sequence[EnvironmentReport], usage_source: str | None = None) -> str:
    """The pull-request comment: marker, headline, one section per changed environment, footnotes."""
    if not any(r.impact.changed for r in reports):
        return NO_IMPACT + "\n"
    lines = [MARKER, "### costplan impact", "", headline(reports), ""]
    unchanged = [r.impact.environment for r in reports if not r.impact.changed]
    for report in reports:
        impact = report.impact
        if not impact.changed:
            continue
        if len(reports) > 1:
            lines += [f"#### {md(impact.environment)}", ""]
        lines += ["**Budgets**", "", *_budget_lines(impact), ""]
        if impact.prices:
            title = f"Prices ({_plural(len(impact.prices), 'change')}; tier multipliers and overrides applied)"
            lines += _section(title, _price_lines(impact), len(impact.prices))
        if impact.limits:
            lines += _section(f"Tier settings ({_plural(len(impact.limits), 'change')})", _limit_lines(impact),
                              len(impact.limits))
        member_lines = _member_lines(impact)
        if member_lines:
            lines += _section("Teams, users and models", member_lines, len(member_lines))
        if report.estimate is not None:
            lines += _section("Estimated monthly cost", _estimate_lines(report.estimate, impact.currency,
                                                                         usage_source or "usage"), 0)
        if report.manifests is not None:
            lines += _manifest_lines(report.manifests)
    if unchanged:
        lines += [f"No cost impact in {_join([md(name) for name in unchanged])}.", ""]
    lines.append(FOOTNOTE_EXPOSURE)
    if any(r.estimate is not None for r in reports):
        lines.append(FOOTNOTE_ESTIMATE)
    return "\n".join(lines) + "\n"


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def _exposure_json(exposure: Exposure) -> dict[str, Any]:
    exact = all(fraction_to_decimal(v)[1] for v in (exposure.before, exposure.after, exposure.delta))
    return {
        "before": _fraction_json(exposure.before),
        "after": _fraction_json(exposure.after),
        "delta": _fraction_json(exposure.delta),
        "exact": exact,
    }


def _lines_json(lines: Iterable[CostLine]) -> list[dict[str, str]]:
    return [{"name": x.name, "before": format_decimal(x.before), "after": format_decimal(x.after),
             "delta": format_decimal(x.delta)} for x in lines]


def report_document(reports: Sequence[EnvironmentReport]) -> dict[str, Any]:
    """The JSON for policy gates: every amount an exact decimal string."""
    if not any(r.impact.changed for r in reports):
        return {"changed": False}
    environments = []
    for report in reports:
        i = report.impact
        doc: dict[str, Any] = {
            "environment": i.environment,
            "currency": i.currency,
            "changed": i.changed,
            "budgets": {
                "monthlyExposure": {
                    **_exposure_json(i.exposure),
                    "teams": _exposure_json(i.team_exposure),
                    "global": _exposure_json(i.global_exposure),
                },
                "changes": [
                    {"team": b.team, "budget": b.name, "change": b.status,
                     "periodBefore": b.period_before, "periodAfter": b.period_after,
                     "before": _opt(b.before), "after": _opt(b.after), "delta": format_decimal(b.delta),
                     "monthlyDelta": _fraction_json(b.monthly_delta),
                     **({"actionsBefore": b.actions_before, "actionsAfter": b.actions_after}
                        if b.actions_before or b.actions_after else {})}
                    for b in i.budgets
                ],
            },
            "prices": [
                {"kind": p.kind, "name": p.subject, "tier": p.tier, "charge": p.charge, "per": p.per,
                 "money": p.money, "change": p.status, "before": _opt(p.before), "after": _opt(p.after),
                 "delta": format_decimal(p.delta), "percent": _opt(p.percent)}
                for p in i.prices
            ],
            "limits": [
                {"tier": lc.tier, "setting": lc.setting, "change": lc.status, "before": lc.before,
                 "after": lc.after}
                for lc in i.limits
            ],
            "added": {k: list(v) for k, v in i.members.added.items()},
            "removed": {k: list(v) for k, v in i.members.removed.items()},
            "teamTiers": [{"team": t, "before": old, "after": new} for t, old, new in i.members.team_tiers],
        }
        if report.estimate is not None:
            e = report.estimate
            doc["estimate"] = {
                "total": _lines_json([e.total])[0],
                "byTeam": _lines_json(e.by_team),
                "byModel": _lines_json(e.by_model),
                "notes": list(e.notes),
            }
        if report.manifests is not None:
            doc["manifests"] = {"changedFiles": list(report.manifests.changed_files)}
        environments.append(doc)
    return {"changed": True, "environments": environments}


def render_json(reports: Sequence[EnvironmentReport]) -> str:
    return json.dumps(report_document(reports), indent=2, sort_keys=False, ensure_ascii=False)


