"""The error responses routes declare in the OpenAPI document."""

import json

from shared.schemas import ErrorBody, error_responses


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
