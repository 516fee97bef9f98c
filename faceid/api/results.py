"""Output serializers of the flows' typed results (faceid.flows.results): they render the answer
of a synchronous call and the ``result`` of a polled asynchronous job alike."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tenants.models import OrganizationPolicy


class _OmitNone(serializers.Serializer):
    """Leaves out the keys named in ``omit_if_none`` whose value is None (optional answer fields)."""

    omit_if_none: tuple[str, ...] = ()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        for name in self.omit_if_none:
            if data.get(name) is None:
                data.pop(name, None)
        return data


class ModelInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class PersonRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()


class QualitySerializer(serializers.Serializer):
    score = serializers.FloatField()
    face_px = serializers.FloatField()
    sharpness = serializers.FloatField()
    yaw = serializers.FloatField()
    pitch = serializers.FloatField()
    roll = serializers.FloatField()
    eyes_visible = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())


class FrameSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    face_found = serializers.BooleanField()
    refusal = serializers.CharField(allow_null=True)
    detail = serializers.CharField()
    masked = serializers.BooleanField(allow_null=True)
    mask_probability = serializers.FloatField(allow_null=True)
    quality = serializers.FloatField(allow_null=True)


class _ProbeResultSerializer(_OmitNone):
    threshold = serializers.FloatField(
        help_text="The policy's masked or unmasked threshold, by the probe's mask."
    )
    masked = serializers.BooleanField()
    mask_probability = serializers.FloatField(allow_null=True)
    attempt_id = serializers.IntegerField()
    latency_ms = serializers.FloatField()
    pipeline_ms = serializers.FloatField(help_text="Of latency_ms, the time spent in the pipeline stages.")
    frames = FrameSerializer(many=True)
    model = ModelInfoSerializer()


class VerifyResultSerializer(_ProbeResultSerializer):
    omit_if_none = ("locked_out",)

    class Meta:
        ref_name = "VerifyResponse"

    match = serializers.BooleanField()
    similarity = serializers.FloatField(
        allow_null=True,
        help_text="Cosine similarity of the best template of the probe's variant. Null on a reject "
        "unless the organization's policy reveals scores on rejects (reveal_scores_on_reject); the "
        "audit log keeps it either way.",
    )
    decision = serializers.ChoiceField(choices=["accept", "reject"])
    person = PersonRefSerializer()
    frame = serializers.IntegerField(help_text="Which frame decided (several frames: the most similar one).")
    quality = serializers.FloatField(allow_null=True)
    locked_out = serializers.BooleanField(required=False, help_text="This failure locked the person out.")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        # The score of a reject tells whoever holds the probe how close it came: a signal to climb
        # towards a match with. It is answered only where the organization chose to.
        if data.get("decision") != "accept" and not self._reveals_rejected_scores(data.get("attempt_id")):
            data["similarity"] = None
        return data

    def _reveals_rejected_scores(self, attempt_id: int | None) -> bool:
        """The policy of the organization the attempt belongs to, as it is now (a job polled after
        the option was turned off answers without the score); no such attempt: hidden."""
        if "reveal_scores_on_reject" in self.context:
            return bool(self.context["reveal_scores_on_reject"])
        if attempt_id is None:
            return False
        revealed = (
            OrganizationPolicy.objects.filter(organization__attempts__pk=attempt_id)
            .values_list("reveal_scores_on_reject", flat=True)
            .first()
        )
        return revealed is True


class IdentifyMatchSerializer(serializers.Serializer):
    class Meta:
        ref_name = "IdentifyMatch"

    person = serializers.IntegerField()
    external_id = serializers.CharField()
    display_name = serializers.CharField()
    similarity = serializers.FloatField()


class IdentifyResultSerializer(_ProbeResultSerializer):
    class Meta:
        ref_name = "IdentifyResponse"

    matches = IdentifyMatchSerializer(
        many=True, help_text="Candidates at or above the threshold, best first; empty for an unknown face."
    )
    decision = serializers.ChoiceField(choices=["accept", "no_match"])
    candidates_searched = serializers.IntegerField(
        help_text="How many enrolled persons the face was compared with (those with templates of the "
        "model). `threshold` was chosen for this gallery size: it rises as the gallery grows."
    )
    target_fpir = serializers.FloatField(
        allow_null=True,
        help_text="The policy's false-positive identification rate per search the threshold holds "
        "(never below the 1:1 threshold).",
    )


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
    face_found = serializers.BooleanField()
    masked = serializers.BooleanField(allow_null=True)
    mask_probability = serializers.FloatField(allow_null=True)
    quality = QualitySerializer(allow_null=True)
    stored = serializers.BooleanField()
    reason = serializers.CharField(
        allow_null=True,
        help_text="Why the photo was refused: no_face, several_faces, "
        "face_too_small, too_blurred, pose_too_far, eyes_not_visible, masked.",
    )
    detail = serializers.CharField()
    templates = StoredTemplateSerializer(many=True)


class EnrollResultSerializer(_OmitNone):
    omit_if_none = ("reason", "detail")

    class Meta:
        ref_name = "EnrollResponse"

    person = PersonRefSerializer()
    stored = serializers.IntegerField(help_text="Photos stored (201 when at least one, else 422).")
    photos = PhotoResultSerializer(many=True)
    latency_ms = serializers.FloatField()
    model = ModelInfoSerializer()
    reason = serializers.CharField(required=False, help_text="Set when nothing was stored (422).")
    detail = serializers.CharField(required=False)


RESULT_SERIALIZERS: dict[str, type[serializers.Serializer]] = {
    "verify": VerifyResultSerializer,
    "identify": IdentifyResultSerializer,
    "enroll": EnrollResultSerializer,
}


class JobProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class ListedPersonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    reason = serializers.CharField()


class ModelSwitchOutcomeSerializer(serializers.Serializer):
    """A model switch's job (faceid.model_switch): persons re-embedded, listed, still pending."""

    old_model = serializers.CharField()
    new_model = serializers.CharField()
    new_model_version = serializers.CharField()
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    pending = serializers.IntegerField()
    reembedded = serializers.IntegerField()
    needs_enrollment = serializers.IntegerField()
    needs_enrollment_persons = ListedPersonSerializer(many=True, help_text="Who must enroll again, and why.")


class JobSerializer(serializers.Serializer):
    """A job record of faceid.jobs: its result rendered by the serializer of its flow."""

    class Meta:
        ref_name = "Job"

    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=sorted([*RESULT_SERIALIZERS, "model_switch"]))
    progress = JobProgressSerializer(
        required=False, allow_null=True, help_text="Model switch jobs: persons done of the total."
    )
    status = serializers.ChoiceField(choices=["pending", "running", "done", "failed"])
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    http_status = serializers.IntegerField(
        allow_null=True, help_text="Status the synchronous call would have had."
    )
    result = serializers.SerializerMethodField(help_text="Body the synchronous call would have answered.")

    def get_result(self, record: dict[str, Any]) -> dict[str, Any] | None:
        if record.get("kind") == "model_switch":
            return ModelSwitchOutcomeSerializer(record["outcome"]).data
        if record.get("outcome") is not None:
            return RESULT_SERIALIZERS[record["kind"]](record["outcome"]).data
        return record.get("refusal")
