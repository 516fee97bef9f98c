"""python manage.py purge_expired_images [--dry-run]: delete kept images past their retention.

Run it daily (cron, or a Celery beat entry)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from faceid import services
from faceid.models import StoredImage


class Command(BaseCommand):
    help = "Delete raw images kept under an organization's policy once they expire."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["dry_run"]:
            count = StoredImage.objects.filter(expires_at__lte=now).count()
            self.stdout.write(f"{count} expired images would be deleted.")
            return
        count = services.purge_expired_images(now=now)
        self.stdout.write(f"Deleted {count} expired images.")
