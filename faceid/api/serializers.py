"""Request validation and the documented shapes of the answers (drf-spectacular reads these)."""

from __future__ import annotations

from rest_framework import serializers

from faceid.models import FaceTemplate, Person, VerificationAttempt
from faceid.verification import MAX_IMAGES, MAX_TOP_K


class ErrorSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="Machine-readable reason code, e.g. `no_face`, `missing_scope`.")
    detail = serializers.CharField(help_text="Human-readable explanation.")
    attempt_id = serializers.IntegerField(required=False, help_text="Audit row written for this refusal.")
    retry_after = serializers.IntegerField(required=False, help_text="Seconds to wait (429, 423).")
    errors = serializers.DictField(required=False, help_text="Field errors (reason `invalid`).")


# --- persons --------------------------------------------------------------------------------------


class PersonSerializer(serializers.ModelSerializer):
    templates = serializers.SerializerMethodField(help_text="Number of stored face templates (all variants).")

    class Meta:
        model = Person
        fields = ["id", "external_id", "display_name", "active", "created_at", "updated_at", "templates"]
        read_only_fields = fields

    def get_templates(self, person: Person) -> int:
        annotated = getattr(person, "template_count", None)
        return annotated if annotated is not None else person.templates.count()


class PersonCreateSerializer(serializers.Serializer):
    external_id = serializers.CharField(
        max_length=128, help_text="Your identifier (employee number); unique."
    )
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class PersonUpdateSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=128, required=False)
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False, help_text="false deactivates (templates kept).")


class TemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = FaceTemplate
        fields = [
            "id",
            "variant",
            "model_name",
            "model_version",
            "quality",
            "mask_probability",
            "source_sha256",
            "created_at",
        ]
        read_only_fields = fields


# --- images ---------------------------------------------------------------------------------------

_IMAGE_HELP = (
    "An image file (JPEG, PNG, WebP, ...). Repeat the field for several photos/frames "
    f"(at most {MAX_IMAGES})."
)


class ImagesMultipartSerializer(serializers.Serializer):
    image = serializers.ListField(child=serializers.FileField(), help_text=_IMAGE_HELP)


class ImagesJSONSerializer(serializers.Serializer):
    image = serializers.CharField(
        required=False, help_text="One base64 image (a data: URL prefix is accepted)."
    )
    images = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Several base64 images."
    )


class VerifyMultipartSerializer(ImagesMultipartSerializer):
    person = serializers.CharField(help_text="The claimed person: external id, or id.")


class VerifyJSONSerializer(ImagesJSONSerializer):
    person = serializers.CharField(help_text="The claimed person: external id, or id.")


class IdentifyMultipartSerializer(ImagesMultipartSerializer):
    top_k = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TOP_K, default=5)


class IdentifyJSONSerializer(ImagesJSONSerializer):
    top_k = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TOP_K, default=5)


class TopKSerializer(serializers.Serializer):
    top_k = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TOP_K, default=5)


# --- answers --------------------------------------------------------------------------------------


class ModelInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class QualitySerializer(serializers.Serializer):
    score = serializers.FloatField()
    face_px = serializers.FloatField()
    sharpness = serializers.FloatField()
    yaw = serializers.FloatField()
    pitch = serializers.FloatField()
    roll = serializers.FloatField()
    eyes_visible = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())


class StoredTemplateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    variant = serializers.CharField()
    quality = serializers.FloatField(allow_null=True)
    model_name = serializers.CharField()
    model_version = serializers.CharField()


class PhotoResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    filename = serializers.CharField()
    sha256 = serializers.CharField()
    stored = serializers.BooleanField()
    reason = serializers.CharField(
        allow_null=True,
        help_text="Why the photo was refused: no_face, several_faces, "
        "face_too_small, too_blurred, pose_too_far, eyes_not_visible, masked.",
    )
    detail = serializers.CharField()
    face_found = serializers.BooleanField()
    masked = serializers.BooleanField(allow_null=True)
    mask_probability = serializers.FloatField(allow_null=True)
    quality = QualitySerializer(allow_null=True)
    templates = StoredTemplateSerializer(many=True)


class PersonRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()


class EnrollResponseSerializer(serializers.Serializer):
    person = PersonRefSerializer()
    stored = serializers.IntegerField(help_text="Photos stored (201 when at least one, else 422).")
    photos = PhotoResultSerializer(many=True)
    latency_ms = serializers.FloatField()
    model = ModelInfoSerializer()
    reason = serializers.CharField(required=False)
    detail = serializers.CharField(required=False)


class FrameSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    face_found = serializers.BooleanField()
    refusal = serializers.CharField(allow_null=True)
    detail = serializers.CharField()
    masked = serializers.BooleanField(allow_null=True)
    mask_probability = serializers.FloatField(allow_null=True)
    quality = serializers.FloatField(allow_null=True)


class VerifyResponseSerializer(serializers.Serializer):
    match = serializers.BooleanField()
    similarity = serializers.FloatField(
        help_text="Cosine similarity of the best template of the probe's variant."
    )
    threshold = serializers.FloatField(
        help_text="The policy's masked or unmasked threshold, by the probe's mask."
    )
    masked = serializers.BooleanField()
    mask_probability = serializers.FloatField(allow_null=True)
    attempt_id = serializers.IntegerField()
    latency_ms = serializers.FloatField()
    pipeline_ms = serializers.FloatField(help_text="Of latency_ms, the time spent in the pipeline stages.")
    decision = serializers.ChoiceField(choices=["accept", "reject"])
    person = PersonRefSerializer()
    frame = serializers.IntegerField(help_text="Which frame decided (several frames: the most similar one).")
    frames = FrameSerializer(many=True)
    quality = serializers.FloatField(allow_null=True)
    model = ModelInfoSerializer()
    locked_out = serializers.BooleanField(required=False, help_text="This failure locked the person out.")


class IdentifyMatchSerializer(serializers.Serializer):
    person = serializers.IntegerField()
    external_id = serializers.CharField()
    display_name = serializers.CharField()
    similarity = serializers.FloatField()


class IdentifyResponseSerializer(serializers.Serializer):
    matches = IdentifyMatchSerializer(
        many=True, help_text="Candidates at or above the threshold, best first; empty for an unknown face."
    )
    threshold = serializers.FloatField()
    masked = serializers.BooleanField()
    mask_probability = serializers.FloatField(allow_null=True)
    attempt_id = serializers.IntegerField()
    latency_ms = serializers.FloatField()
    pipeline_ms = serializers.FloatField(help_text="Of latency_ms, the time spent in the pipeline stages.")
    decision = serializers.ChoiceField(choices=["accept", "no_match"])
    frames = FrameSerializer(many=True)
    model = ModelInfoSerializer()


class JobAcceptedSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    url = serializers.URLField(help_text="Poll this URL (GET) for the result.")


class JobSerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=["enroll", "verify", "identify"])
    status = serializers.ChoiceField(choices=["pending", "running", "done", "failed"])
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    http_status = serializers.IntegerField(
        allow_null=True, help_text="Status the synchronous call would have had."
    )
    result = serializers.JSONField(
        allow_null=True, help_text="Body the synchronous call would have answered."
    )


# --- audit ----------------------------------------------------------------------------------------


class AttemptSerializer(serializers.ModelSerializer):
    api_key = serializers.SerializerMethodField()
    user = serializers.SerializerMethodField()
    matched_external_id = serializers.SerializerMethodField()

    class Meta:
        model = VerificationAttempt
        fields = [
            "id",
            "created_at",
            "mode",
            "decision",
            "reason",
            "claimed_person",
            "claimed_external_id",
            "matched_person",
            "matched_external_id",
            "similarity",
            "threshold",
            "masked",
            "mask_probability",
            "model_name",
            "model_version",
            "latency_ms",
            "client_ip",
            "api_key",
            "user",
            "seq",
            "row_hash",
        ]
        read_only_fields = fields

    def get_api_key(self, attempt) -> str | None:
        return attempt.api_key.prefix if attempt.api_key_id else None

    def get_user(self, attempt) -> str | None:
        return attempt.user.get_username() if attempt.user_id else None

    def get_matched_external_id(self, attempt) -> str | None:
        return attempt.matched_person.external_id if attempt.matched_person_id else None


def paginated(serializer_class: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The documented shape of a page: count, next, previous, results."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )


PersonPageSerializer = paginated(PersonSerializer, "PersonPage")
AttemptPageSerializer = paginated(AttemptSerializer, "AttemptPage")
