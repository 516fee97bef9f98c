"""Model switches without a flag day (issue 9, item 6): the switch record, each person's progress,
and the two audit actions that record a switch starting and completing."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("faceid", "0007_hnsw_indexes_sface_intel_fusion"),
        ("tenants", "0004_policy_floors_and_score_hiding"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ModelSwitch",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("old_model_name", models.CharField(max_length=48)),
                ("old_model_version", models.CharField(blank=True, max_length=64)),
                ("old_threshold_unmasked", models.FloatField()),
                ("old_threshold_masked", models.FloatField()),
                ("new_model_name", models.CharField(max_length=48)),
                ("new_model_version", models.CharField(max_length=64)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("running", "Running: new templates are being computed"),
                            ("completed", "Completed: every person re-embedded or listed for re-enrollment"),
                        ],
                        default="running",
                        max_length=16,
                    ),
                ),
                ("job_id", models.CharField(blank=True, max_length=32)),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("completed_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["-started_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="ModelSwitchPerson",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("pending", "Waiting for the new model's templates"),
                            ("reembedded", "New templates computed from kept enrollment photos"),
                            ("needs_enrollment", "Must be enrolled again (no usable kept photo)"),
                        ],
                        default="pending",
                        max_length=24,
                    ),
                ),
                ("reason", models.CharField(blank=True, max_length=200)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["switch_id", "person_id"],
            },
        ),
        migrations.RemoveConstraint(
            model_name="verificationattempt",
            name="faceid_attempt_event_action",
        ),
        migrations.AlterField(
            model_name="verificationattempt",
            name="action",
            field=models.CharField(
                blank=True,
                choices=[
                    ("enroll", "Enrollment"),
                    ("enroll_override", "Enrollment: face-match override by an admin"),
                    ("template_delete", "Templates deleted"),
                    ("person_erase", "Person erased"),
                    ("external_id_change", "External id changed"),
                    ("person_deactivate", "Person deactivated"),
                    ("person_activate", "Person activated"),
                    ("policy_change", "Policy changed"),
                    ("api_key_create", "API key created"),
                    ("api_key_revoke", "API key revoked"),
                    ("login", "Login"),
                    ("login_failed", "Failed login"),
                    ("csv_export", "Audit log exported as CSV"),
                    ("model_switch_start", "Model switch started"),
                    ("model_switch_complete", "Model switch completed"),
                ],
                default="",
                max_length=32,
            ),
        ),
        migrations.AddConstraint(
            model_name="verificationattempt",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("mode", "event"),
                        (
                            "action__in",
                            [
                                "enroll",
                                "enroll_override",
                                "template_delete",
                                "person_erase",
                                "external_id_change",
                                "person_deactivate",
                                "person_activate",
                                "policy_change",
                                "api_key_create",
                                "api_key_revoke",
                                "login",
                                "login_failed",
                                "csv_export",
                                "model_switch_start",
                                "model_switch_complete",
                            ],
                        ),
                    ),
                    models.Q(models.Q(("mode", "event"), _negated=True), ("action", ""), ("details", "")),
                    _connector="OR",
                ),
                name="faceid_attempt_event_action",
            ),
        ),
        migrations.AddField(
            model_name="modelswitch",
            name="organization",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="model_switches",
                to="tenants.organization",
            ),
        ),
        migrations.AddField(
            model_name="modelswitchperson",
            name="person",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="faceid.person"
            ),
        ),
        migrations.AddField(
            model_name="modelswitchperson",
            name="switch",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="persons", to="faceid.modelswitch"
            ),
        ),
        migrations.AddConstraint(
            model_name="modelswitch",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["running", "completed"])),
                name="faceid_switch_status_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="modelswitch",
            constraint=models.CheckConstraint(
                condition=models.Q(("old_model_name", models.F("new_model_name")), _negated=True),
                name="faceid_switch_changes_model",
            ),
        ),
        migrations.AddConstraint(
            model_name="modelswitch",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "running")),
                fields=("organization",),
                name="faceid_switch_one_running_per_org",
            ),
        ),
        migrations.AddConstraint(
            model_name="modelswitchperson",
            constraint=models.UniqueConstraint(
                fields=("switch", "person"), name="faceid_switch_person_unique"
            ),
        ),
        migrations.AddConstraint(
            model_name="modelswitchperson",
            constraint=models.CheckConstraint(
                condition=models.Q(("state__in", ["pending", "reembedded", "needs_enrollment"])),
                name="faceid_switch_person_state_valid",
            ),
        ),
    ]
