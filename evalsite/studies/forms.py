"""Admin forms: decoding-parameter validation, frozen prompts, and the study upload form."""

from django import forms
from django.core.exceptions import ValidationError

from .lifecycle import prompts_editable
from .models import LanguageModel, Prompt, Study


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
        return data


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
