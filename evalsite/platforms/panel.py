"""What the study page and the API show of each crowd platform (reads only, plain values)."""

from __future__ import annotations

import math
from collections import Counter

from django.db.models import Count, Sum

from evalsite.studies.access import can_change_study
from evalsite.studies.models import Study

from . import mturk
from .actions import APPROVED, AWAITING, OPEN_STATES, holding_places, preview_review, suggested_more_places
from .credentials import default_token_env, read_token
from .models import AuditEntry, Bonus, Platform, PlatformStudy
from .places import initial_places


def money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


def _bonuses(link: PlatformStudy) -> dict:
    rows = link.bonuses.values("state").annotate(n=Count("id"), cents=Sum("amount_cents"))
    by_state = {r["state"]: (r["n"], r["cents"] or 0) for r in rows}
    return {state: {"count": by_state.get(state, (0, 0))[0], "cents": by_state.get(state, (0, 0))[1]}
            for state in Bonus.State.values}


def _link_view(link: PlatformStudy, study: Study, can_change: bool) -> dict:
    statuses = Counter(link.submissions.values_list("status", flat=True))
    approved = statuses.get(APPROVED[link.platform], 0)
    bonuses = _bonuses(link)
    reward_paid = approved * link.reward_cents
    reward_open = max(0, link.places - approved) * link.reward_cents
    bonus_open = bonuses["pending"]["cents"] + bonuses["sending"]["cents"]
    attention = [
        {
            "id": b.pk,
            "amount": money(b.amount_cents),
            "submission": b.submission.external_id,
            "state": b.state,
            "state_label": b.get_state_display(),
            "error": b.error,
        }
        for b in link.bonuses.filter(state__in=[Bonus.State.SENDING, Bonus.State.FAILED])
        .select_related("submission").order_by("id")[:50]
    ] + [
        {"id": b.pk, "amount": money(b.amount_cents), "submission": b.submission.external_id, "state": b.state,
         "state_label": "Pending (last try refused)", "error": b.error}
        for b in link.bonuses.filter(state=Bonus.State.PENDING).exclude(error="").select_related("submission")[:50]
    ]
    awaiting = statuses.get(AWAITING[link.platform], 0)
    return {
        "external_id": link.external_id,
        "state": link.state,
        "open": link.state in OPEN_STATES[link.platform],
        "needs_close": study.status == Study.Status.CLOSED and link.state in OPEN_STATES[link.platform],
        "unpublished": link.platform == Platform.PROLIFIC and link.state == "UNPUBLISHED",
        "places": link.places,
        "places_taken": link.places_taken,
        "places_holding": holding_places(link),
        "more_places": suggested_more_places(link) if can_change else 0,
        "sandbox": link.sandbox,
        "currency": link.currency,
        "reward": money(link.reward_cents),
        "submissions": dict(sorted(statuses.items())),
        "submissions_total": sum(statuses.values()),
        "awaiting": awaiting,
        "review": preview_review(link) if can_change and awaiting else {},
        "bonuses": {k: {"count": v["count"], "amount": money(v["cents"])} for k, v in bonuses.items()},
        "bonuses_attention": attention,
        "money": {
            "spent": money(reward_paid + bonuses["paid"]["cents"]),
            "committed": money(reward_open + bonus_open),
            "rewards_paid": money(reward_paid),
            "rewards_open": money(reward_open),
            "bonuses_paid": money(bonuses["paid"]["cents"]),
            "bonuses_open": money(bonus_open),
        },
        "last_synced_at": link.last_synced_at.isoformat() if link.last_synced_at else None,
        "last_error": link.last_error,
        "token_env": link.token_env,
        "token_set": bool(link.token_env and read_token(link.token_env)),
    }


def platform_panel(study: Study, user) -> dict:
    """Per platform: the link (or what publishing would use), and the study's recent audit entries."""
    can_change = can_change_study(user, study)
    links = {link.platform: link for link in PlatformStudy.objects.filter(study=study)}
    minutes = max(1, math.ceil(study.tasks_per_rater * 40 / 60))
    rows = []
    for platform in Platform:
        link = links.get(platform.value)
        published = link is not None and bool(link.external_id)
        token_env = (link.token_env if link and link.token_env else default_token_env(study.slug))
        rows.append({
            "platform": platform.value,
            "label": platform.label,
            "published": published,
            "link": _link_view(link, study, can_change) if published else None,
            "last_error": link.last_error if link and not published else "",
            "defaults": {
                "places": initial_places(study),
                "estimated_minutes": minutes,
                "token_env": token_env,
                "token_set": platform == Platform.PROLIFIC and read_token(token_env) is not None,
                "production_allowed": platform == Platform.MTURK and mturk.production_allowed(),
            },
        })
    entries = [
        {
            "at": e.created_at.isoformat(),
            "who": e.actor.get_username() if e.actor_id else "system",
            "platform": e.platform,
            "action": e.action,
            "ok": e.ok,
            "message": e.message,
        }
        for e in AuditEntry.objects.filter(study=study).select_related("actor")[:20]
    ]
    return {"platforms": rows, "audit": entries, "can_change": can_change, "live": study.status == Study.Status.LIVE}
