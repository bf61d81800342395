"""The researcher's side: studies, their models, prompts, responses, comparisons and generation jobs.

Status changes go through :mod:`.lifecycle`, pairing through :mod:`.pairing`, uploads through
:mod:`.importers`; this module only wires them to admin actions and views.
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

from . import lifecycle
from .admin_access import StudyScopedAdmin
from .forms import LanguageModelForm, PromptForm, StudyUploadForm
from .importers import ImportFileError, import_prompts, import_responses
from .models import Comparison, GenerationJob, LanguageModel, Prompt, Response, Study
from .pairing import PairingError, build_comparisons

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


# --- inlines --------------------------------------------------------------------------------


class LanguageModelInline(admin.TabularInline):
    model = LanguageModel
    form = LanguageModelForm
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
    readonly_fields = ("status", "prompt_summary", "created_at", "updated_at")
    inlines = (LanguageModelInline, GenerationJobInline)
    actions = ("generate_responses", "build_comparisons_action", "launch", "pause", "close", "ask_judge")
    change_form_template = "admin/studies/study/change_form.html"
    fieldsets = (
        (
            None,
            {"fields": ("title", "slug", "status", "description", "owner", "shared_with", "prompt_summary")},
        ),
        ("Raters", {"fields": ("instructions", "consent_text", "completion_code", "completion_url")}),
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
                    "rating_form",
                )
            },
        ),
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    filter_horizontal = ("shared_with",)
    Media = ProgressMedia

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        if isinstance(db_field, URLField):
            kwargs.setdefault("assume_scheme", "https")  # Django 6's default; silences 5.2's warning
        return super().formfield_for_dbfield(db_field, request, **kwargs)

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
            # Imported here: the web process must not load generation backends to serve the admin.
            from workers.generation import start_generation
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

    @admin.action(description="Build comparisons")
    def build_comparisons_action(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            try:
                added = build_comparisons(study)
            except PairingError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            total = study.comparisons.count()
            self.message_user(request, f"{study.slug}: {added} comparison(s) added, {total} in total.")
            # A draft whose answers are all in (imported, say) is ready once it has comparisons.
            if study.status == Study.Status.DRAFT and total:
                self._transition(request, study, Study.Status.READY, "is ready to launch")

    @admin.action(description="Launch (go live)")
    def launch(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            self._transition(request, study, Study.Status.LIVE, "is live")

    @admin.action(description="Pause (back to ready)")
    def pause(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            # lifecycle allows draft → ready too; "pause" only means taking a live study offline.
            if study.status != Study.Status.LIVE:
                message = f"{study.slug} is {study.status}, not live: nothing to pause."
                self.message_user(request, message, messages.ERROR)
                continue
            self._transition(request, study, Study.Status.READY, "is paused")

    @admin.action(description="Close")
    def close(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            self._transition(request, study, Study.Status.CLOSED, "is closed")

    @admin.action(description="Ask the LLM judge (models with role 'judge')")
    def ask_judge(self, request: HttpRequest, queryset) -> None:
        # Imported here: the web process must not load generation backends to serve the admin.
        from workers.generation import queue_for
        from workers.tasks import judge_study

        for study in queryset:
            judges = list(study.models.filter(role=LanguageModel.Role.JUDGE))
            if not judges:
                message = f"{study.slug} has no model with the role 'judge': add one (any backend) first."
                self.message_user(request, message, messages.ERROR)
                continue
            for judge in judges:
                judge_study.apply_async((study.pk, judge.pk), queue=queue_for(judge))
            names = ", ".join(j.alias for j in judges)
            self.message_user(request, f"{study.slug}: {names} will judge every comparison in both orders.")

    def _transition(self, request: HttpRequest, study: Study, target: str, done: str) -> None:
        try:
            lifecycle.transition(study, target)
        except lifecycle.TransitionError as exc:
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
            try:
                if data["kind"] == StudyUploadForm.KIND_PROMPTS:
                    count = import_prompts(study, data["file"], fmt=data["format"] or None)
                    what = f"{count} prompt(s)"
                else:
                    count = import_responses(data["model"], data["file"], fmt=data["format"] or None)
                    what = f"{count} response(s) for {data['model'].alias}"
            except ImportFileError as exc:
                for line in exc.messages:
                    form.add_error(None, line)
                form.add_error(None, "Nothing was imported.")
            else:
                self.message_user(request, f"Imported {what} into {study.slug}.")
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
    list_filter = ("role", "backend", "study")
    search_fields = ("alias", "model_path", "study__slug")
    list_select_related = ("study",)
    readonly_fields = ("fingerprint", "created_at")


@admin.register(Prompt)
class PromptAdmin(StudyScopedAdmin):
    form = PromptForm
    list_display = ("source_id", "study", "category", "short_text", "position")
    list_filter = ("study", "category")
    search_fields = ("source_id", "text")
    list_select_related = ("study",)

    @admin.display(description="Text")
    def short_text(self, prompt: Prompt) -> str:
        return Truncator(prompt.text).chars(100)

    def get_readonly_fields(self, request: HttpRequest, obj: Prompt | None = None):
        if obj is not None and not lifecycle.prompts_editable(obj.study):
            return [f.name for f in self.opts.fields]
        return super().get_readonly_fields(request, obj)

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
    list_filter = ("model__study", "model__role", "backend", "finish_reason")
    search_fields = ("text", "prompt__source_id", "model__alias", "error")
    list_select_related = ("prompt", "model")
    raw_id_fields = ("prompt", "model")

    @admin.display(description="Text")
    def short_text(self, response: Response) -> str:
        return Truncator(response.text).chars(100)


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
    list_filter = ("study", "is_attention_check", "response_a__model__role", "response_b__model__role")
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
    list_filter = ("status", "study", "model__backend")
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
