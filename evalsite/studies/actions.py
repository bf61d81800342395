"""Every write a researcher can trigger on a study, one function each.

The admin, the API, the management commands and the demo call these and nothing else: each is
atomic, re-reads the study under a row lock, checks the rules itself and raises an
:class:`~evalsite.studies.errors.ActionError` whose message the caller shows as it is (the admin
as a message, the API as a 400/403/409, a command as its error). ``actor`` is the user asking;
``None`` means the system itself (a management command, the demo), which skips the ownership
check but none of the other rules.

The rules written here:

- only a study's owner (or a superuser) changes it;
- a new study belongs to the user who creates it;
- a study's slug never changes (rater links and pseudonyms derive from it), and its status
  changes only through launch / pause / close / ready (:mod:`.lifecycle` holds the transitions);
- while a study is live or closed its models and its rating form are frozen: the ratings
  collected refer to them;
- imports are all or nothing (:mod:`.importers`), pairing is idempotent (:mod:`.pairing`);
- a row never refers to another study's rows and never moves to another study (the models'
  ``clean()``, which every save here runs: a comparison's prompt and responses, a response's
  prompt and model are one study's).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

from django.core.exceptions import ValidationError
from django.db import transaction

from . import importers, lifecycle, pairing
from .access import can_change_study
from .errors import ActionConflict, ActionError, ActionForbidden, ImportRefused, StudyFrozen
from .models import Comparison, LanguageModel, Prompt, Response, Study, related_or_none

__all__ = [
    "ActionConflict",
    "ActionError",
    "ActionForbidden",
    "ImportRefused",
    "StudyFrozen",
    "add_model",
    "build_comparisons",
    "check_can_change",
    "check_design_editable",
    "close_study",
    "create_study",
    "delete_model",
    "delete_study",
    "design_editable",
    "import_prompts",
    "import_responses",
    "launch_study",
    "mark_study_ready",
    "pause_study",
    "save_comparison",
    "save_prompt",
    "save_response",
    "set_study_models",
    "update_model",
    "update_study",
]

S = Study.Status

# Statuses in which ratings are collected or kept: what raters were shown must not change.
FROZEN_STATUSES = frozenset({S.LIVE, S.CLOSED})
# Study fields that are part of what raters see and the analysis reads, frozen with the models.
FROZEN_STUDY_FIELDS = frozenset({"rating_form"})
STUDY_FIELDS = frozenset(f.name for f in Study._meta.concrete_fields) - {"id", "created_at", "updated_at"}


# --- shared checks ------------------------------------------------------------------------------


def check_can_change(actor, study: Study) -> None:
    """Raise :class:`ActionForbidden` unless ``actor`` (``None``: the system) may change ``study``."""
    if actor is not None and not can_change_study(actor, study):
        raise ActionForbidden(
            f"Only the owner of study {study.slug!r} can change it; it is shared with you read-only."
        )


def design_editable(study: Study) -> bool:
    """Whether the study's models and rating form may change (not while live or closed)."""
    return study.status not in FROZEN_STATUSES


def check_design_editable(study: Study, what: str = "models are") -> None:
    """Raise :class:`StudyFrozen` when ``study`` is live or closed. ``what``: "models are", "rating form is"."""
    if not design_editable(study):
        verb = "reopen" if study.status == S.CLOSED else "pause"
        raise StudyFrozen(
            f"Study {study.slug!r} is {study.status}; its {what} frozen while ratings refer to "
            f"{'it' if what.endswith(' is') else 'them'}. {verb.capitalize()} the study first."
        )


def _lock(study: Study) -> Study:
    return Study.objects.select_for_update().get(pk=study.pk)


def _full_clean(obj, **kwargs) -> None:
    """The model's own validation, its errors re-raised as an :class:`ActionError`."""
    try:
        obj.full_clean(**kwargs)
    except ValidationError as exc:
        raise ActionError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc


def _copy_fields(source: Study, target: Study) -> Study:
    """Bring the caller's object in step with the row just written."""
    if target is not source:
        for field in Study._meta.concrete_fields:
            setattr(target, field.attname, getattr(source, field.attname))
        target._state.adding = False
        target._state.db = source._state.db
    return target


# --- the study itself --------------------------------------------------------------------------


def create_study(owner, *, shared_with: Iterable | None = None, **fields) -> Study:
    """Create a draft study owned by ``owner`` (the user creating it; ``None`` for the system)."""
    unknown = set(fields) - STUDY_FIELDS
    if unknown:
        raise TypeError(f"create_study() got unknown field(s): {', '.join(sorted(unknown))}")
    if "owner" in fields:
        raise TypeError("create_study() takes the owner as its first argument only")
    if fields.get("status", S.DRAFT) != S.DRAFT:
        raise ActionError("A new study starts as a draft; launch it once it has comparisons.")
    with transaction.atomic():
        study = Study(owner=owner, **fields)
        _full_clean(study)
        study.save()
        if shared_with:
            study.shared_with.set(shared_with)
    return study


def update_study(study: Study, actor, *, shared_with: Iterable | None = None, **fields) -> Study:
    """Change a study's settings; ``study`` is updated in place and returned.

    Refused: a new slug, a status (use the lifecycle actions), a new owner unless a superuser
    (or the system) asks, and a new rating form while the study is live or closed.
    """
    unknown = set(fields) - STUDY_FIELDS
    if unknown:
        raise TypeError(f"update_study() got unknown field(s): {', '.join(sorted(unknown))}")
    with transaction.atomic():
        locked = _lock(study)
        check_can_change(actor, locked)
        changed = {name: value for name, value in fields.items() if getattr(locked, name) != value}
        if "slug" in changed:
            raise ActionError(
                f"A study's slug cannot change once it is created ({locked.slug!r}): "
                "rater links and pseudonyms are derived from it."
            )
        if "status" in changed:
            raise ActionError("A study's status changes only through launch, pause, close or ready.")
        if "owner" in changed and actor is not None and not actor.is_superuser:
            raise ActionForbidden("Only a superuser can give a study to another owner.")
        if changed.keys() & FROZEN_STUDY_FIELDS:
            check_design_editable(locked, "rating form is")
        for name, value in changed.items():
            setattr(locked, name, value)
        if changed:
            _full_clean(locked)
            locked.save()
        if shared_with is not None:
            locked.shared_with.set(shared_with)
    return _copy_fields(locked, study)


def delete_study(study: Study, actor) -> None:
    """Delete a study and everything in it (its owner or a superuser only)."""
    with transaction.atomic():
        locked = _lock(study)
        check_can_change(actor, locked)
        locked.delete()


# --- models -------------------------------------------------------------------------------------


def set_study_models(
    study: Study, actor, *, save: Iterable[LanguageModel] = (), delete: Iterable[LanguageModel] = ()
) -> None:
    """Save (add or change) and delete models of ``study`` in one go; refused while it is live or closed.

    ``save`` holds model instances carrying their new values (the admin's inline formset hands
    over exactly these); each is validated like the admin form and the API serializer validate it.
    """
    save, delete = list(save), list(delete)
    if not save and not delete:
        return
    with transaction.atomic():
        locked = _lock(study)
        check_can_change(actor, locked)
        check_design_editable(locked, "models are")
        for model in (*save, *delete):
            if model.study_id != locked.pk:
                raise ActionError(f"Model {model.alias!r} does not belong to study {locked.slug!r}.")
        moved = [
            m.alias for m in save if m.pk and LanguageModel.objects.filter(pk=m.pk).exclude(study=locked).exists()
        ]
        if moved:
            raise ActionError(f"A model cannot move to another study ({', '.join(moved)}); add it there instead.")
        for model in delete:
            if model.pk:
                model.delete()
        for model in save:
            _full_clean(model)
            model.save()


def add_model(study: Study, actor, **fields) -> LanguageModel:
    """Add a model to a study that is not live or closed."""
    fields.pop("study", None)
    model = LanguageModel(study=study, **fields)
    set_study_models(study, actor, save=[model])
    return model


def update_model(model: LanguageModel, actor, **fields) -> LanguageModel:
    """Change a model's settings; refused while its study is live or closed."""
    study = fields.pop("study", None)
    if study is not None and study.pk != model.study_id:
        raise ActionError(
            f"A model cannot move to another study; add {model.alias!r} to {study.slug!r} instead."
        )
    for name, value in fields.items():
        setattr(model, name, value)
    set_study_models(model.study, actor, save=[model])
    return model


def delete_model(model: LanguageModel, actor) -> None:
    """Delete a model (and its answers); refused while its study is live or closed."""
    set_study_models(model.study, actor, delete=[model])


# --- prompts, answers and pairs ------------------------------------------------------------------


def _save_in_study(obj, actor, study: Study | None, *, check=None) -> None:
    """Validate ``obj`` (its model's clean(): nothing of another study, no move) and save it, under
    the lock of the study it belongs to; only that study's owner (or the system) may."""
    if study is None:
        _full_clean(obj)  # a missing reference: the model's own validation names it
        raise ActionError("Choose the study this row belongs to.")
    with transaction.atomic():
        locked = _lock(study)
        check_can_change(actor, locked)
        if check is not None:
            check(locked)
        _full_clean(obj)
        obj.save()


def _check_prompts_editable(study: Study) -> None:
    if not lifecycle.prompts_editable(study):
        raise StudyFrozen(f"Study {study.slug!r} is {study.status}: its prompts cannot be edited. Pause it first.")


def save_prompt(prompt: Prompt, actor) -> Prompt:
    """Add or change one prompt; refused while its study is live or closed, and it never changes study."""
    _save_in_study(prompt, actor, related_or_none(prompt, "study"), check=_check_prompts_editable)
    return prompt


def save_response(response: Response, actor) -> Response:
    """Add or change one response: its prompt and model are of one study, which it never leaves."""
    prompt = related_or_none(response, "prompt")
    _save_in_study(response, actor, prompt.study if prompt is not None else None)
    return response


def save_comparison(comparison: Comparison, actor) -> Comparison:
    """Add or change one comparison: its prompt and both responses are its study's own."""
    _save_in_study(comparison, actor, related_or_none(comparison, "study"))
    return comparison



def import_prompts(
    study: Study,
    source: str | IO[bytes],
    *,
    actor=None,
    fmt: str | None = None,
    limits: importers.ImportLimits = importers.DEFAULT_LIMITS,
) -> int:
    """Add the prompts of a JSONL/CSV file, all or nothing; :class:`ImportRefused` lists every problem."""
    check_can_change(actor, study)
    try:
        return importers.import_prompts(study, source, fmt=fmt, limits=limits)
    except importers.ImportFileError as exc:
        raise ImportRefused(exc.messages) from exc


def import_responses(
    model: LanguageModel,
    source: str | IO[bytes],
    *,
    actor=None,
    fmt: str | None = None,
    limits: importers.ImportLimits = importers.DEFAULT_LIMITS,
) -> int:
    """Add an imported model's answers from a JSONL/CSV file, all or nothing."""
    check_can_change(actor, model.study)
    try:
        return importers.import_responses(model, source, fmt=fmt, limits=limits)
    except importers.ImportFileError as exc:
        raise ImportRefused(exc.messages) from exc


def build_comparisons(study: Study, actor=None, *, all_pairs: bool | None = None) -> int:
    """Pair the study's usable answers; returns how many comparisons were added (idempotent)."""
    check_can_change(actor, study)
    try:
        return pairing.build_comparisons(study, all_pairs=all_pairs)
    except pairing.PairingError as exc:
        raise ActionConflict(str(exc)) from exc


# --- status -------------------------------------------------------------------------------------


def _transition(study: Study, actor, target: str, *, only_from: set[str] | None = None, verb: str = "") -> Study:
    with transaction.atomic():
        locked = _lock(study)
        check_can_change(actor, locked)
        if only_from is not None and locked.status not in only_from:
            allowed = " or ".join(sorted(only_from))
            raise ActionConflict(f"{locked.slug} is {locked.status}, not {allowed}: nothing to {verb}.")
        try:
            lifecycle.transition(locked, target)
        except lifecycle.TransitionError as exc:
            raise ActionConflict(str(exc)) from exc
    study.status = locked.status
    return study


def mark_study_ready(study: Study, actor=None) -> Study:
    """Draft (or generating, closed) → ready, e.g. once imported answers are paired."""
    return _transition(study, actor, S.READY)


def launch_study(study: Study, actor=None) -> Study:
    """Ready → live: raters get tasks (attention checks are mixed in if the study asks for them)."""
    return _transition(study, actor, S.LIVE)


def pause_study(study: Study, actor=None) -> Study:
    """Live → ready: no new tasks; refused for a study that is not live."""
    return _transition(study, actor, S.READY, only_from={S.LIVE}, verb="pause")


def close_study(study: Study, actor=None, *, reason: str = "") -> Study:
    """Ready or live → closed. With ``reason`` (the study's stopping rule closing it: why), only a
    live study closes and the reason is kept for the study page; a researcher's close records none."""
    with transaction.atomic():
        _transition(study, actor, S.CLOSED, only_from={S.LIVE} if reason else None, verb="close")
        Study.objects.filter(pk=study.pk).update(stopped_reason=reason)
    study.stopped_reason = reason
    return study
