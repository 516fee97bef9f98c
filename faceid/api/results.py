"""Output serializers of the flows' typed results (faceid.flows.results): they render the answer
of a synchronous call and the ``result`` of a polled asynchronous job alike."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


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
        help_text="Cosine similarity of the best template of the probe's variant."
    )
    decision = serializers.ChoiceField(choices=["accept", "reject"])
    person = PersonRefSerializer()
    frame = serializers.IntegerField(help_text="Which frame decided (several frames: the most similar one).")
    quality = serializers.FloatField(allow_null=True)
    locked_out = serializers.BooleanField(required=False, help_text="This failure locked the person out.")


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


class JobSerializer(serializers.Serializer):
    """A job record of faceid.jobs: its result rendered by the serializer of its flow."""

    class Meta:
        ref_name = "Job"

    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=sorted(RESULT_SERIALIZERS))
    status = serializers.ChoiceField(choices=["pending", "running", "done", "failed"])
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    http_status = serializers.IntegerField(
        allow_null=True, help_text="Status the synchronous call would have had."
    )
    result = serializers.SerializerMethodField(help_text="Body the synchronous call would have answered.")

    def get_result(self, record: dict[str, Any]) -> dict[str, Any] | None:
        if record.get("outcome") is not None:
            return RESULT_SERIALIZERS[record["kind"]](record["outcome"]).data
        return record.get("refusal")
