"""The lockout ledger (faceid.lockout): reservations and settled comparisons per person or caller.

The composite foreign key pins an entry's person to its organization, like migration 0002 does for
templates and audit rows."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("faceid", "0003_audit_log_append_only"),
        ("tenants", "0003_policy_model_from_registry"),
    ]

    operations = [
        migrations.CreateModel(
            name="LockoutEntry",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "subject",
                    models.CharField(
                        choices=[
                            ("person", "A claimed person (verify)"),
                            ("caller", "An API key or console user (identify)"),
                        ],
                        max_length=8,
                    ),
                ),
                ("caller_key", models.CharField(max_length=64)),
                (
                    "mode",
                    models.CharField(
                        choices=[("verify", "Verify (1:1)"), ("identify", "Identify (1:N)")], max_length=16
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("pending", "Reserved: the call is in the pipeline"),
                            ("failed", "Compared and did not match"),
                            ("passed", "Compared and matched (resets the count)"),
                            ("void", "Refused before any comparison"),
                        ],
                        default="pending",
                        max_length=8,
                    ),
                ),
                ("comparisons", models.PositiveSmallIntegerField()),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("expires_at", models.DateTimeField()),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tenants.organization",
                    ),
                ),
                (
                    "person",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="lockout_entries",
                        to="faceid.person",
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("subject", "person")),
                        fields=["organization", "person", "created_at"],
                        name="faceid_lock_org_person",
                    ),
                    models.Index(
                        condition=models.Q(("subject", "caller")),
                        fields=["organization", "caller_key", "created_at"],
                        name="faceid_lock_org_caller",
                    ),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("state__in", ["pending", "failed", "passed", "void"])),
                        name="faceid_lockout_state_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("subject", "person"), ("person__isnull", False)),
                            ("subject", "caller"),
                            _connector="OR",
                        ),
                        name="faceid_lockout_person_subject_has_person",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("state", "pending"), ("decided_at__isnull", False), _connector="OR"
                        ),
                        name="faceid_lockout_settled_has_time",
                    ),
                ],
            },
        ),
        migrations.RunSQL(
            "ALTER TABLE faceid_lockoutentry ADD CONSTRAINT faceid_lockout_person_same_org "
            "FOREIGN KEY (person_id, organization_id) REFERENCES faceid_person (id, organization_id)",
            "ALTER TABLE faceid_lockoutentry DROP CONSTRAINT IF EXISTS faceid_lockout_person_same_org",
        ),
    ]
