"""Isolation matrix: organization B calls every API endpoint and console page, with every method,
carrying organization A's ids, external ids, filters, job ids and CSV exports.

The routes are enumerated from the URL resolver at collection time, so a new endpoint is a new test
case; one that is not classified in ROUTES fails (classify it: what B may send it, what it must
answer). For every route:

* ``refuse`` routes (A's object in the path): every method answers 403, 404 or 405, while A itself
  reads the same URL (positive control, so the id is real);
* ``scoped`` routes (collections, searches, exports, forms): any answer below 500, none of A's
  identifying strings in the body (names, external ids, key prefixes, e-mail addresses);
* all: never a 5xx, and A's rows (every model with an organization, A's organization, its users)
  and A's audit chain are identical before and after; only B's own rows may change.

The Django admin is the platform operators' tool, not the tenants': organization members (not
staff) cannot open it, and a staff member sees only the models they were granted (tested below).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from PIL import Image
from rest_framework.test import APIClient

from faceid import jobs, services
from faceid.models import Person, VerificationAttempt
from tenants.models import Organization, Role
from tests.api.helpers import Tenant, make_tenant, store_random_template

pytestmark = pytest.mark.django_db

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
REFUSED = {403, 404, 405}

# A's references that B sends (its answers may echo them back: B's own input, or B's own row with the
# same external id, which is allowed) ...
A_EXTERNAL_ID = "ALPHA-EXT-7731"
# ... and A's identifying strings that B never sends: none may appear in any answer to B. A second
# person, a second key and A's console user make sure every row of A carries one of them.
A_HIDDEN_EXTERNAL_ID = "ALPHA-HIDDEN-0042"
A_NAME = "Alpha Secret Person"
A_EMAIL = "alpha-owner@alpha.example"
B_EMAIL = "beta-owner@beta.example"


def _png(size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (120, 90, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class World:
    a: Tenant
    b: Tenant
    a_person: Person
    a_key: Any
    a_key_plaintext: str
    a_user: Any
    b_user: Any
    a_job_id: str
    b_api: APIClient
    markers: list[str] = field(default_factory=list)
    a_attempt_ids: set[int] = field(default_factory=set)
    a_person_ids: set[int] = field(default_factory=set)

    def console(self, user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    def a_api(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.a_key_plaintext}")
        return client


@pytest.fixture
def world(db, generous_rate_limits, settings) -> World:
    # A regression that lets B's claim reach the pipeline must fail fast (no worker runs here).
    settings.PIPELINE_WAIT_SECONDS = 1
    a, b = make_tenant("alpha"), make_tenant("beta")
    person = services.create_person(a.organization, external_id=A_EXTERNAL_ID, display_name=A_NAME)
    store_random_template(a.organization, person, seed=7, source_sha256="a" * 64)
    a_key, a_plain = a.key("enroll", "verify", "identify", "audit:read", name="alpha kiosk")
    a_user = a.user(A_EMAIL, role=Role.OWNER)
    b_user = b.user(B_EMAIL, role=Role.OWNER)
    b_api = b.client("enroll", "verify", "identify", "audit:read")
    # A job of A's, as submit_job stores it (finished, so polling does not consult the broker).
    job_id = uuid.uuid4().hex
    cache.set(
        jobs._key(job_id),
        {
            "id": job_id,
            "kind": "verify",
            "status": jobs.DONE,
            "organization_id": a.organization.pk,
            "created_at": "2026-01-01T00:00:00+00:00",
            "finished_at": "2026-01-01T00:00:01+00:00",
            "http_status": 200,
            "outcome": None,
            "refusal": None,
            "pipeline_task_id": str(uuid.uuid4()),
            "call": {"started": 0},
        },
        timeout=600,
    )
    w = World(a, b, person, a_key, a_plain, a_user, b_user, job_id, b_api)
    services.create_person(a.organization, external_id=A_HIDDEN_EXTERNAL_ID, display_name="Alpha Hidden")
    hidden_key, hidden_plain = a.key("verify", name="alpha hidden key")
    # A's audit rows, written the real way (refused verifies): by its key, its hidden key, its user.
    by_user = APIClient()
    by_user.force_login(a_user)
    hidden = APIClient()
    hidden.credentials(HTTP_AUTHORIZATION=f"Bearer {hidden_plain}")
    for client, claim in ((w.a_api(), A_EXTERNAL_ID), (hidden, A_EXTERNAL_ID), (by_user, A_EXTERNAL_ID)):
        refused = client.post("/api/v1/verify/", {"person": claim}, format="json")
        assert refused.status_code == 400, refused.content
    assert (
        w.a_api().post("/api/v1/verify/", {"person": A_HIDDEN_EXTERNAL_ID}, format="json").status_code == 400
    )
    w.markers = [
        A_HIDDEN_EXTERNAL_ID,
        A_NAME,
        "Alpha Hidden",
        A_EMAIL,
        hidden_key.prefix,
        "alpha kiosk",
        "Org alpha",
    ]
    w.a_attempt_ids = set(
        VerificationAttempt.objects.filter(organization=a.organization).values_list("pk", flat=True)
    )
    w.a_person_ids = set(Person.objects.filter(organization=a.organization).values_list("pk", flat=True))
    return w


# --- what "nothing changed" means ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def snapshot(organization: Organization) -> dict[str, list]:
    """Every row of the organization, in every model that has one, plus the organization and the
    users who are its members: compared field by field (embeddings and audit hashes included)."""
    state: dict[str, list] = {}
    user_model = get_user_model()
    for model in apps.get_models():
        names = {f.name for f in model._meta.concrete_fields}
        if model is Organization:
            rows = model.objects.filter(pk=organization.pk)
        elif "organization" in names:
            rows = model.objects.filter(organization=organization)
        elif model is user_model:
            rows = model.objects.filter(memberships__organization=organization)
        else:
            continue
        state[model._meta.label] = [
            {k: _plain(v) for k, v in row.items() if k != "last_login"}
            for row in rows.order_by("pk").values()
        ]
    return state


# --- the routes -----------------------------------------------------------------------------------


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = "") -> list[tuple[str, str]]:
    found = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                found.append((prefix + str(entry.pattern), "admin:*"))
                continue
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += _walk(entry, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            route = prefix + str(entry.pattern)
            found.append((route, f"{namespace}{entry.name}" if entry.name else f"path:/{route}"))
    return found


def all_routes() -> list[str]:
    return sorted({name for _, name in _walk(get_resolver())})


@dataclass(frozen=True)
class Route:
    kind: str  # refuse | scoped | public | admin
    args: tuple[str, ...] = ()  # names of World attributes that fill the path
    queries: tuple[str, ...] = ("",)  # query strings B sends (A's filters)
    control_get: bool = False  # A's GET of the same URL answers 200
    console: bool = False
    without: tuple[str, ...] = ()  # fields left out of B's hostile body


ROUTES: dict[str, Route] = {
    "admin:*": Route("admin"),
    "path:/": Route("public"),  # redirects to the console
    "schema": Route("public"),
    "swagger-ui": Route("public"),
    "api:person-list": Route("scoped", queries=(f"?search={A_EXTERNAL_ID}", "?search=Alpha", "?active=true")),
    "api:person-detail": Route("refuse", ("a_person_id",), control_get=True),
    "api:person-faces": Route("refuse", ("a_person_id",), control_get=True),
    "api:verify": Route("scoped"),
    # Identify names nobody: B's probe of A's face is test_identify_by_b_never_finds_as_person (worker).
    "api:identify": Route("scoped", without=("image",)),
    "api:attempt-list": Route(
        "scoped",
        queries=(
            f"?person={A_EXTERNAL_ID}",
            "?person={a_person_id}",
            "?key={a_key_prefix}",
            "?key={a_key_id}",
            "?format=csv",
            f"?format=csv&person={A_EXTERNAL_ID}",
        ),
    ),
    "api:attempt-csv": Route("scoped", queries=(f"?person={A_EXTERNAL_ID}", "?key={a_key_prefix}", "")),
    "api:job-detail": Route("refuse", ("a_job_id",), control_get=True),
    "console:login": Route("public", console=True),
    "console:logout": Route("public", console=True),
    "console:home": Route("scoped", console=True),
    "console:switch_organization": Route("scoped", console=True),
    "console:persons": Route("scoped", queries=(f"?q={A_EXTERNAL_ID}", "?q=Alpha"), console=True),
    "console:person": Route("refuse", ("a_person_id",), control_get=True, console=True),
    "console:person_erase": Route("refuse", ("a_person_id",), control_get=True, console=True),
    "console:enroll": Route("refuse", ("a_person_id",), control_get=True, console=True),
    "console:enroll_frames": Route("refuse", ("a_person_id",), console=True),
    "console:verify": Route("scoped", queries=(f"?person={A_EXTERNAL_ID}",), console=True),
    "console:verify_frames": Route("scoped", console=True),
    "console:policy": Route("scoped", console=True),
    "console:calibration": Route("scoped", console=True),
    "console:api_keys": Route("scoped", console=True),
    "console:api_key_revoke": Route("refuse", ("a_key_id",), console=True),
    "console:audit": Route(
        "scoped",
        queries=(f"?person={A_EXTERNAL_ID}", "?person={a_person_id}", "?key={a_key_prefix}"),
        console=True,
    ),
    "console:audit_csv": Route(
        "scoped", queries=("", f"?person={A_EXTERNAL_ID}", "?key={a_key_prefix}"), console=True
    ),
}


def refs(w: World) -> dict[str, Any]:
    return {
        "a_person_id": w.a_person.pk,
        "a_key_id": w.a_key.pk,
        "a_key_prefix": w.a_key.prefix,
        "a_job_id": w.a_job_id,
    }


def hostile_body(w: World) -> dict[str, Any]:
    """Every field any view reads, filled with A's references (and a harmless image)."""
    return {
        "person": A_EXTERNAL_ID,
        "person_id": str(w.a_person.pk),
        "external_id": A_EXTERNAL_ID,
        "display_name": "Mallory",
        "active": "false",
        "action": "deactivate",
        "confirm": A_EXTERNAL_ID,
        "organization": w.a.organization.slug,
        "name": "mallory key",
        "scopes": ["enroll"],
        "key": w.a_key.prefix,
        "image": base64.b64encode(_png()).decode(),
        "frame": "data:image/png;base64," + base64.b64encode(_png()).decode(),
        "threshold_unmasked": "0.1",
        "threshold_masked": "0.1",
        "apply": "1",
        "check_chain": "1",
    }


def _call(client: Client, method: str, url: str, body: dict, *, json_body: bool) -> Any:
    kwargs: dict[str, Any] = {}
    if method in {"POST", "PUT", "PATCH"}:
        if json_body:
            kwargs = {"data": body, "format": "json"} if isinstance(client, APIClient) else {}
        elif method == "POST":
            kwargs = {"data": body}
    return getattr(client, method.lower())(url, **kwargs)


def _body_text(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def test_every_route_is_classified():
    missing = [name for name in all_routes() if name not in ROUTES]
    assert not missing, f"classify these routes in tests/security/test_isolation.py ROUTES: {missing}"
    stale = [name for name in ROUTES if name not in all_routes()]
    assert not stale, f"ROUTES names routes that no longer exist: {stale}"


# The admin is the operators' tool, not split by organization: test_admin_* below say what holds.
@pytest.mark.parametrize("name", [n for n in all_routes() if getattr(ROUTES.get(n), "kind", "") != "admin"])
def test_organization_b_cannot_reach_organization_a(world: World, name: str):
    route = ROUTES.get(name)
    assert route is not None, f"route {name!r} is not classified in ROUTES"
    w = world
    values = refs(w)
    if name.startswith("path:"):
        url = name.removeprefix("path:")
    else:
        kwargs = dict(zip(_kwarg_names(name), (values[a] for a in route.args), strict=True))
        url = reverse(name, kwargs=kwargs)

    if route.control_get:
        control = w.console(w.a_user) if route.console else w.a_api()
        answer = control.get(url)
        assert answer.status_code == 200, f"positive control: A's own GET {url} -> {answer.status_code}"

    before_a = snapshot(w.a.organization)
    seen: list[str] = []
    body = {k: v for k, v in hostile_body(w).items() if k not in route.without}
    for query in route.queries:
        full = url + query.format(**values)
        for client, method in _b_callers(w, route, name):
            response = _call(client, method, full, body, json_body=not route.console)
            status = response.status_code
            seen.append(f"{method} {full} -> {status}")
            assert status < 500, f"{method} {full} -> {status}: {response.content[:300]!r}"
            if route.kind == "refuse" and not (method == "OPTIONS" and status == 200):
                assert status in REFUSED, f"{method} {full} -> {status}: B reached A's object"
            if route.kind == "refuse" and method == "OPTIONS" and status == 200:
                # DRF describes the view without loading the object: allowed only if the answer is
                # the same for an id that exists nowhere (no oracle on A's ids).
                nowhere = client.options(_nowhere_url(name, route))
                assert (nowhere.status_code, nowhere.content) == (200, response.content), full
            text = _body_text(response)
            for marker in w.markers:
                assert marker not in text, f"{method} {full} -> {status} shows A's {marker!r}"
            assert_no_rows_of_a(w, response, text, f"{method} {full}")
            if name == "api:verify" and method == "POST":
                assert status == 404 and response.json()["reason"] == "unknown_person", response.content
            if name == "console:verify_frames" and method == "POST":
                assert status == 404, response.content
            if name == "console:verify" and method == "POST":
                assert response.context["result_status"] == 404, "B's console verify resolved A's person"
            if name == "console:switch_organization" and method == "POST":
                home = _body_text(client.get(reverse("console:persons")))
                assert "Org beta" in home and not any(m in home for m in w.markers)
    assert snapshot(w.a.organization) == before_a, "B's calls changed A's rows:\n" + "\n".join(seen)


def _b_callers(w: World, route: Route, name: str):
    """(client, method) pairs: the console as B's owner; the API with B's key and, as the console's
    pages call it, with B's owner's session."""
    if route.console:
        client = w.console(w.b_user)
        for method in METHODS:
            yield (w.console(w.b_user) if name == "console:logout" else client), method
        return
    session = APIClient()
    session.force_login(w.b_user)
    for client in (w.b_api, session):
        for method in METHODS:
            yield client, method


def assert_no_rows_of_a(w: World, response: Any, text: str, what: str) -> None:
    """Structurally: no person or audit row of A's in a JSON page or a CSV export."""
    content_type = response.get("Content-Type", "")
    if content_type.startswith("text/csv"):
        ids = {int(row["id"]) for row in csv.DictReader(io.StringIO(text)) if row.get("id", "").isdigit()}
        assert not ids & w.a_attempt_ids, f"{what}: A's audit rows in B's CSV"
    elif content_type.startswith("application/json") and text.startswith("{"):
        rows = json.loads(text).get("results") or []
        ids = {row.get("id") for row in rows if isinstance(row, dict)}
        assert not ids & (w.a_attempt_ids | w.a_person_ids), f"{what}: A's rows in B's page"


def _nowhere_url(name: str, route: Route) -> str:
    values = {"a_person_id": 2_000_000_000, "a_key_id": 2_000_000_000, "a_job_id": uuid.uuid4().hex}
    kwargs = dict(zip(_kwarg_names(name), (values[a] for a in route.args), strict=True))
    return reverse(name, kwargs=kwargs)


def _kwarg_names(name: str) -> list[str]:
    patterns = {n: p for p, n in _walk(get_resolver())}
    pattern = patterns[name]
    return re.findall(r"<(?:\w+:)?(\w+)>", pattern)


def test_verify_claims_of_as_person_are_unknown_to_b(world: World):
    """Every way of naming A's person in a claim: B's verify answers 404 before any pipeline call."""
    w = world
    before = snapshot(w.a.organization)
    image = base64.b64encode(_png()).decode()
    for claim in (
        {"person": A_EXTERNAL_ID},
        {"person": str(w.a_person.pk)},
        {"person_id": str(w.a_person.pk)},
        {"external_id": A_EXTERNAL_ID},
        {"person": f" {A_EXTERNAL_ID} "},
        {"person": A_EXTERNAL_ID.lower()},
    ):
        response = w.b_api.post("/api/v1/verify/", {**claim, "image": image}, format="json")
        assert response.status_code == 404, (claim, response.content)
        assert response.json()["reason"] == "unknown_person"
    assert snapshot(w.a.organization) == before


@pytest.mark.slow
def test_identify_by_b_never_finds_as_person(world: World, pipeline_worker, portraits_dir, settings):
    """A enrolls a real face; B's identify with another photo of that face finds nobody, while A's
    own identify (positive control) finds the person."""
    from tests.portraits import ALICE

    w = world
    settings.PIPELINE_WAIT_SECONDS = 120

    def jpeg(name: str) -> bytes:
        image = Image.open(portraits_dir / name).convert("RGB")
        image.thumbnail((800, 800))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=92)
        return buffer.getvalue()

    # A new person of A's (A's fixture person holds a random template that no real face matches).
    face_owner = w.a_api().post("/api/v1/persons/", {"external_id": "ALPHA-FACE-1"}, format="json").json()
    enrolled = w.a_api().post(
        f"/api/v1/persons/{face_owner['id']}/faces/",
        {"image": base64.b64encode(jpeg(ALICE[1][0])).decode()},
        format="json",
    )
    assert enrolled.status_code == 201, enrolled.content
    probe = {"image": base64.b64encode(jpeg(ALICE[1][1])).decode()}
    before = snapshot(w.a.organization)
    by_b = w.b_api.post("/api/v1/identify/", probe, format="json")
    assert by_b.status_code == 200 and by_b.json()["matches"] == [], by_b.content
    assert snapshot(w.a.organization) == before
    by_a = w.a_api().post("/api/v1/identify/", probe, format="json")
    assert [m["external_id"] for m in by_a.json()["matches"]][:1] == ["ALPHA-FACE-1"], by_a.content


# --- the Django admin ---------------------------------------------------------------------------

ADMIN_MODELS = (
    "faceid_person",
    "faceid_facetemplate",
    "faceid_storedimage",
    "faceid_verificationattempt",
    "tenants_organization",
    "tenants_apikey",
    "tenants_membership",
)


def test_admin_is_closed_to_organization_members(world: World):
    """A tenant's owner (a member, not staff) cannot open the admin: it redirects to its login."""
    client = world.console(world.a_user)
    for model in ADMIN_MODELS:
        app, name = model.split("_", 1)
        response = client.get(reverse(f"admin:{app}_{name}_changelist"))
        assert response.status_code == 302 and "/admin/login/" in response["Location"], model


def test_admin_staff_without_permissions_sees_nothing(world: World):
    staff = get_user_model().objects.create_user(
        "ops@platform.example", password="x-Str0ng-pass", is_staff=True
    )
    client = world.console(staff)
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    for marker in world.markers:
        assert marker not in index.content.decode()
    for model in ADMIN_MODELS:
        app, name = model.split("_", 1)
        assert client.get(reverse(f"admin:{app}_{name}_changelist")).status_code == 403, model
        change = reverse(f"admin:{app}_{name}_change", args=[world.a_person.pk])
        assert client.get(change).status_code in {302, 403}, model


def test_admin_staff_see_exactly_the_models_they_are_granted(world: World):
    """What holds today: the admin is not scoped by organization. A staff member granted
    `view_person` sees every organization's persons (operators' tool) and nothing else."""
    staff = get_user_model().objects.create_user(
        "ops2@platform.example", password="x-Str0ng-pass", is_staff=True
    )
    staff.user_permissions.add(Permission.objects.get(codename="view_person"))
    client = world.console(staff)
    persons = client.get(reverse("admin:faceid_person_changelist"))
    assert persons.status_code == 200 and A_EXTERNAL_ID in persons.content.decode()
    change = client.get(reverse("admin:faceid_person_change", args=[world.a_person.pk]))
    assert change.status_code == 200 and b"Save" not in change.content  # view only
    assert client.post(reverse("admin:faceid_person_change", args=[world.a_person.pk]), {}).status_code == 403
    for model in ADMIN_MODELS[1:]:
        app, name = model.split("_", 1)
        assert client.get(reverse(f"admin:{app}_{name}_changelist")).status_code == 403, model
