"""The notification templates shipped in engine/templates: every one renders with the
variables its event declares; a template using a variable its event does not supply fails when
loaded, naming the locale, event, field and variable."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from engine.notify_templates import EVENTS, SMS_EVENTS, TEMPLATE_DIR, TemplateError, load_dir, parse, render

ISSUE_EVENTS = {
    "request.nearby",
    "offer.new",
    "offer.countered",
    "offer.accepted",
    "offer.rejected",
    "order.confirmed",
    "order.delivered",
    "rider.assigned",
    "verification.code",
}


def _shipped_en() -> dict[str, object]:
    raw: dict[str, object] = json.loads((TEMPLATE_DIR / "en.json").read_text(encoding="utf-8"))
    return raw


def _copy_with(tmp_path: Path, change: dict[str, object]) -> Path:
    shutil.copytree(TEMPLATE_DIR, tmp_path / "t")
    raw = _shipped_en()
    raw.update(change)
    (tmp_path / "t" / "en.json").write_text(json.dumps(raw), encoding="utf-8")
    return tmp_path / "t"


def test_every_shipped_template_renders_with_its_declared_variables() -> None:
    templates = load_dir()
    assert ISSUE_EVENTS <= set(EVENTS)
    for locale, by_event in templates.items():
        assert set(by_event) == set(EVENTS), locale
        for event, names in EVENTS.items():
            values = {name: f"<{name}>" for name in names}
            out = render(templates, event, locale, values)
            texts = [out.push_title, out.push_body] + ([out.sms] if out.sms is not None else [])
            for text in texts:
                assert text.strip() and not re.search(r"[{}]", text), (locale, event, text)
            assert (out.sms is not None) == (event in SMS_EVENTS), (locale, event)


def test_render_fills_values_and_falls_back_to_english() -> None:
    templates = load_dir()
    out = render(templates, "verification.code", "yo", {"code": "482913", "minutes_valid": 10, "extra": "ignored"})
    assert out.sms is not None and "482913" in out.sms and "10 minutes" in out.sms
    assert "482913" in out.push_body


def test_render_without_a_declared_variable_fails_clearly() -> None:
    with pytest.raises(TemplateError, match=r"'verification\.code'.*'code' not supplied"):
        render(load_dir(), "verification.code", "en", {"minutes_valid": 10})


def test_unknown_variable_fails_at_load_naming_it(tmp_path: Path) -> None:
    directory = _copy_with(
        tmp_path, {"offer.new": {"push": {"title": "New offer", "body": "{vendor_name} offers {price_naira}"}}}
    )
    with pytest.raises(TemplateError) as info:
        load_dir(directory)
    message = str(info.value)
    assert "'en'" in message and "'offer.new'" in message and "push.body" in message
    assert "unknown variable 'price_naira'" in message


def test_unknown_variable_in_an_sms_text_fails_at_load(tmp_path: Path) -> None:
    entry = {"push": {"title": "Code", "body": "{code}"}, "sms": "Code {code}, phone {phone}"}
    with pytest.raises(TemplateError, match=r"'verification\.code', sms: unknown variable 'phone'"):
        load_dir(_copy_with(tmp_path, {"verification.code": entry}))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"order.teleported": {"push": {"title": "x", "body": "y"}}}, "unknown event type 'order.teleported'"),
        ({"offer.new": {"push": {"title": "x", "body": "{price:>10}"}}}, "plain variable name"),
        ({"offer.new": {"push": {"title": "x", "body": "{dish.upper}"}}}, "plain variable name"),
        ({"offer.new": {"push": {"title": "x", "body": "{dish"}}}, "'offer.new', push.body"),
        ({"offer.new": {"push": {"title": "", "body": "y"}}}, "push.title: expected a non-empty string"),
        ({"offer.new": {"push": {"title": "x", "body": "y"}, "sms": "z"}}, "not sent by SMS"),
        ({"order.delivered": {"push": {"title": "x", "body": "y"}}}, "needs an 'sms' text"),
    ],
)
def test_malformed_templates_fail_at_load(tmp_path: Path, change: dict[str, object], expected: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(expected)):
        load_dir(_copy_with(tmp_path, change))


def test_a_locale_missing_an_event_type_fails_at_load() -> None:
    raw = _shipped_en()
    del raw["rider.assigned"]
    with pytest.raises(TemplateError, match=r"templates 'fr': no template for event type 'rider\.assigned'"):
        parse("fr", raw)


def test_english_is_required(tmp_path: Path) -> None:
    (tmp_path / "fr.json").write_text(json.dumps(_shipped_en()), encoding="utf-8")
    with pytest.raises(TemplateError, match=r"no en\.json"):
        load_dir(tmp_path)
