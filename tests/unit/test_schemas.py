"""The error responses routes declare in the OpenAPI document."""

import json

from maas_core.shared.schemas import ErrorBody, error_responses


def test_error_responses_give_a_route_its_success_and_error_statuses_with_the_error_schema():
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from openapi_spec_validator import validate

    app = APIGatewayRestResolver(enable_validation=True)

    @app.get("/things/<name>", responses=error_responses(400, 404, 422, 503))
    def thing(name: str) -> dict:
        return {"name": name}

    @app.post("/things/<name>/jobs", status_code=201, responses=error_responses(415, success=201))
    def job(name: str) -> dict:
        return {"name": name}

    document = json.loads(app.get_openapi_json_schema())
    validate(document)
    get = document["paths"]["/things/{name}"]["get"]["responses"]
    assert sorted(get) == ["200", "400", "404", "422", "503"]
    assert get["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert sorted(document["paths"]["/things/{name}/jobs"]["post"]["responses"]) == ["201", "415", "422"]
    assert document["components"]["schemas"]["ErrorBody"]["required"] == ["error", "code"]
    ErrorBody.model_validate({"error": "no model named 'x'", "code": "model_not_found", "details": {"model": "x"}})


def test_the_name_patterns_of_the_document_are_the_registrys_rules():
    """The patterns the OpenAPI document declares accept what the registry accepts, and nothing with a
    trailing newline (JSON Schema's ECMA "$", and pydantic, do not take one)."""
    import re

    import pytest
    from pydantic import ValidationError

    from maas_core.shared import layout
    from maas_core.shared.errors import InvalidName
    from maas_core.shared.jobs import JOB_ID_RE
    from maas_core.shared.schemas import ALIAS_PATTERN, JOB_ID_PATTERN, NAME_PATTERN, VERSION_PATTERN, JobRequest

    samples = ["digits", "a", "0-a", "-a", "A", "a" * 63, "a" * 64, "production", "p" * 33, "a/b", "..", ""]
    samples += ["20260101T120000Z-0123abcd", "20260101T120000Z-0123ABCD", "20260101T120000Z-0123abc", "0" * 32]
    for pattern, accepts in (
        (NAME_PATTERN, layout.check_name),
        (ALIAS_PATTERN, layout.check_alias),
        (VERSION_PATTERN, layout.check_version),
        (JOB_ID_PATTERN, JOB_ID_RE.fullmatch),
    ):
        for sample in samples:
            try:
                accepted = bool(accepts(sample))
            except InvalidName:
                accepted = False
            assert bool(re.fullmatch(pattern[1:-1], sample)) == accepted, (pattern, sample)
    for field, value in (("version", "20260101T120000Z-0123abcd\n"), ("alias", "production\n")):
        with pytest.raises(ValidationError):
            JobRequest.model_validate({field: value})
