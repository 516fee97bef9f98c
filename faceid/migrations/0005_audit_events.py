"""Audit events in the chain: mode "event" with an action and canonical-JSON details; hash_version
(existing rows keep 1, SHA-256; new rows are written with 2, HMAC-SHA256; see faceid.audit).

Adding columns with a default is not an UPDATE: the append-only trigger does not fire."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("faceid", "0004_lockout_ledger"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="verificationattempt",
            name="faceid_attempt_mode_valid",
        ),
        migrations.RemoveConstraint(
            model_name="verificationattempt",
            name="faceid_attempt_decision_valid",
        ),
        migrations.AddField(
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
                ],
                default="",
                max_length=32,
            ),
        ),
        migrations.AddField(
            model_name="verificationattempt",
            name="details",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="verificationattempt",
            name="hash_version",
            field=models.PositiveSmallIntegerField(default=1, editable=False),
        ),
        migrations.AlterField(
            model_name="lockoutentry",
            name="mode",
            field=models.CharField(
                choices=[
                    ("verify", "Verify (1:1)"),
                    ("identify", "Identify (1:N)"),
                    ("event", "Event (security-relevant action)"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="verificationattempt",
            name="mode",
            field=models.CharField(
                choices=[
                    ("verify", "Verify (1:1)"),
                    ("identify", "Identify (1:N)"),
                    ("event", "Event (security-relevant action)"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="verificationattempt",
            constraint=models.CheckConstraint(
                condition=models.Q(("mode__in", ["verify", "identify", "event"])),
                name="faceid_attempt_mode_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="verificationattempt",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "decision__in",
                        [
                            "accept",
                            "reject",
                            "no_match",
                            "no_face",
                            "bad_image",
                            "low_quality",
                            "no_templates",
                            "unknown_person",
                            "inactive_person",
                            "locked_out",
                            "rate_limited",
                            "timeout",
                            "error",
                        ],
                    ),
                    models.Q(("decision", ""), ("mode", "event")),
                    _connector="OR",
                ),
                name="faceid_attempt_decision_valid",
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
                            ],
                        ),
                    ),
                    models.Q(models.Q(("mode", "event"), _negated=True), ("action", ""), ("details", "")),
                    _connector="OR",
                ),
                name="faceid_attempt_event_action",
            ),
        ),
    ]
