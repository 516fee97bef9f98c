"""The OpenAPI schema documents the contract, and Swagger UI is served from local assets."""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.django_db

CONTRACT_PATHS = {
    "/api/v1/persons/": {"get", "post"},
    "/api/v1/persons/{id}/": {"get", "patch", "delete"},
    "/api/v1/persons/{id}/faces/": {"post"},
    "/api/v1/verify/": {"post"},
    "/api/v1/identify/": {"post"},
    "/api/v1/attempts/": {"get"},
    "/api/v1/jobs/{id}/": {"get"},
}


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_schema_has_the_contract_paths(schema):
    for path, methods in CONTRACT_PATHS.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), (path, set(schema["paths"][path]))


def test_schema_documents_the_contract_fields(schema):
    components = schema["components"]["schemas"]
    verify = components["VerifyResponse"]["properties"]
    for name in (
        "match",
        "similarity",
        "threshold",
        "masked",
        "mask_probability",
        "attempt_id",
        "latency_ms",
    ):
        assert name in verify, name
    assert set(components["IdentifyMatch"]["properties"]) >= {"person", "external_id", "similarity"}
    assert "matches" in components["IdentifyResponse"]["properties"]
    # One input serializer parses both bodies: multipart files and base64 JSON.
    assert "person" in components["VerifyInput"]["properties"]
    assert components["VerifyInput"]["properties"]["image"]["type"] == "array"
    assert {"external_id", "display_name"} <= set(components["PersonCreate"]["properties"])
    verify_op = schema["paths"]["/api/v1/verify/"]["post"]
    assert {"200", "202", "400", "401", "403", "404", "413", "422", "423", "429", "504"} <= set(
        verify_op["responses"]
    )
    assert {"multipart/form-data", "application/json"} <= set(verify_op["requestBody"]["content"])
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }


def test_swagger_ui_uses_local_assets(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist" in html
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
