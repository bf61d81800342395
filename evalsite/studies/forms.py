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
        fields = (
            "study",
            "alias",
            "role",
            "backend",
            "model_path",
            "temperature",
            "top_p",
            "max_tokens",
            "seed",
            "stop",
            "system_prompt",
            "samples_per_prompt",
            "engine_options",
        )

    def clean_temperature(self) -> float:
        value = self.cleaned_data["temperature"]
        if value is not None and value < 0:
            raise ValidationError("Temperature must be 0 or more (0 means greedy decoding).")
        return value

    def clean_top_p(self) -> float:
        value = self.cleaned_data["top_p"]
        if value is not None and not 0 < value <= 1:
            raise ValidationError("top_p must be greater than 0 and at most 1 (1 disables nucleus sampling).")
        return value

    def clean_max_tokens(self) -> int:
        value = self.cleaned_data["max_tokens"]
        if value is not None and value <= 0:
            raise ValidationError("max_tokens must be a positive number of tokens.")
        return value

    def clean_stop(self) -> list[str]:
        value = self.cleaned_data.get("stop")
        if value in (None, ""):
            return []
        if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
            example = '["\\nUser:"]'
            raise ValidationError(f"Stop sequences must be a JSON list of non-empty strings, e.g. {example}.")
        return value

    def clean_engine_options(self) -> dict:
        value = self.cleaned_data.get("engine_options")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise ValidationError('Engine options must be a JSON object, e.g. {"dtype": "bfloat16"}.')
        return value

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
