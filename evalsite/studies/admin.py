"""The researcher's side: studies, their models, prompts, responses, comparisons and generation jobs.

Every write goes through :mod:`.actions` (creating and editing a study and its models, uploads,
pairing, launch / pause / close), which checks the rules and raises an ``ActionError``; this module
only wires the actions to admin pages and shows their errors as messages or form errors.
"""

import logging

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Subquery, URLField
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from . import actions, lifecycle
from .admin_access import StudyScopedAdmin, study_filter
from .errors import ActionError
from .forms import (
    RATING_FORM_FIELDS,
    LanguageModelForm,
    LanguageModelInlineFormSet,
    PromptForm,
    StudyAdminForm,
    StudyUploadForm,
)
from .models import Comparison, GenerationJob, LanguageModel, Prompt, Response, Study
from .rating_form import canonical_rating_form, frozen_note

logger = logging.getLogger(__name__)

FINISHED_JOB_STATES = {GenerationJob.Status.DONE, GenerationJob.Status.FAILED, GenerationJob.Status.CANCELLED}


class ProgressMedia:
    js = ("admin/evalsite-progress.js",)
    css = {"all": ("admin/evalsite-progress.css",)}


def job_label(job: GenerationJob) -> str:
    """Human-readable progress, shared by the page and the JSON the page polls."""
    text = f"{job.done}/{job.total} done"
    if job.failed:
        text += f", {job.failed} failed"
    text += f" · {job.get_status_display().lower()}"
    if job.status not in FINISHED_JOB_STATES and job.eta_seconds:
        text += f" · about {round(job.eta_seconds)} s left"
    return text


def job_progress(job: GenerationJob) -> dict:
    """The JSON shape ``static/admin/evalsite-progress.js`` reads."""
    return {
        "id": job.pk,
        "model": job.model.alias,
        "status": job.status,
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "percent": round(job.percent, 1),
        "eta_seconds": job.eta_seconds,
        "tokens_per_second": job.tokens_per_second,
        "last_error": job.last_error,
        "finished": job.status in FINISHED_JOB_STATES,
        "label": job_label(job),
    }


def progress_bar(job: GenerationJob) -> str:
    """A <progress> element the polling script keeps current while the job runs."""
    url = reverse("admin:studies_study_progress", args=[job.study_id])
    return format_html(
        '<span class="evalsite-progress" data-job="{}" data-url="{}" data-finished="{}">'
        '<progress max="{}" value="{}"></progress> <span class="evalsite-progress-label">{}</span></span>',
        job.pk,
        url,
        "1" if job.status in FINISHED_JOB_STATES else "0",
        max(job.total, 1),
        job.done + job.failed,
        job_label(job),
    )


def _count_per_study(model, field: str = "study"):
    """Count related rows with a subquery, so several counts don't multiply each other's joins."""
    rows = model.objects.filter(**{field: OuterRef("pk")}).order_by().values(field).annotate(n=Count("pk"))
    return Coalesce(Subquery(rows.values("n"), output_field=IntegerField()), 0)


def rating_form_description(study: Study | None) -> str:
    """Above the rating-form builder: why it is frozen, or where to see the result."""
    if study is None or study.pk is None:
        return "What the rater page asks. Save the study to preview the task page."
    preview = format_html('<a href="{}" id="preview-link">Preview the task page</a>', study_preview_url(study))
    if not actions.design_editable(study):
        return format_html('<strong id="form-frozen">{}</strong> {}', frozen_note(study.status), preview)
    return format_html("What the rater page asks. {} (as saved) exactly as a worker sees it.", preview)


def describe_rating_form(form: dict) -> str:
    """A stored rating form in words: the questions asked, the required ones starred."""
    form = canonical_rating_form(form if isinstance(form, dict) else {})
    required = set(form["required"])
    asked = [("preference", "overall preference")]
    asked += [(q, label) for q, label in (("strength", "strength"), ("correctness", "correctness")) if form[q]]
    if form["style_aspects"]:
        asked.append(("style", "style: " + ", ".join(form["style_aspects"])))
    if form["error_spans"]:
        asked.append(("error_spans", "error spans"))
    if form["rationale"]:
        asked.append(("rationale", "rationale"))
    return "; ".join(label + (" (required)" if q in required else "") for q, label in asked)


def study_preview_url(study: Study) -> str:
    return reverse("studies:preview", args=[study.slug])


# --- inlines --------------------------------------------------------------------------------


class LanguageModelInline(admin.TabularInline):
    model = LanguageModel
    form = LanguageModelForm
    formset = LanguageModelInlineFormSet  # refuses changes while the study is live or closed
    extra = 0
    show_change_link = True
    fields = (
        "alias",
        "role",
        "backend",
        "model_path",
        "temperature",
        "top_p",
        "max_tokens",
        "samples_per_prompt",
    )


class GenerationJobInline(admin.TabularInline):
    model = GenerationJob
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("model", "status", "progress", "started_at", "finished_at", "last_error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # jobs come from the "generate responses" action

    @admin.display(description="Progress")
    def progress(self, job: GenerationJob) -> str:
        return progress_bar(job)


# --- studies --------------------------------------------------------------------------------


@admin.register(Study)
class StudyAdmin(StudyScopedAdmin):
    study_path = ""

    list_display = (
        "title",
        "slug",
        "status",
        "pairing",
        "n_models",
        "n_prompts",
        "n_comparisons",
        "created_at",
    )
    list_filter = ("status", "pairing", "created_at")
    search_fields = ("slug", "title", "description")
    prepopulated_fields = {"slug": ("title",)}
    readonly_fields = ("status", "prompt_summary", "stopped_reason", "created_at", "updated_at")
    inlines = (LanguageModelInline, GenerationJobInline)
    actions = (
        "generate_responses",
        "cancel_generation_action",
        "build_comparisons_action",
        "launch",
        "pause",
        "close",
        "ask_judge",
    )
    change_form_template = "admin/studies/study/change_form.html"
    fieldsets = (
        (
            None,
            {"fields": ("title", "slug", "status", "description", "owner", "shared_with", "prompt_summary")},
        ),
        (
            "Raters",
            {"fields": ("public_title", "instructions", "consent_text", "completion_code", "completion_url")},
        ),
        ("Experts", {"fields": ("expert_redundancy", "expert_share")}),
        (
            "Design",
            {
                "fields": (
                    "pairing",
                    "redundancy",
                    "tasks_per_rater",
                    "lease_seconds",
                    "attention_check_rate",
                    "min_seconds_per_task",
                    "max_attention_failures",
                )
            },
        ),
        (
            "Allocation and stopping",
            {"fields": ("allocation", "target_halfwidth", "stop_when_precise", "stopped_reason")},
        ),
        ("Exports", {"fields": ("tie_rule",)}),
        ("Rating form", {"fields": RATING_FORM_FIELDS}),  # the builder; see get_fieldsets
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    filter_horizontal = ("shared_with",)
    form = StudyAdminForm
    Media = ProgressMedia

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        if isinstance(db_field, URLField):
            kwargs.setdefault("assume_scheme", "https")  # Django 6's default; silences 5.2's warning
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Study | None = None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields.append("slug")  # rater links and pseudonyms derive from it
        if not request.user.is_superuser:
            fields.append("owner")  # a researcher's new study is theirs (actions.create_study)
        return fields

    def get_prepopulated_fields(self, request: HttpRequest, obj: Study | None = None):
        return super().get_prepopulated_fields(request, obj) if obj is None else {}

    def get_fieldsets(self, request: HttpRequest, obj: Study | None = None):
        """The rating-form builder, with what it is for, or why it is frozen (a live or closed study)."""
        fieldsets = []
        for name, options in super().get_fieldsets(request, obj):
            if name == "Rating form":
                options = {**options, "description": rating_form_description(obj)}
                if obj is not None and not self.has_change_permission(request, obj):
                    options["fields"] = ("rating_form_summary",)  # read-only: the form as the page asks it
            fieldsets.append((name, options))
        return fieldsets

    @admin.display(description="Rating form")
    def rating_form_summary(self, study: Study) -> str:
        return describe_rating_form(study.rating_form)

    # --- saving goes through the actions ----------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Study, form, change: bool) -> None:
        if change:
            actions.update_study(obj, request.user, **form.study_fields(changed_only=True))
            return
        fields = form.study_fields()  # the rating form composed by the builder included
        owner = fields.pop("owner", None) or request.user
        created = actions.create_study(owner, **fields)
        # The admin goes on with its own object (inlines, log entry, redirect): make it the row.
        for field in Study._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding, obj._state.db = False, created._state.db

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        # ``shared_with`` was saved by the action; only the inlines remain.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        if formset.model is LanguageModel:
            saved = formset.save(commit=False)
            actions.set_study_models(form.instance, request.user, save=saved, delete=formset.deleted_objects)
            return
        super().save_formset(request, form, formset, change)

    def delete_model(self, request: HttpRequest, obj: Study) -> None:
        actions.delete_study(obj, request.user)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            actions.delete_study(study, request.user)

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .annotate(
                models_count=_count_per_study(LanguageModel),
                prompts_count=_count_per_study(Prompt),
                comparisons_count=_count_per_study(Comparison),
            )
        )

    @admin.display(description="Models", ordering="models_count")
    def n_models(self, study: Study) -> int:
        return study.models_count

    @admin.display(description="Prompts", ordering="prompts_count")
    def n_prompts(self, study: Study) -> int:
        return study.prompts_count

    @admin.display(description="Comparisons", ordering="comparisons_count")
    def n_comparisons(self, study: Study) -> int:
        return study.comparisons_count

    @admin.display(description="Prompts")
    def prompt_summary(self, study: Study) -> str:
        # A study can hold hundreds of prompts: link to the filtered list instead of inlining them.
        if not study.pk:
            return "Save the study, then upload prompts."
        prompts = reverse("admin:studies_prompt_changelist") + f"?study__id__exact={study.pk}"
        responses = reverse("admin:studies_response_changelist") + f"?model__study__id__exact={study.pk}"
        comparisons = reverse("admin:studies_comparison_changelist") + f"?study__id__exact={study.pk}"
        upload = reverse("admin:studies_study_upload", args=[study.pk])
        return format_html(
            '<a href="{}">{} prompts</a> · <a href="{}">{} responses</a> · <a href="{}">{} comparisons</a>'
            ' · <a href="{}">upload prompts or responses</a>',
            prompts,
            study.prompts.count(),
            responses,
            Response.objects.filter(model__study=study).count(),
            comparisons,
            study.comparisons.count(),
            upload,
        )

    # --- actions ----------------------------------------------------------------------------

    @admin.action(description="Generate responses")
    def generate_responses(self, request: HttpRequest, queryset) -> None:
        try:
            # Imported here: the admin keeps working (with this message) where generation is absent.
            from evalsite.generation.actions import start_generation
        except ImportError as exc:
            message = f"Generation is not available in this installation ({exc})."
            self.message_user(request, message, messages.ERROR)
            return
        for study in queryset:
            if study.status in (Study.Status.LIVE, Study.Status.CLOSED):
                verb = "pause" if study.status == Study.Status.LIVE else "reopen"
                message = f"{study.slug} is {study.status}: {verb} it (back to ready) before generating."
                self.message_user(request, message, messages.ERROR)
                continue
            try:
                start_generation(study)
            except Exception as exc:  # noqa: BLE001 -- any failure becomes a message, not a 500
                logger.exception("start_generation failed for study %s", study.slug)
                self.message_user(request, f"{study.slug}: generation did not start: {exc}", messages.ERROR)
            else:
                message = f"{study.slug}: generation started; progress shows on the study page."
                self.message_user(request, message)

    @admin.action(description="Cancel generation")
    def cancel_generation_action(self, request: HttpRequest, queryset) -> None:
        from evalsite.generation.actions import GenerationSetupError, cancel_generation

        for study in queryset:
            try:
                cancelled = cancel_generation(study)
            except (GenerationSetupError, lifecycle.TransitionError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            message = (
                f"{study.slug}: {len(cancelled)} generation job(s) cancelled; running ones stop after their "
                f"current batch and keep their answers. The study is {study.status}."
            )
            self.message_user(request, message)

    @admin.action(description="Build comparisons")
    def build_comparisons_action(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            try:
                added = actions.build_comparisons(study, request.user)
            except ActionError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            total = study.comparisons.count()
            self.message_user(request, f"{study.slug}: {added} comparison(s) added, {total} in total.")
            # A draft whose answers are all in (imported, say) is ready once it has comparisons.
            if study.status == Study.Status.DRAFT and total:
                self._transition(request, actions.mark_study_ready, study, "is ready to launch")

    @admin.action(description="Launch (go live)")
    def launch(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            self._transition(request, actions.launch_study, study, "is live")

    @admin.action(description="Pause (back to ready)")
    def pause(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            self._transition(request, actions.pause_study, study, "is paused")

    @admin.action(description="Close")
    def close(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            self._transition(request, actions.close_study, study, "is closed")

    @admin.action(description="Ask the LLM judge (models with role 'judge')")
    def ask_judge(self, request: HttpRequest, queryset) -> None:
        from evalsite.generation.jobs import enqueue_judge

        for study in queryset:
            judges = list(study.models.filter(role=LanguageModel.Role.JUDGE))
            if not judges:
                message = f"{study.slug} has no model with the role 'judge': add one (any backend) first."
                self.message_user(request, message, messages.ERROR)
                continue
            for judge in judges:
                enqueue_judge(study, judge)
            names = ", ".join(j.alias for j in judges)
            self.message_user(request, f"{study.slug}: {names} will judge every comparison in both orders.")

    def _transition(self, request: HttpRequest, action, study: Study, done: str) -> None:
        try:
            action(study, request.user)
        except ActionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"{study.slug} {done}.")

    # --- extra views ------------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:object_id>/progress/", wrap(self.progress_view), name="studies_study_progress"),
            path("<int:object_id>/upload/", wrap(self.upload_view), name="studies_study_upload"),
            *super().get_urls(),
        ]

    def progress_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        """Generation progress of one study, polled by the admin pages every two seconds."""
        study = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_view_permission(request, study):
            raise PermissionDenied
        jobs = study.generation_jobs.select_related("model").order_by("created_at")
        payload = {"study": study.slug, "status": study.status, "jobs": [job_progress(j) for j in jobs]}
        return JsonResponse(payload)

    def upload_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Upload prompts or an imported model's responses; all or nothing, errors listed on the form."""
        study = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, study):
            raise PermissionDenied
        form = StudyUploadForm(request.POST or None, request.FILES or None, study=study)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            upload = {"actor": request.user, "fmt": data["format"] or None}
            try:
                if data["kind"] == StudyUploadForm.KIND_PROMPTS:
                    count = actions.import_prompts(study, data["file"], **upload)
                    what = f"{count} prompt(s)"
                else:
                    count = actions.import_responses(data["model"], data["file"], **upload)
                    what = f"{count} response(s) for {data['model'].alias}"
            except ActionError as exc:
                for line in exc.messages:
                    form.add_error(None, line)
                form.add_error(None, "Nothing was imported.")
            else:
                self.message_user(request, f"Imported {what} into {study.slug} (read as {count.format_label}).")
                return HttpResponseRedirect(reverse("admin:studies_study_change", args=[study.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Upload to {study.title}",
            "opts": self.opts,
            "original": study,
            "form": form,
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/studies/study/upload.html", context)


# --- the other models -----------------------------------------------------------------------


@admin.register(LanguageModel)
class LanguageModelAdmin(StudyScopedAdmin):
    form = LanguageModelForm
    list_display = ("alias", "study", "role", "backend", "model_path", "temperature", "top_p", "max_tokens")
    list_filter = ("role", "backend", study_filter())
    search_fields = ("alias", "model_path", "study__slug")
    list_select_related = ("study",)
    readonly_fields = ("fingerprint", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: LanguageModel | None = None):
        if obj is not None and not actions.design_editable(obj.study):
            return [f.name for f in self.opts.fields]  # frozen while the study is live or closed
        fields = list(super().get_readonly_fields(request, obj))
        return fields if obj is None else [*fields, "study"]  # a model never moves to another study

    def has_delete_permission(self, request: HttpRequest, obj: LanguageModel | None = None) -> bool:
        if obj is not None and not actions.design_editable(obj.study):
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: LanguageModel, form, change: bool) -> None:
        if not change or form.has_changed():
            actions.set_study_models(obj.study, request.user, save=[obj])

    def delete_model(self, request: HttpRequest, obj: LanguageModel) -> None:
        actions.delete_model(obj, request.user)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for model in queryset.select_related("study"):
            try:
                actions.delete_model(model, request.user)
            except ActionError as exc:
                self.message_user(request, f"{model.alias} was kept: {exc}", messages.WARNING)


@admin.register(Prompt)
class PromptAdmin(StudyScopedAdmin):
    form = PromptForm
    list_display = ("source_id", "study", "category", "short_text", "position")
    list_filter = (study_filter(), "category")
    search_fields = ("source_id", "text")
    list_select_related = ("study",)

    @admin.display(description="Text")
    def short_text(self, prompt: Prompt) -> str:
        return Truncator(prompt.text).chars(100)

    def get_readonly_fields(self, request: HttpRequest, obj: Prompt | None = None):
        if obj is not None and not lifecycle.prompts_editable(obj.study):
            return [f.name for f in self.opts.fields]
        fields = list(super().get_readonly_fields(request, obj))
        return fields if obj is None else [*fields, "study"]  # a prompt never moves to another study

    def save_model(self, request: HttpRequest, obj: Prompt, form, change: bool) -> None:
        actions.save_prompt(obj, request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Prompt | None = None) -> bool:
        if obj is not None and not lifecycle.prompts_editable(obj.study):
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        frozen = queryset.filter(study__status__in=[Study.Status.LIVE, Study.Status.CLOSED])
        if frozen.exists():
            self.message_user(
                request, f"{frozen.count()} prompt(s) of live or closed studies were kept.", messages.WARNING
            )
        super().delete_queryset(request, queryset.exclude(pk__in=frozen.values("pk")))


@admin.register(Response)
class ResponseAdmin(StudyScopedAdmin):
    study_path = "prompt__study"

    list_display = (
        "prompt",
        "model",
        "sample_index",
        "short_text",
        "finish_reason",
        "completion_tokens",
        "error",
    )
    list_filter = (study_filter("model__study"), "model__role", "backend", "finish_reason")
    search_fields = ("text", "prompt__source_id", "model__alias", "error")
    list_select_related = ("prompt", "model")
    raw_id_fields = ("prompt", "model")

    @admin.display(description="Text")
    def short_text(self, response: Response) -> str:
        return Truncator(response.text).chars(100)

    def save_model(self, request: HttpRequest, obj: Response, form, change: bool) -> None:
        actions.save_response(obj, request.user)


@admin.register(Comparison)
class ComparisonAdmin(StudyScopedAdmin):
    list_display = (
        "id",
        "study",
        "prompt",
        "model_a",
        "model_b",
        "is_attention_check",
        "n_live",
        "n_submitted",
    )
    list_filter = (study_filter(), "is_attention_check", "response_a__model__role", "response_b__model__role")
    search_fields = (
        "prompt__source_id",
        "prompt__text",
        "response_a__model__alias",
        "response_b__model__alias",
    )
    list_select_related = ("study", "prompt", "response_a__model", "response_b__model")
    raw_id_fields = ("prompt", "response_a", "response_b")
    readonly_fields = ("n_live", "n_submitted")

    @admin.display(description="A")
    def model_a(self, comparison: Comparison) -> str:
        return comparison.response_a.model.alias

    @admin.display(description="B")
    def model_b(self, comparison: Comparison) -> str:
        return comparison.response_b.model.alias

    def save_model(self, request: HttpRequest, obj: Comparison, form, change: bool) -> None:
        actions.save_comparison(obj, request.user)


@admin.register(GenerationJob)
class GenerationJobAdmin(StudyScopedAdmin):
    list_display = (
        "id",
        "study",
        "model",
        "status",
        "progress",
        "tokens_per_second",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", study_filter(), "model__backend")
    search_fields = ("study__slug", "model__alias", "last_error")
    list_select_related = ("study", "model")
    readonly_fields = (
        "study",
        "model",
        "status",
        "progress",
        "total",
        "done",
        "failed",
        "tokens_per_second",
        "eta_seconds",
        "last_error",
        "celery_task_id",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    )
    Media = ProgressMedia

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs come from the study's "generate responses" action

    @admin.display(description="Progress")
    def progress(self, job: GenerationJob) -> str:
        return progress_bar(job)
