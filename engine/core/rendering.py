"""What a send says: its template id and the data rendered from the event, and how it goes out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..rules import expressions
from ..rules.budget import budget
from ..rules.model import Config, Notification, Routing, TemplateChoice

__all__ = ["Delivery", "RenderError", "Rendered", "UnsubscribeLinker", "render"]

# Builds a signed unsubscribe link: (notification id, recipient id) -> URL. Given by the runtime.
UnsubscribeLinker = Callable[[str, str], str]


class RenderError(Exception):
    """A send cannot be rendered (a missing field, a refused expression, no template id)."""


@dataclass(frozen=True)
class Rendered:
    template_key: str
    template: str  # the resolved Courier template id
    data: dict[str, Any]
    idempotency_key: str
    variant: str | None = None


@dataclass(frozen=True)
class Delivery:
    """What a send's message says besides its address and data, decided when it goes out under the
    rules in force: its template id, channels and routing, what its metadata names, and its deadline
    (`engine.delivery.message` writes it in Courier's form)."""

    channels: tuple[str, ...]
    template: str | None = None
    method: Routing = "single"
    notification: str = ""
    category: str = ""
    variant: str | None = None
    trace_id: str | None = None  # the send's idempotency key
    expires_at: datetime | None = None


def common_data(config: Config, recipient: Mapping[str, Any]) -> dict[str, Any]:
    app = config.app
    return {"app_name": app.name, "frontend_url": app.frontend_url, "support_email": app.support_email,
            "user_name": recipient.get("name", ""), "user_email": recipient.get("email", "")}


def template_key(rule: Notification, ctx: dict[str, Any]) -> tuple[str, str | None]:
    """(template key, A/B variant or None)."""
    if rule.template.key:
        return rule.template.key, None
    return _variant(rule, ctx) if rule.template.variants else (_selected(rule.template, ctx), None)


def _variant(rule: Notification, ctx: dict[str, Any]) -> tuple[str, str]:
    picked = rule.template.variant_for(rule.id, str(ctx.get("recipient", {}).get("id", "")))
    if picked is None:
        raise RenderError("no variant has a weight")
    return picked[1], picked[0]


def _selected(choice: TemplateChoice, ctx: dict[str, Any]) -> str:
    case = str(expressions.evaluate(choice.select or "", ctx))
    key = choice.cases.get(case, choice.default)
    if key is None:
        raise RenderError(f"template select gave {case!r}, which no case names (cases: {', '.join(choice.cases)})")
    return key


def render(config: Config, rule: Notification, ctx: dict[str, Any], recipient: Mapping[str, Any], env: str,
           environ: Mapping[str, str] | None = None, unsubscribe: UnsubscribeLinker | None = None) -> Rendered:
    """Render a rule's payload in `ctx` (see matching.context); RenderError says what failed."""
    key, variant, data, idempotency_key = _rendered(config, rule, ctx, recipient)
    data.update(_unsubscribe_url(config, rule, recipient, unsubscribe))
    missing = [name for name in rule.requires if name not in data]
    if missing:
        raise RenderError(f"required data missing: {', '.join(missing)}")
    return Rendered(key, _template_id(config, env, key, environ), data, idempotency_key, variant)


def _rendered(config: Config, rule: Notification, ctx: dict[str, Any],
              recipient: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any], str]:
    """(template key, variant, data, idempotency key), all within one budget: each value renders
    within what the others left."""
    try:
        with budget():
            key, variant = template_key(rule, ctx)
            data = {**common_data(config, recipient), **expressions.render_data(rule.data, ctx)}
            return key, variant, data, str(expressions.render(rule.idempotency_key, ctx))
    except expressions.ExpressionError as exc:
        raise RenderError(str(exc)) from None


def _unsubscribe_url(config: Config, rule: Notification, recipient: Mapping[str, Any],
                     unsubscribe: UnsubscribeLinker | None) -> dict[str, str]:
    category = config.categories.get(rule.category)
    if unsubscribe is None or category is None or not category.opt_out:
        return {}
    return {"unsubscribe_url": unsubscribe(rule.id, str(recipient.get("id", "")))}


def _template_id(config: Config, env: str, key: str, environ: Mapping[str, str] | None) -> str:
    template = config.template_id(env, key, environ)
    if not template:
        raise RenderError(f"no Courier template id for {key!r} in templates_map/{env}.yaml")
    return template
