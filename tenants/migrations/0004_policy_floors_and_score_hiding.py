"""Threshold floors per model (a check constraint) and the option to reveal scores on rejects.

A policy stored below its model's floor is raised to the floor first, so that the constraint can be
added: the floors are frozen here as they were when this migration was written (a later change of
the registry's floors needs its own migration, which makemigrations produces).
"""

from django.db import migrations, models

# model -> (unmasked floor, masked floor), as in inference.embedders.registry at this migration.
FLOORS = {
    "dlib_resnet_v1": (0.91, 0.95),
    "iresnet18": (0.2, 0.2),
    "iresnet34": (0.2, 0.2),
    "iresnet50": (0.2, 0.2),
    "iresnet100": (0.2, 0.2),
}


def raise_to_floors(apps, schema_editor):
    Policy = apps.get_model("tenants", "OrganizationPolicy")
    for model, (unmasked, masked) in FLOORS.items():
        Policy.objects.filter(embedding_model=model, threshold_unmasked__lt=unmasked).update(
            threshold_unmasked=unmasked
        )
        Policy.objects.filter(embedding_model=model, threshold_masked__lt=masked).update(
            threshold_masked=masked
        )


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0003_policy_model_from_registry"),
    ]

    operations = [
        migrations.AddField(
            model_name="organizationpolicy",
            name="reveal_scores_on_reject",
            field=models.BooleanField(
                default=False,
                help_text="Answer a rejected verify with its similarity (off by default: the score of a "
                "reject shows an attacker how close a probe came). The audit log keeps it either way.",
            ),
        ),
        migrations.RunPython(raise_to_floors, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="organizationpolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("embedding_model", "dlib_resnet_v1"),
                        ("threshold_masked__gte", 0.95),
                        ("threshold_unmasked__gte", 0.91),
                    ),
                    models.Q(
                        ("embedding_model", "iresnet100"),
                        ("threshold_masked__gte", 0.2),
                        ("threshold_unmasked__gte", 0.2),
                    ),
                    models.Q(
                        ("embedding_model", "iresnet18"),
                        ("threshold_masked__gte", 0.2),
                        ("threshold_unmasked__gte", 0.2),
                    ),
                    models.Q(
                        ("embedding_model", "iresnet34"),
                        ("threshold_masked__gte", 0.2),
                        ("threshold_unmasked__gte", 0.2),
                    ),
                    models.Q(
                        ("embedding_model", "iresnet50"),
                        ("threshold_masked__gte", 0.2),
                        ("threshold_unmasked__gte", 0.2),
                    ),
                    _connector="OR",
                ),
                name="tenants_policy_thresholds_floor",
            ),
        ),
    ]
