"""Partial HNSW indexes for the embedders added with the recognition work (issue 9): SFace,
Intel's face-reidentification-retail-0095, and their score fusion (one concatenated vector)."""

from django.db import migrations

# Frozen copy of the registry's names and dimensions at the time of writing (see 0002).
MODELS = (
    ("sface", 128),
    ("intel_0095", 256),
    ("fusion_sface_intel", 384),
)


def _index_sql(name: str, dim: int) -> tuple[str, str]:
    forward = (
        f"CREATE INDEX faceid_tpl_hnsw_{name} ON faceid_facetemplate "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
        f"WHERE model_name = '{name}'"
    )
    return forward, f"DROP INDEX IF EXISTS faceid_tpl_hnsw_{name}"


class Migration(migrations.Migration):
    dependencies = [("faceid", "0006_audit_app_role")]

    operations = [migrations.RunSQL(*_index_sql(name, dim)) for name, dim in MODELS]
