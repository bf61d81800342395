"""Admin forms: decoding-parameter validation, frozen prompts, models and rating form, and the upload form.

The frozen-while-live checks are the actions' own (:mod:`.actions`), run here as well so that the
admin shows them on the form, with the researcher's input kept, before the action re-checks
under the study's row lock.
"""

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models

from .actions import check_design_editable, design_editable
from .errors import ActionError
from .lifecycle import prompts_editable
from .models import LanguageModel, Prompt, Study
from .rating_form import KNOWN_ASPECTS, MAX_ASPECTS, aspect_problem, canonical_rating_form


def _https_urls(db_field, **kwargs):
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")  # Django 6's default; silences 5.2's warning
    return db_field.formfield(**kwargs)


# The rating-form builder's fields, in the order the admin shows them.
RATING_FORM_FIELDS = (
    "form_editable",
    "form_preference",
    "form_strength",
    "form_style_aspects",
    "form_extra_aspects",
    "form_correctness",
    "form_error_spans",
    "form_rationale",
    "form_required",
)
# The questions a researcher may make required (the overall preference always is).
REQUIRABLE = {
    "correctness": "Correctness of each answer",
    "strength": "Strength of preference",
    "style": "Every style score",
    "rationale": "The reason (free text)",
}
ASKED_BY = {"correctness": "form_correctness", "strength": "form_strength", "rationale": "form_rationale"}


def builder_initial(rating_form: dict) -> dict:
    """The builder's field values for a stored rating form."""
    form = canonical_rating_form(rating_form if isinstance(rating_form, dict) else {})
    aspects = form["style_aspects"]
    return {
        "form_preference": True,
        "form_strength": form["strength"],
        "form_style_aspects": [a for a in KNOWN_ASPECTS if a in aspects],
        "form_extra_aspects": ", ".join(a for a in aspects if a not in KNOWN_ASPECTS),
        "form_correctness": form["correctness"],
        "form_error_spans": form["error_spans"],
        "form_rationale": form["rationale"],
        "form_required": [q for q in REQUIRABLE if q in form["required"]],
    }


class StudyAdminForm(forms.ModelForm):
    """The study form, with the rating form built from fields rather than typed as JSON.

    The builder composes ``rating_form`` (only known keys, by construction); a required question
    must be asked. A live or closed study's builder is disabled (its form is frozen); a page that
    was opened while the study could still change and posts a different form gets the action's
    own refusal.
    """

    form_editable = forms.CharField(widget=forms.HiddenInput, required=False)
    form_preference = forms.BooleanField(
        label="Overall preference",
        required=False,
        disabled=True,
        initial=True,
        help_text="Always asked and always required: which answer is better (or tie, or both bad).",
    )
    form_strength = forms.BooleanField(
        label="Strength of preference", required=False, help_text="How sure the rater is, from 1 to 5."
    )
    form_style_aspects = forms.MultipleChoiceField(
        label="Style aspects",
        required=False,
        choices=list(KNOWN_ASPECTS.items()),
        widget=forms.CheckboxSelectMultiple,
        help_text="Each answer is scored 1 to 5 on each aspect (style, kept apart from substance).",
    )
    form_extra_aspects = forms.CharField(
        label="More style aspects",
        required=False,
        max_length=500,
        help_text="Optional, comma-separated slugs, e.g. concise, well_sourced; raters see the name "
        "with underscores as spaces.",
    )
    form_correctness = forms.BooleanField(
        label="Correctness of each answer", required=False, help_text="Correct / contains an error / can't tell."
    )
    form_error_spans = forms.BooleanField(
        label="Error spans", required=False, help_text="Raters may mark the wrong words in an answer."
    )
    form_rationale = forms.BooleanField(
        label="Rationale", required=False, help_text="A short free-text reason for the verdict."
    )
    form_required = forms.MultipleChoiceField(
        label="Required answers",
        required=False,
        choices=list(REQUIRABLE.items()),
        widget=forms.CheckboxSelectMultiple,
        help_text="Raters cannot submit without these (the overall preference is always required). "
        "Experts always answer correctness when it is asked.",
    )

    class Meta:
        model = Study
        formfield_callback = _https_urls
        fields = (  # what a researcher sets; the admin's fieldsets show them (rating_form: the builder)
            "title", "slug", "description", "owner", "shared_with", "instructions", "consent_text",
            "completion_code", "completion_url", "pairing", "redundancy", "tasks_per_rater", "lease_seconds",
            "attention_check_rate", "min_seconds_per_task", "max_attention_failures", "allocation",
            "target_halfwidth", "stop_when_precise", "tie_rule",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Added with issue 14: a form posted without it keeps the study's allocation (uniform if new).
        # Likewise tie_rule (issue 15): a form posted without it keeps the study's rule.
        for name in ("allocation", "tie_rule"):
            if name in self.fields:  # a read-only page has no fields
                self.fields[name].required = False
        self.rating_form = None  # the composed form, once clean() found it valid
        self.rating_form_changed = False
        self.rating_form_frozen = self.instance.pk is not None and not design_editable(self.instance)
        for name, value in builder_initial(self.instance.rating_form).items():
            self.initial[name] = value
        self.initial["form_editable"] = "" if self.rating_form_frozen else "1"
        # A page rendered while the study could change posts its builder (form_editable=1): read
        # it, so that a change made meanwhile frozen is refused with the reason, not dropped.
        posted_editable = self.is_bound and self.data.get(self.add_prefix("form_editable")) == "1"
        if self.rating_form_frozen and not posted_editable:
            for name in RATING_FORM_FIELDS:
                self.fields[name].disabled = True

    def _compose(self, data: dict) -> dict | None:
        """The rating form the builder's fields describe, or None (with field errors) if they are wrong."""
        extras = [a.strip() for a in (data.get("form_extra_aspects") or "").split(",") if a.strip()]
        problems = [problem for aspect in extras if (problem := aspect_problem(aspect))]
        for problem in problems:
            self.add_error("form_extra_aspects", problem[0].upper() + problem[1:] + ".")
        aspects = list(data.get("form_style_aspects") or [])
        aspects += [a for a in dict.fromkeys(extras) if a not in aspects]
        if len(aspects) > MAX_ASPECTS:
            self.add_error("form_extra_aspects", f"At most {MAX_ASPECTS} style aspects in all.")
        required = list(data.get("form_required") or [])
        for question in required:
            asked = bool(aspects) if question == "style" else bool(data.get(ASKED_BY[question]))
            if not asked:
                how = "choose at least one style aspect" if question == "style" else "ask it above"
                self.add_error(
                    "form_required",
                    f"“{REQUIRABLE[question]}” is required but not asked: {how}, or untick it here.",
                )
        if self.has_error("form_extra_aspects") or self.has_error("form_required"):
            return None
        return {
            "strength": bool(data.get("form_strength")),
            "style_aspects": aspects,
            "correctness": bool(data.get("form_correctness")),
            "error_spans": bool(data.get("form_error_spans")),
            "rationale": bool(data.get("form_rationale")),
            "required": ["preference", *(q for q in REQUIRABLE if q in required)],
        }

    def clean(self) -> dict:
        data = super().clean()
        if all(self.fields[name].disabled for name in RATING_FORM_FIELDS):
            return data  # frozen: the stored form stays as it is
        composed = self._compose(data)
        if composed is None:
            return data
        current = self.instance.rating_form if isinstance(self.instance.rating_form, dict) else {}
        # Unchanged when it asks and requires the same; a stored key the builder cannot show (an old
        # typo) makes it a change, so that saving the builder's form removes it.
        changed = (
            self.instance.pk is None
            or canonical_rating_form(current) != composed
            or bool(current.keys() - composed.keys())
        )
        if changed and self.instance.pk is not None:
            try:
                check_design_editable(self.instance, "rating form is")
            except ActionError as exc:
                self.add_error(None, exc)
                return data
        if changed:
            self.rating_form, self.rating_form_changed = composed, True
            self.instance.rating_form = composed  # what Study.clean checks, like the action will
        return data

    def _update_errors(self, errors) -> None:
        # Study.clean names "rating_form", which this form shows as the builder's fields.
        if hasattr(errors, "error_dict") and "rating_form" in errors.error_dict:
            errors.error_dict.setdefault(NON_FIELD_ERRORS, []).extend(errors.error_dict.pop("rating_form"))
        super()._update_errors(errors)

    def clean_tie_rule(self) -> str:
        return self.cleaned_data.get("tie_rule") or self.instance.tie_rule or Study.TieRule.EXCLUDE

    def clean_allocation(self) -> str:
        return self.cleaned_data.get("allocation") or self.instance.allocation or Study.Allocation.UNIFORM

    def study_fields(self, *, changed_only: bool = False) -> dict:
        """The study's fields as the actions take them: all of them, or only the changed ones."""
        names = self.changed_data if changed_only else list(self.cleaned_data)
        fields = {
            name: self.cleaned_data[name]
            for name in names
            if name in self.cleaned_data and name not in RATING_FORM_FIELDS
        }
        if self.rating_form_changed:
            fields["rating_form"] = self.rating_form
        return fields


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
        help_text="A .jsonl, .csv or .parquet file: evalsite's own rows, MT-bench, Arena-Hard, AlpacaEval, "
        "ShareGPT or OpenAI messages (recognised from the rows). Nothing is imported unless the whole file is valid."
    )
    format = forms.ChoiceField(
        choices=[("", "Detect from the file name"), ("jsonl", "JSONL"), ("csv", "CSV"), ("parquet", "Parquet")],
        required=False,
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
