"""Issue 10, item 7: console login failures are limited per username and per client IP.

Past a limit the login page answers 429 with a message and does not check the password (a right
one included), the same for a username that exists and one that does not; the Django admin's login
is held by the same limits (one authentication backend), and a refused login is still audited as a
failed login.
"""

from __future__ import annotations

import random
import uuid

import pytest
from django.test import Client

from tests.api.helpers import make_tenant

PASSWORD = "Str0ng-pass-phrase!"


@pytest.fixture
def acme(db):
    return make_tenant(f"fix-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def limits(settings):
    settings.CONSOLE_LOGIN_FAILURE_LIMIT = "3/day"
    settings.CONSOLE_LOGIN_IP_FAILURE_LIMIT = "6/day"


def _ip() -> str:
    # A fresh address per test: the counters live in the cache, which outlives test databases.
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def _login(client: Client, username: str, password: str, ip: str):
    return client.post("/console/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_failed_logins_per_username_lock_even_the_right_password(acme, limits):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    acme.user(email)
    client = Client()
    for _ in range(3):
        assert _login(client, email, "wrong", _ip()).status_code == 200  # the form again, with an error
    locked = _login(client, email.upper(), PASSWORD, _ip())  # other addresses, any case: still locked
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content and int(locked["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session
    assert b"correct" not in locked.content  # no claim about the password, which was not checked
    # another user is not affected
    other = f"{uuid.uuid4().hex[:10]}@example.com"
    acme.user(other)
    assert _login(Client(), other, PASSWORD, _ip()).status_code == 302


def test_unknown_usernames_lock_the_same_way(acme, limits):
    ghost = f"{uuid.uuid4().hex[:10]}@example.com"
    real = f"{uuid.uuid4().hex[:10]}@example.com"
    acme.user(real)
    answers = {}
    for name in (ghost, real):
        codes = [_login(Client(), name, "wrong", _ip()).status_code for _ in range(4)]
        answers[name] = codes
    assert answers[ghost] == answers[real] == [200, 200, 200, 429]


def test_failed_logins_per_address(acme, limits):
    ip = _ip()
    codes = [
        _login(Client(), f"{uuid.uuid4().hex[:10]}@example.com", "wrong", ip).status_code for _ in range(7)
    ]
    assert codes == [200] * 6 + [429]
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    acme.user(email)
    assert _login(Client(), email, PASSWORD, ip).status_code == 429
    assert _login(Client(), email, PASSWORD, _ip()).status_code == 302


def test_a_successful_login_resets_the_username_count(acme, limits):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    acme.user(email)
    for _ in range(2):
        _login(Client(), email, "wrong", _ip())
    assert _login(Client(), email, PASSWORD, _ip()).status_code == 302
    for _ in range(2):
        assert _login(Client(), email, "wrong", _ip()).status_code == 200
    assert _login(Client(), email, PASSWORD, _ip()).status_code == 302


def test_the_django_admin_login_has_the_same_limits(acme, limits, django_user_model):
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    django_user_model.objects.create_user(username=email, email=email, password=PASSWORD, is_staff=True)
    ip = _ip()
    for _ in range(3):
        _login(Client(), email, "wrong", _ip())  # through the console: the same count
    client = Client()
    page = client.post(
        "/admin/login/?next=/admin/", {"username": email, "password": PASSWORD}, REMOTE_ADDR=ip
    )
    assert page.status_code == 200 and "_auth_user_id" not in client.session  # refused, no session
    other = f"{uuid.uuid4().hex[:10]}@example.com"
    django_user_model.objects.create_user(username=other, email=other, password=PASSWORD, is_staff=True)
    for _ in range(3):
        Client().post("/admin/login/", {"username": other, "password": "wrong"}, REMOTE_ADDR=_ip())
    assert _login(Client(), other, PASSWORD, _ip()).status_code == 429  # admin failures count too
