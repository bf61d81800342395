"""Admin forms: decoding-parameter validation, frozen prompts, models and rating form, and the upload form.

The frozen-while-live checks are the actions' own (:mod:`.actions`), run here as well so that the
admin shows them on the form, with the researcher's input kept, before the action re-checks
under the study's row lock.
"""

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from .actions import check_design_editable
from .errors import ActionError
from .lifecycle import prompts_editable
from .models import LanguageModel, Prompt, Study


def _https_urls(db_field, **kwargs):
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")  # Django 6's default; silences 5.2's warning
    return db_field.formfield(**kwargs)


class StudyAdminForm(forms.ModelForm):
    """The study form: a live or closed study's rating form cannot change."""

    class Meta:
        model = Study
        formfield_callback = _https_urls
        fields = (  # what a researcher sets; the admin's fieldsets show them
            "title", "slug", "description", "owner", "shared_with", "instructions", "consent_text",
            "completion_code", "completion_url", "pairing", "redundancy", "tasks_per_rater", "lease_seconds",
            "attention_check_rate", "min_seconds_per_task", "max_attention_failures", "rating_form",
        )

    def clean(self) -> dict:
        data = super().clean()
        if self.instance.pk is not None and "rating_form" in self.changed_data:
            try:
                check_design_editable(self.instance, "rating form is")
            except ActionError as exc:
                self.add_error("rating_form", exc)
        return data


class LanguageModelForm(forms.ModelForm):
    """Validates decoding parameters with messages a researcher can act on.

    The database enforces the numeric ranges too (check constraints); this form turns a bad value
    into a field error instead of an IntegrityError page.
    """

    class Meta:
        model = LanguageModel
        fields = LanguageModel.CONFIG_FIELDS

    # Decoding parameters, stop sequences and engine options are checked by the model's field
    # validators (the API's serializer uses the same ones).

    def clean(self) -> dict:
        data = super().clean()
        backend = data.get("backend")
        path = (data.get("model_path") or "").strip()
        if backend and backend != LanguageModel.Backend.IMPORTED and not path:
            self.add_error("model_path", f"A model path or name is needed for backend {backend!r}.")
        # On its own page the form names its study; as the study page's inline, the formset checks.
        study = data.get("study") if "study" in self.fields else None
        if study is not None and (self.instance.pk is None or self.has_changed()):
            check_design_editable(study, "models are")
        return data


class LanguageModelInlineFormSet(forms.BaseInlineFormSet):
    """The study page's models: adding, changing or deleting one is refused while the study is live."""

    def clean(self) -> None:
        super().clean()
        if self.instance is None or self.instance.pk is None:
            return
        touched = any(
            (self.can_delete and self._should_delete_form(form)) or form.has_changed() for form in self.forms
        )
        if touched:
            check_design_editable(self.instance, "models are")


class PromptForm(forms.ModelForm):
    """Refuses new prompts for a live or closed study (ratings refer to its prompts)."""

    class Meta:
        model = Prompt
        fields = ("study", "source_id", "text", "category", "reference_answers", "metadata", "position")

    def clean(self) -> dict:
        data = super().clean()
        study = data.get("study")
        if study is not None and not prompts_editable(study):
            raise ValidationError(
                f"Study {study.slug!r} is {study.status}: its prompts cannot be edited. Pause it first."
            )
        return data


class StudyUploadForm(forms.Form):
    """Upload a prompt file, or an imported model's responses, for one study."""

    KIND_PROMPTS = "prompts"
    KIND_RESPONSES = "responses"

    kind = forms.ChoiceField(
        choices=[(KIND_PROMPTS, "Prompts"), (KIND_RESPONSES, "Responses of an imported model")],
        initial=KIND_PROMPTS,
        widget=forms.RadioSelect,
    )
    model = forms.ModelChoiceField(
        queryset=LanguageModel.objects.none(),
        required=False,
        help_text="For responses: a model of this study whose backend is 'Imported file'.",
    )
    file = forms.FileField(
        help_text="A .jsonl or .csv file. Nothing is imported unless the whole file is valid."
    )
    format = forms.ChoiceField(
        choices=[("", "Detect from the file name"), ("jsonl", "JSONL"), ("csv", "CSV")], required=False
    )

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        self.study = study
        self.fields["model"].queryset = study.models.filter(backend=LanguageModel.Backend.IMPORTED)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("kind") == self.KIND_RESPONSES and not data.get("model"):
            self.add_error("model", "Choose the imported model these responses belong to.")
        return data
