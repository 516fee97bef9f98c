from datetime import timedelta
from pathlib import Path

from django.core.management import call_command

from faceid import selectors, services
from faceid.models import StoredImage
from tenants.services import update_policy


def test_images_are_not_kept_unless_the_policy_says_so(org, make_person, media_root):
    person = make_person(org)
    assert services.keep_image(org, data=b"jpeg", purpose="enrollment", person=person) is None
    assert not StoredImage.objects.exists()
    assert not Path(media_root).exists() or not any(Path(media_root).rglob("*.*"))


def test_kept_images_expire_after_the_retention_period(org, make_person, record, media_root):
    update_policy(org, keep_images=True, image_retention_days=7)
    person = make_person(org)
    attempt = record(org, claimed_person=person)

    image = services.keep_image(
        org, data=b"\xff\xd8jpeg", purpose="probe", filename="../../etc/passwd.jpg", attempt=attempt
    )

    assert image.person == person  # linked to the claimed person, so erasure finds it
    assert image.expires_at - image.created_at == timedelta(days=7)
    assert image.sha256 in image.file.name and ".." not in image.file.name
    assert image.file.name.startswith(f"faceid/{org.pk}/")
    assert (Path(media_root) / image.file.name).read_bytes() == b"\xff\xd8jpeg"
    assert list(selectors.stored_images_for(org, person=person)) == [image]


def test_purge_expired_images_deletes_rows_and_files(
    org, make_person, media_root, clock, capsys, django_capture_on_commit_callbacks
):
    update_policy(org, keep_images=True, image_retention_days=1)
    person = make_person(org)
    old = services.keep_image(org, data=b"old", purpose="enrollment", person=person)
    clock.advance(hours=12)
    recent = services.keep_image(org, data=b"recent", purpose="enrollment", person=person)
    clock.advance(hours=13)  # old is 25 h old, recent 13 h

    call_command("purge_expired_images", "--dry-run")
    assert "1 expired images would be deleted" in capsys.readouterr().out
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_expired_images")

    assert "Deleted 1 expired images" in capsys.readouterr().out
    assert list(StoredImage.objects.all()) == [recent]
    assert not (Path(media_root) / old.file.name).exists()
    assert (Path(media_root) / recent.file.name).exists()
