"""Partial HNSW index for the mask-tuned intel_0095 (issue 11), fine-tuned by the training toolkit."""

from django.db import migrations

# Frozen copy of the registry's name and dimension at the time of writing (see 0002).
NAME, DIM = "intel_0095_mask_lfw", 256


class Migration(migrations.Migration):
    dependencies = [("faceid", "0008_model_switch")]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX faceid_tpl_hnsw_{NAME} ON faceid_facetemplate "
            f"USING hnsw ((embedding::vector({DIM})) vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
            f"WHERE model_name = '{NAME}'",
            f"DROP INDEX IF EXISTS faceid_tpl_hnsw_{NAME}",
        )
    ]
