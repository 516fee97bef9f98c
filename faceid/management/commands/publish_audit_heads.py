"""python manage.py publish_audit_heads [<org-slug> ...]

Appends each organization's audit chain head (seq, hash, signature) to AUDIT_HEAD_DIR, as the
scheduled task faceid.audit_heads.publish_heads does; all organizations when no slug is given.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from faceid.audit_heads import head_dir, publish_heads
from tenants.models import Organization


class Command(BaseCommand):
    help = "Publish the audit chains' heads to AUDIT_HEAD_DIR (outside the database)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slugs", nargs="*", help="organization slugs (default: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        organizations = list(Organization.objects.order_by("slug"))
        if options["slugs"]:
            organizations = [o for o in organizations if o.slug in options["slugs"]]
            missing = set(options["slugs"]) - {o.slug for o in organizations}
            if missing:
                raise CommandError(f"no organization: {', '.join(sorted(missing))}")
        count = publish_heads(organizations)
        self.stdout.write(f"{count} head(s) published to {head_dir()}")
