"""python manage.py verify_audit_chain <org-slug> [<org-slug> ...] | --all

Prints the result per organization: the chain (links, HMACs) and the table against the heads
published in AUDIT_HEAD_DIR (truncation, rewrites); exits with status 1 when any check fails.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from faceid.audit import verify_chain
from faceid.audit_heads import check_heads
from tenants.models import Organization


class Command(BaseCommand):
    help = "Check organizations' audit chains (and against the published heads); report what broke."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slugs", nargs="*", help="organization slugs")
        parser.add_argument("--all", action="store_true", help="check every organization")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["all"]:
            organizations = list(Organization.objects.order_by("slug"))
        elif options["slugs"]:
            organizations = list(Organization.objects.filter(slug__in=options["slugs"]).order_by("slug"))
            missing = set(options["slugs"]) - {o.slug for o in organizations}
            if missing:
                raise CommandError(f"no organization: {', '.join(sorted(missing))}")
        else:
            raise CommandError("give organization slugs or --all")
        broken = []
        for organization in organizations:
            report = verify_chain(organization)
            heads = check_heads(organization)
            line = f"{organization.slug}: {report}; {heads}"
            if report.ok and heads.ok:
                self.stdout.write(line)
            else:
                self.stdout.write(self.style.ERROR(line))
                broken.append(organization.slug)
        if broken:
            raise CommandError(f"audit chain broken for: {', '.join(broken)}", returncode=1)
