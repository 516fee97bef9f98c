"""pgvector: in-line storage of embeddings, one partial HNSW index per embedding model, and
composite foreign keys that keep the denormalised organization columns honest."""

from django.db import migrations

# Frozen copy of the embedder registry (now inference.embedders) at the time of writing: a
# migration must not change when the registry does. A model added to the registry gets its own migration creating its index
# (tests/foundation checks that every registered model has one).
MODELS = (
    ("dlib_resnet_v1", 128),
    ("iresnet18", 512),
    ("iresnet34", 512),
    ("iresnet50", 512),
    ("iresnet100", 512),
)


def _index_sql(name: str, dim: int) -> tuple[str, str]:
    # A partial expression index per model: the column has no fixed dimension (models of different
    # sizes coexist), HNSW needs one, so each index covers one model's rows cast to its dimension.
    forward = (
        f"CREATE INDEX faceid_tpl_hnsw_{name} ON faceid_facetemplate "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
        f"WHERE model_name = '{name}'"
    )
    return forward, f"DROP INDEX IF EXISTS faceid_tpl_hnsw_{name}"


_COMPOSITE_FKS = (
    # (table, constraint, local columns, referenced table, referenced columns)
    ("faceid_facetemplate", "faceid_tpl_person_same_org", "person_id, organization_id", "faceid_person"),
    ("faceid_storedimage", "faceid_image_person_same_org", "person_id, organization_id", "faceid_person"),
    (
        "faceid_verificationattempt",
        "faceid_attempt_claimed_same_org",
        "claimed_person_id, organization_id",
        "faceid_person",
    ),
    (
        "faceid_verificationattempt",
        "faceid_attempt_matched_same_org",
        "matched_person_id, organization_id",
        "faceid_person",
    ),
    (
        "faceid_verificationattempt",
        "faceid_attempt_key_same_org",
        "api_key_id, organization_id",
        "tenants_apikey",
    ),
)


def _fk_sql(table: str, name: str, columns: str, target: str) -> tuple[str, str]:
    # MATCH SIMPLE (the default): a NULL person/key skips the check, as it should.
    forward = f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({columns}) REFERENCES {target} (id, organization_id)"
    return forward, f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"


class Migration(migrations.Migration):
    dependencies = [
        ("faceid", "0001_initial"),
        ("tenants", "0001_initial"),
    ]

    operations = [
        # 512-d float4 vectors (2 kB) would otherwise be TOASTed out of line: exact scans ~5x slower.
        migrations.RunSQL(
            "ALTER TABLE faceid_facetemplate ALTER COLUMN embedding SET STORAGE PLAIN",
            "ALTER TABLE faceid_facetemplate ALTER COLUMN embedding SET STORAGE EXTENDED",
        ),
        *(migrations.RunSQL(*_index_sql(name, dim)) for name, dim in MODELS),
        *(migrations.RunSQL(*_fk_sql(*fk)) for fk in _COMPOSITE_FKS),
    ]
