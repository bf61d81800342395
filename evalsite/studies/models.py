"""The study and what it is made of: models, prompts, their responses, and the pairs raters see."""

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Greatest, Least

from .api_keys import check_api_base, check_api_key_env
from .model_paths import check_model_path


# Plain functions rather than MinValueValidator: DRF turns those into its own generic message.
def validate_temperature(value: float) -> None:
    if value < 0:
        raise ValidationError("Temperature must be 0 or more (0 means greedy decoding).")


def validate_max_tokens(value: int) -> None:
    if value <= 0:
        raise ValidationError("max_tokens must be a positive number of tokens.")


def validate_top_p(value: float) -> None:
    if not 0 < value <= 1:
        raise ValidationError("top_p must be greater than 0 and at most 1 (1 disables nucleus sampling).")


def validate_stop_sequences(value) -> None:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise ValidationError('Stop sequences must be a JSON list of non-empty strings, e.g. ["\\nUser:"].')


def validate_engine_options(value) -> None:
    if not isinstance(value, dict):
        raise ValidationError('Engine options must be a JSON object, e.g. {"dtype": "bfloat16"}.')
    if "api_key_env" in value and (problem := check_api_key_env(value["api_key_env"])):
        raise ValidationError(problem)
    if "api_base" in value and (problem := check_api_base(value["api_base"])):
        raise ValidationError(problem)


# --- one study per row: the cross-study rules every model's clean() applies ------------------------
# A row never refers to a row of another study, and never moves to another study once created:
# a researcher's comparison could otherwise show another researcher's prompt and answers to
# raters, or a response turn up in someone else's live study. The actions run full_clean() (the
# admin forms and the API go through them); the engine and the importers build rows within one
# study by construction.


def related_or_none(obj: models.Model, name: str):
    """``obj.<name>``, or None when unset or missing (field validation reports that on its own)."""
    if getattr(obj, f"{name}_id") is None:
        return None
    try:
        return getattr(obj, name)
    except ObjectDoesNotExist:
        return None


def stored_value(obj: models.Model, path: str):
    """``path`` (an ORM path such as ``prompt__study_id``) as the database holds it for ``obj``; None if new."""
    if obj.pk is None or obj._state.adding:
        return None
    return type(obj)._default_manager.filter(pk=obj.pk).values_list(path, flat=True).first()


def refuse_move(obj: models.Model, errors: dict, field: str, study_id, path: str, what: str) -> None:
    """Add an error on ``field`` when ``obj`` (stored) belonged to another study than ``study_id``."""
    before = stored_value(obj, path)
    if before is not None and study_id is not None and before != study_id:
        errors[field] = f"{what} cannot move to another study once created; add a new one there instead."


def other_study(field: str) -> str:
    return f"This {field} belongs to another study: every row a study refers to must be its own."


def default_rating_form() -> dict:
    """Which questions the rater page asks. Style and substance are separate on purpose."""
    return {
        "strength": True,  # 5-point strength of preference
        "style_aspects": ["fluent", "confident"],  # per response: fluent & well organized; sounds confident
        "correctness": True,  # per response: correct / contains an error / can't tell
        "error_spans": True,  # highlight text and mark it as an error
        "rationale": True,  # optional free text
    }


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        GENERATING = "generating", "Generating"
        READY = "ready", "Ready"
        LIVE = "live", "Live"
        CLOSED = "closed", "Closed"

    class Pairing(models.TextChoices):
        VS_TEACHER = "teacher", "Each model against the teacher"
        ALL_PAIRS = "all", "All pairs of models"

    class TieRule(models.TextChoices):
        EXCLUDE = "exclude", "Leave ties and both-bad verdicts out"
        MARK = "mark", "Keep them, marked as ties (chosen/rejected in storage order)"

    class Allocation(models.TextChoices):
        UNIFORM = "uniform", "Uniform: the least-rated comparison first"
        ADAPTIVE = "adaptive", "Adaptive: models whose interval is widest get more ratings"

    slug = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200, help_text="Internal: for researchers; raters never see it.")
    public_title = models.CharField(
        max_length=200,
        default="Compare two answers",
        help_text="What raters see as the study's name. Keep the hypothesis out of it.",
    )
    description = models.TextField(blank=True, help_text="For researchers; raters never see it.")
    instructions = models.TextField(blank=True, help_text="Markdown shown to raters before the first task.")
    consent_text = models.TextField(
        blank=True, help_text="Markdown consent statement; raters must accept it before rating."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_studies"
    )
    shared_with = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="shared_studies")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT, db_index=True)
    pairing = models.CharField(max_length=10, choices=Pairing.choices, default=Pairing.VS_TEACHER)
    redundancy = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(50)], help_text="Ratings per comparison (k)."
    )
    tasks_per_rater = models.PositiveIntegerField(default=20, validators=[MinValueValidator(1)])
    expert_redundancy = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Expert ratings per comparison in the expert pool; separate from the crowd's k.",
    )
    expert_share = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of comparisons experts rate (prompts without a reference answer first).",
    )
    lease_seconds = models.PositiveIntegerField(default=900, validators=[MinValueValidator(30)])
    attention_check_rate = models.FloatField(
        default=0.1, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of tasks that are attention checks.",
    )
    min_seconds_per_task = models.FloatField(default=5.0, validators=[MinValueValidator(0.0)])
    max_attention_failures = models.PositiveSmallIntegerField(
        default=1, help_text="A rater who fails more attention checks than this is blocked."
    )
    allocation = models.CharField(
        max_length=10,
        choices=Allocation.choices,
        default=Allocation.UNIFORM,
        help_text="How the lease engine spreads ratings over models (evalsite/rating/assignment.py). "
        "Adaptive draws the model of each task with a known probability, recorded on the task.",
    )
    target_halfwidth = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.001), MaxValueValidator(0.5)],
        help_text="Target 95% half-width of each model's P(rated ≥ teacher), e.g. 0.05. Adaptive "
        "allocation stops favouring a model once it is there; the stopping rule reads it.",
    )
    stop_when_precise = models.BooleanField(
        default=False,
        help_text="Close the study by itself once every model is at the target half-width or answered "
        "(its anytime-valid confidence sequence excludes parity).",
    )
    tie_rule = models.CharField(
        max_length=16,
        choices=TieRule.choices,
        default=TieRule.EXCLUDE,
        help_text="How preference-pair exports (DPO/TRL, reward models) treat ties and both-bad verdicts; "
        "an export's ties= parameter overrides it.",
    )
    stopped_reason = models.TextField(
        blank=True, editable=False, help_text="Why the study closed itself; empty if a researcher closed it."
    )
    completion_code = models.CharField(max_length=64, blank=True)
    completion_url = models.URLField(blank=True, help_text="Optional redirect after the last task.")
    rating_form = models.JSONField(default=default_rating_form)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        """The researcher's study page (the admin's "View on site" goes there)."""
        from django.urls import reverse

        return reverse("studies:home", kwargs={"slug": self.slug})

    @property
    def failed_quality_code(self) -> str:
        """The completion code a rater who failed quality control gets (Prolific: "failed QC")."""
        return f"{self.completion_code}-QC"[:64]

    def clean(self) -> None:
        # Unknown keys (a typo such as "correctnes") would silently drop a question.
        from .rating_form import rating_form_problems

        if problems := rating_form_problems(self.rating_form):
            raise ValidationError({"rating_form": problems})


class RealModelManager(models.Manager):
    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().exclude(role__in=["attention", "judge"])


class LanguageModel(models.Model):
    class Role(models.TextChoices):
        TEACHER = "teacher", "Teacher"
        IMITATION = "imitation", "Imitation"
        BASE = "base", "Base"
        OTHER = "other", "Other"
        # Owns the deliberately wrong answers of attention checks; never paired, generated or ranked.
        ATTENTION = "attention", "Attention check (hidden)"
        # An LLM judge: compares pairs (evalsite.generation.judge), is not itself compared or generated.
        JUDGE = "judge", "LLM judge"

    class Backend(models.TextChoices):
        VLLM = "vllm", "vLLM (GPU or CPU)"
        HF = "hf", "transformers"
        OPENAI = "openai", "OpenAI-compatible endpoint"
        IMPORTED = "imported", "Imported file"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="models")
    alias = models.SlugField(max_length=64, help_text="Researcher-facing name; raters never see it.")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.OTHER)
    backend = models.CharField(max_length=10, choices=Backend.choices, default=Backend.HF)
    model_path = models.CharField(
        max_length=500, blank=True, help_text="Local path, hub-style name, or endpoint model name."
    )
    # Decoding parameters are validated here once, for the admin form and the API alike.
    temperature = models.FloatField(default=0.7, validators=[validate_temperature])
    top_p = models.FloatField(default=1.0, validators=[validate_top_p])
    max_tokens = models.PositiveIntegerField(default=512, validators=[validate_max_tokens])
    seed = models.BigIntegerField(default=0)
    stop = models.JSONField(default=list, blank=True, validators=[validate_stop_sequences])
    system_prompt = models.TextField(blank=True)
    samples_per_prompt = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    # Engine settings: dtype, tensor_parallel_size, gpu_memory_utilization, max_model_len,
    # api_base, api_key_env, concurrency, batch_size ...
    engine_options = models.JSONField(default=dict, blank=True, validators=[validate_engine_options])
    fingerprint = models.CharField(max_length=64, blank=True, help_text="Hash of what produced the answers.")
    created_at = models.DateTimeField(auto_now_add=True)

    # What a researcher sets, in the admin form and through the API alike.
    CONFIG_FIELDS = (
        "study", "alias", "role", "backend", "model_path", "temperature", "top_p", "max_tokens", "seed",
        "stop", "system_prompt", "samples_per_prompt", "engine_options",
    )

    objects = models.Manager()
    real = RealModelManager()  # the models a study compares (attention-check owner and judges excluded)

    class Meta:
        ordering = ["study", "role", "alias"]
        constraints = [
            models.UniqueConstraint(fields=["study", "alias"], name="model_alias_unique_in_study"),
            models.CheckConstraint(condition=Q(temperature__gte=0), name="model_temperature_nonneg"),
            models.CheckConstraint(condition=Q(top_p__gt=0) & Q(top_p__lte=1), name="model_top_p_range"),
            models.CheckConstraint(condition=Q(max_tokens__gt=0), name="model_max_tokens_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.alias} ({self.role})"

    def clean(self) -> None:
        super().clean()
        errors: dict = {}
        refuse_move(self, errors, "study", self.study_id, "study_id", "A model")
        if problem := check_model_path(self.backend, self.model_path):
            errors["model_path"] = problem
        if errors:
            raise ValidationError(errors)

    def decoding_params(self) -> dict:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": list(self.stop or []),
            "system_prompt": self.system_prompt,
        }


class Prompt(models.Model):
    """What the compared answers reply to: ``text`` is the last user turn.

    A single-turn prompt is just ``text``. A conversation adds the turns before it, in one of two
    ways (see :mod:`.conversations`): ``history``, fixed earlier turns written in the file
    (``[{"role": "system" | "user" | "assistant", "content": ...}]``, e.g. a ShareGPT dialogue), or
    ``parent``, the previous turn of the same conversation, whose answer each model gives itself
    (MT-bench: the second turn is answered conditioned on the model's own first answer). ``turn``
    counts the user turns up to and including this one (1 for a single-turn prompt).
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="prompts")
    source_id = models.CharField(max_length=200, help_text="The id in the imported file.")
    text = models.TextField(help_text="The (last) user turn the compared answers reply to.")
    # Database defaults too: bulk SQL loaders (COPY, the benchmarks) need not know these columns.
    history = models.JSONField(
        default=list, db_default=[], blank=True, help_text="Fixed earlier turns: [{role, content}], before the text."
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="next_turns",
        help_text="The previous turn, answered by each model itself (MT-bench's second turn).",
    )
    turn = models.PositiveSmallIntegerField(default=1, db_default=1, help_text="1 for a single-turn prompt.")
    category = models.CharField(max_length=64, blank=True, db_index=True)
    reference_answers = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["study", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "source_id"], name="prompt_source_unique_in_study")]

    def __str__(self) -> str:
        return f"{self.source_id}: {self.text[:60]}"

    def clean(self) -> None:
        super().clean()
        errors: dict = {}
        refuse_move(self, errors, "study", self.study_id, "study_id", "A prompt")
        parent = related_or_none(self, "parent")
        if parent is not None and self.study_id is not None and parent.study_id != self.study_id:
            errors["parent"] = other_study("previous turn")
        elif parent is not None and self.history:
            errors["history"] = "A prompt with a previous turn takes its history from it; leave history empty."
        if errors:
            raise ValidationError(errors)


class Response(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="responses")
    sample_index = models.PositiveSmallIntegerField(default=0)
    text = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    # What produced it: backend, backend version, model path, fingerprint, decoding params, seed.
    generation_params = models.JSONField(default=dict, blank=True)
    backend = models.CharField(max_length=10, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt", "model", "sample_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "model", "sample_index"], name="response_unique_prompt_model_sample"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model.alias} on {self.prompt.source_id} #{self.sample_index}"

    def clean(self) -> None:
        """A response's model and prompt are of one study, and it stays in that study."""
        super().clean()
        errors: dict = {}
        prompt, model = related_or_none(self, "prompt"), related_or_none(self, "model")
        if prompt is not None and model is not None and model.study_id != prompt.study_id:
            errors["model"] = (
                f"Model {model.alias!r} belongs to another study than the prompt: "
                "a response's model and prompt must be of the same study."
            )
        if prompt is not None:
            refuse_move(self, errors, "prompt", prompt.study_id, "prompt__study_id", "A response")
        if errors:
            raise ValidationError(errors)


class GenerationJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="generation_jobs")
    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="generation_jobs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    tokens_per_second = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.model.alias}: {self.done}/{self.total} ({self.status})"

    def clean(self) -> None:
        super().clean()
        model = related_or_none(self, "model")
        if model is not None and self.study_id is not None and model.study_id != self.study_id:
            raise ValidationError({"model": other_study("model")})

    @property
    def percent(self) -> float:
        return 100.0 * (self.done + self.failed) / self.total if self.total else 0.0


class Comparison(models.Model):
    """Two responses to one prompt. A/B here is storage order; the page randomizes sides."""

    class Expected(models.TextChoices):
        NONE = "", "No known answer"
        A = "A", "A is right"
        B = "B", "B is right"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    response_a = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    response_b = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    is_attention_check = models.BooleanField(default=False, db_index=True)
    expected_winner = models.CharField(max_length=1, choices=Expected.choices, blank=True, default="")
    # Denormalised counters kept by the lease engine in the same transaction as the rows
    # they count, so picking the least-rated comparison is an index scan, not a join.
    n_live = models.PositiveIntegerField(default=0)
    n_submitted = models.PositiveIntegerField(default=0)
    # Experts have their own slots (study.expert_redundancy) on the comparisons in their pool.
    # db_default too: bulk loaders that write SQL directly (benchmarks/export.py) need not know them.
    expert_pool = models.BooleanField(default=False, db_default=False)
    n_expert_live = models.PositiveIntegerField(default=0, db_default=0)
    n_expert_submitted = models.PositiveIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "id"]
        constraints = [
            # One comparison per unordered pair: (a, b) and (b, a) are the same comparison.
            models.UniqueConstraint(Least("response_a", "response_b"), Greatest("response_a", "response_b"),
                                    name="comparison_unique_pair"),
            models.CheckConstraint(condition=~Q(response_a=F("response_b")), name="comparison_distinct_responses"),
            models.CheckConstraint(
                condition=Q(is_attention_check=False, expected_winner="")
                | Q(is_attention_check=True, expected_winner__in=["A", "B"]),
                name="comparison_attention_check_has_answer",
            ),
        ]
        indexes = [models.Index(fields=["study", "is_attention_check", "n_submitted"], name="comparison_pool_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.prompt.source_id}"

    def clean(self) -> None:
        """The prompt and both responses are the study's own, and both responses answer the prompt."""
        super().clean()
        errors: dict = {}
        prompt = related_or_none(self, "prompt")
        if prompt is not None and self.study_id is not None and prompt.study_id != self.study_id:
            errors["prompt"] = other_study("prompt")
        for name in ("response_a", "response_b"):
            response = related_or_none(self, name)
            if response is None:
                continue
            if self.study_id is not None and response.model.study_id != self.study_id:
                errors[name] = other_study("response")
            elif prompt is not None and response.prompt_id != prompt.pk:
                errors[name] = "This response answers another prompt: both responses must answer the comparison's."
        refuse_move(self, errors, "study", self.study_id, "study_id", "A comparison")
        if errors:
            raise ValidationError(errors)
