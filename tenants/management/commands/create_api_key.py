"""python manage.py create_api_key <slug> --scopes verify,enroll,identify [--name ...]

The new key is printed once, alone on the last line of standard output, so scripts can capture it
with `| tail -n 1`.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants import selectors, services
from tenants.models import Scope


class Command(BaseCommand):
    help = "Create an API key for an organization and print it (once, on the last line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the organization's slug")
        parser.add_argument(
            "--scopes", required=True, help=f"comma-separated scopes from: {', '.join(Scope.values)}"
        )
        parser.add_argument("--name", default="", help="a label to tell keys apart")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = selectors.organization_by_slug(options["slug"])
        if organization is None:
            raise CommandError(f"no active organization '{options['slug']}'")
        scopes = [s for s in options["scopes"].split(",") if s.strip()]
        try:
            api_key, plaintext = services.create_api_key(
                organization, name=options["name"] or "created by create_api_key", scopes=scopes
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(
            f"Created API key '{api_key.name}' (prefix {api_key.prefix}) for '{organization.slug}' "
            f"with scopes {','.join(api_key.scopes)}. It is shown once, on the next line:"
        )
        self.stdout.write(plaintext)
