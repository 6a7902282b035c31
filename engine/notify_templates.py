"""Notification texts per event type and locale, from data files shipped as package data
(engine/templates/<locale>.json).

Each file maps every event type of `EVENTS` to
    {"push": {"title": "...", "body": "..."}, "sms": "..."}      ("sms" only for SMS events)
with `{variable}` placeholders. `EVENTS` declares, in one place, the variables each event type
supplies. Loading checks every placeholder against that declaration, so a template naming a
variable its event does not supply fails when the server starts, with the locale, event type,
field and variable in the message, never later at send time. Rendering is plain substitution
(`{{` and `}}` for literal braces); no attribute access, indexing or format specs are allowed.

`parse` is pure; `load_dir` reads the files and hands them to `parse`.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LOCALE = "en"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"  # package data (pyproject)

# Event type -> the variables the event supplies (the only ones its templates may use).
EVENTS: Mapping[str, frozenset[str]] = {
    "request.nearby": frozenset({"dish", "budget", "distance_km", "request_id"}),
    "offer.new": frozenset({"vendor_name", "dish", "price", "request_id", "offer_id"}),
    "offer.countered": frozenset({"counterparty", "dish", "price", "request_id", "offer_id"}),
    "offer.accepted": frozenset({"dish", "price", "request_id", "offer_id", "order_id"}),
    "offer.rejected": frozenset({"dish", "request_id", "offer_id"}),
    "order.confirmed": frozenset({"order_id", "vendor_name", "total"}),
    "order.preparing": frozenset({"order_id", "vendor_name"}),
    "order.ready": frozenset({"order_id", "vendor_name"}),
    "order.picked_up": frozenset({"order_id", "vendor_name"}),
    "order.rider_arriving": frozenset({"order_id", "vendor_name", "eta_minutes"}),
    "order.delivered": frozenset({"order_id", "vendor_name"}),
    "order.canceled": frozenset({"order_id", "reason"}),
    "rider.assigned": frozenset({"order_id", "vendor_name"}),
    "verification.code": frozenset({"code", "minutes_valid"}),
}

# Event types that also go out by SMS (their templates must have an "sms" text; others must not).
SMS_EVENTS = frozenset({"verification.code", "order.confirmed", "order.rider_arriving", "order.delivered"})

_FIELDS = ("push.title", "push.body", "sms")
_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """A template file that cannot be used; the message names the locale, event and field."""


@dataclass(frozen=True, slots=True)
class Template:
    event: str
    push_title: str
    push_body: str
    sms: str | None


@dataclass(frozen=True, slots=True)
class Rendered:
    push_title: str
    push_body: str
    sms: str | None


Templates = Mapping[str, Mapping[str, Template]]  # locale -> event type -> template


def parse(locale: str, raw: object, events: Mapping[str, frozenset[str]] = EVENTS) -> dict[str, Template]:
    """One locale's templates from its decoded JSON, every placeholder checked against `events`."""
    where = f"templates {locale!r}"
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: expected an object of event types")
    unknown = sorted(set(raw) - set(events))
    if unknown:
        raise TemplateError(f"{where}: unknown event type {unknown[0]!r}")
    missing = sorted(set(events) - set(raw))
    if missing:
        raise TemplateError(f"{where}: no template for event type {missing[0]!r}")
    out: dict[str, Template] = {}
    for event, entry in raw.items():
        at = f"{where}, event {event!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("push"), dict):
            raise TemplateError(f"{at}: expected {{'push': {{'title', 'body'}}, 'sms'?}}")
        push = entry["push"]
        texts = {"push.title": push.get("title"), "push.body": push.get("body"), "sms": entry.get("sms")}
        if event in SMS_EVENTS and texts["sms"] is None:
            raise TemplateError(f"{at}: an SMS event needs an 'sms' text")
        if event not in SMS_EVENTS and texts["sms"] is not None:
            raise TemplateError(f"{at}: 'sms' given for an event that is not sent by SMS")
        for field in _FIELDS:
            text = texts[field]
            if text is None and field == "sms":
                continue
            if not isinstance(text, str) or not text.strip():
                raise TemplateError(f"{at}, {field}: expected a non-empty string")
            _check(text, events[event], f"{at}, {field}")
        out[event] = Template(event, texts["push.title"], texts["push.body"], texts["sms"])
    return out


def _check(text: str, allowed: frozenset[str], at: str) -> None:
    try:
        parts = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise TemplateError(f"{at}: {exc}") from None
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"{at}: placeholder {{{name}}} must be a plain variable name")
        if name not in allowed:
            raise TemplateError(f"{at}: unknown variable {name!r} (the event supplies {', '.join(sorted(allowed))})")


def load_dir(directory: Path = TEMPLATE_DIR) -> dict[str, dict[str, Template]]:
    """Every <locale>.json of `directory`; TemplateError if any is wrong or English is absent."""
    out: dict[str, dict[str, Template]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TemplateError(f"templates {path.stem!r}: not valid JSON ({exc})") from None
        out[path.stem] = parse(path.stem, raw)
    if DEFAULT_LOCALE not in out:
        raise TemplateError(f"no {DEFAULT_LOCALE}.json in {directory}")
    return out


def naira(kobo: int) -> str:
    """Money as people read it in a text: "₦1,500" (kobo shown only when there are some)."""
    whole, part = divmod(kobo, 100)
    return f"₦{whole:,}" + (f".{part:02d}" if part else "")


def budget(lo_kobo: int, hi_kobo: int) -> str:
    return naira(hi_kobo) if lo_kobo == hi_kobo else f"{naira(lo_kobo)}–{naira(hi_kobo)}"


def render(templates: Templates, event: str, locale: str | None, variables: Mapping[str, object]) -> Rendered:
    """The texts of `event` in `locale` (English when that locale has no file).

    KeyError for an unknown event type; TemplateError when `variables` lacks one the template uses
    (the caller's bug: the event was declared to supply it)."""
    by_event = templates.get(locale or DEFAULT_LOCALE) or templates[DEFAULT_LOCALE]
    t = by_event[event]
    values = {k: str(v) for k, v in variables.items() if k in EVENTS[event]}

    def fill(text: str, field: str) -> str:
        try:
            return text.format_map(values)
        except KeyError as exc:
            raise TemplateError(f"event {event!r}, {field}: variable {exc.args[0]!r} not supplied") from None

    return Rendered(
        fill(t.push_title, "push.title"),
        fill(t.push_body, "push.body"),
        fill(t.sms, "sms") if t.sms is not None else None,
    )
