"""Identify's own error target: the false-positive identification rate per search (`identify_fpir`).

Existing organizations get the default (1%): their identify thresholds are from now on chosen for it
at their gallery's size (inference.openset), never below the 1:1 thresholds they had.
"""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0004_policy_floors_and_score_hiding"),
    ]

    operations = [
        migrations.AddField(
            model_name="organizationpolicy",
            name="identify_fpir",
            field=models.FloatField(
                default=0.01,
                help_text="False-positive identification rate per search: the share of searches by a face "
                "that is not enrolled that may return someone. Identify's thresholds are chosen for it at the "
                "current number of enrolled persons, and rise as the gallery grows.",
                validators=[
                    django.core.validators.MinValueValidator(1e-06),
                    django.core.validators.MaxValueValidator(0.5),
                ],
                verbose_name="identify FPIR",
            ),
        ),
        migrations.AddConstraint(
            model_name="organizationpolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(("identify_fpir__gt", 0), ("identify_fpir__lt", 1)),
                name="tenants_policy_identify_fpir_in_range",
            ),
        ),
    ]
