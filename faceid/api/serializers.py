"""Request validation and the documented shapes of the answers (drf-spectacular reads these)."""

from __future__ import annotations

from rest_framework import serializers

from faceid.models import FaceTemplate


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
