"""python manage.py create_organization <slug> --name ... --admin-email ... [--admin-password ...]"""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from tenants import selectors, services
from tenants.models import Role


def _message(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = "Create an organization with its default policy and an owner account."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="short identifier, e.g. acme")
        parser.add_argument("--name", required=True, help="display name")
        parser.add_argument("--admin-email", required=True, help="owner's e-mail (also the username)")
        parser.add_argument(
            "--admin-password",
            help="owner's password for a new account (checked by the password validators); "
            "without it the account gets no usable password (set one with `changepassword`)",
        )
        parser.add_argument(
            "--if-not-exists",
            action="store_true",
            help="exit successfully without changes when the organization already exists (for re-runs)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str = options["slug"]
        existing = selectors.organization_by_slug(slug, active_only=False)
        if existing is not None:
            if options["if_not_exists"]:
                self.stdout.write(f"Organization '{slug}' already exists; nothing changed.")
                return
            raise CommandError(f"organization '{slug}' already exists (use --if-not-exists to accept that)")
        try:
            with transaction.atomic():
                organization = services.create_organization(slug=slug, name=options["name"])
                user, created = services.get_or_create_user(
                    email=options["admin_email"], password=options["admin_password"]
                )
                services.set_membership(organization, user=user, role=Role.OWNER)
        except ValidationError as exc:
            raise CommandError(_message(exc)) from exc
        self.stdout.write(
            f"Created organization '{organization.slug}' ({organization.name}) with default policy."
        )
        if created:
            self.stdout.write(f"Created user {user.get_username()}.")
            if not options["admin_password"]:
                self.stdout.write(
                    "No password set: run `python manage.py changepassword "
                    f"{user.get_username()}` to set one."
                )
        else:
            self.stdout.write(f"Existing user {user.get_username()} (password unchanged).")
        self.stdout.write(f"{user.get_username()} is owner of '{organization.slug}'.")
