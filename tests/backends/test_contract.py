"""The backend contract without any backend: naming, error classification, specs."""

from __future__ import annotations

import pickle
import re

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from activities.backends.base import (
    ERROR_TYPES,
    MAX_SYNC_PAYLOAD,
    NON_RETRYABLE_ERROR_TYPES,
    BackendError,
    EndpointInfo,
    EndpointSpec,
    InvalidRequest,
    check_capacity,
    classify_client_error,
    classify_exception,
    endpoint_name,
    require_in_service,
)

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


# --------------------------------------------------------------------------- naming


def test_endpoint_name_plain() -> None:
    assert endpoint_name("thinktank", "dev", "yolov8m") == "radiant-thinktank-dev-yolov8m"


@pytest.mark.parametrize(
    ("app", "env", "model", "expected"),
    [
        ("ThinkTank", "Prod", "SAM2", "radiant-thinktank-prod-sam2"),
        ("my_app", "dev", "yolov8.1", "radiant-my-app-dev-yolov8-1"),
        ("app", "dev", "--odd__id--", "radiant-app-dev-odd-id"),
    ],
)
def test_endpoint_name_sanitizes(app: str, env: str, model: str, expected: str) -> None:
    assert endpoint_name(app, env, model) == expected


def test_long_names_keep_prefix_and_stable_hash() -> None:
    model = "a-really-long-model-identifier-that-goes-on-and-on-" + "x" * 40
    a = endpoint_name("tenant-app", "staging", model)
    b = endpoint_name("tenant-app", "staging", model + "y")
    assert len(a) == 63 and SAGEMAKER_NAME.match(a)
    assert a.startswith("radiant-tenant-app-staging-a-really-long")
    assert a == endpoint_name("tenant-app", "staging", model)  # stable
    assert a != b and a[:54] == b[:54]  # same prefix, the hash tells them apart


def test_every_generated_name_is_valid() -> None:
    for model in ["x", "-", "a" * 80, "Ünïcødé-model", "3d-gaussian-splatting", "a--b", "é" + "b"]:
        try:
            name = endpoint_name("app", "dev", model)
        except ValueError:
            assert not any(c.isalnum() and c.isascii() for c in model)
            continue
        assert len(name) <= 63 and SAGEMAKER_NAME.match(name), name


def test_empty_component_is_rejected() -> None:
    with pytest.raises(ValueError):
        endpoint_name("app", "", "m")


def test_spec_rejects_invalid_name_and_bounds() -> None:
    base = {"model_id": "m", "image": "i", "instance_type": "ml.g5.xlarge"}
    with pytest.raises(ValueError):
        EndpointSpec(endpoint_name="bad_name", **base)
    with pytest.raises(ValueError):
        EndpointSpec(endpoint_name="ok", min_instances=3, max_instances=2, **base)


def test_config_hash_ignores_capacity_but_not_image() -> None:
    a = EndpointSpec(endpoint_name="e", model_id="m", image="i:1", instance_type="ml.g5.xlarge")
    assert a.config_hash() == a.model_copy(update={"instance_count": 3}).config_hash()
    assert a.config_hash() != a.model_copy(update={"image": "i:2"}).config_hash()
    assert a.config_hash() != a.model_copy(update={"instance_type": "ml.g5.2xlarge"}).config_hash()


# --------------------------------------------------------------------------- classification


def client_error(code: str, message: str = "", status: int = 400, **extra: object) -> ClientError:
    resp = {"Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status}, **extra}  # fmt: skip
    return ClientError(resp, "SomeOperation")  # type: ignore[arg-type]


VE = "ValidationException"


@pytest.mark.parametrize(
    ("code", "message", "status", "expected", "retryable"),
    [
        (VE, 'Could not find endpoint "radiant-a-dev-m".', 400, "EndpointNotFound", False),
        ("ValidationError", "Endpoint e of account 1 not found.", 400, "EndpointNotFound", False),
        (VE, 'Could not find endpoint configuration "c".', 400, "ResourceNotFound", False),
        (VE, 'Could not find model "m".', 400, "ResourceNotFound", False),
        (VE, 'Cannot create already existing endpoint "arn".', 400, "AlreadyExists", False),
        (VE, 'Cannot update in-progress endpoint "arn".', 400, "InvalidEndpointState", True),
        (VE, "Endpoint status is Creating", 400, "InvalidEndpointState", True),
        (VE, "Endpoint is in Updating state", 400, "InvalidEndpointState", True),
        (VE, "1 validation error detected: Value 'x'", 400, "ValidationError", False),
        ("ResourceLimitExceeded", "account-level service limit", 400, "QuotaExceeded", False),
        ("LimitExceededException", "too many scalable targets", 400, "QuotaExceeded", False),
        ("InsufficientCapacity", "no ml.g5.48xlarge", 400, "CapacityUnavailable", True),
        ("ThrottlingException", "Rate exceeded", 400, "Throttled", True),
        ("ConcurrentUpdateException", "concurrent update", 400, "InvalidEndpointState", True),
        ("ObjectNotFoundException", "No scalable target", 400, "ResourceNotFound", False),
        ("NoSuchKey", "The specified key does not exist.", 404, "ResourceNotFound", False),
        ("ServiceUnavailable", "", 503, "ServiceUnavailable", True),
        ("InternalFailure", "", 500, "ServiceUnavailable", True),
        ("SomethingNew", "", 502, "ServiceUnavailable", True),
        ("SomethingNew", "", 429, "Throttled", True),
        ("SomethingNew", "", 400, "Unclassified", False),
        ("AccessDeniedException", "not authorized", 400, "AccessDenied", False),
        ("ModelNotReadyException", "", 429, "ModelNotReady", True),
        ("ModelError", "container said 400", 424, "ModelError", False),
    ],
)  # fmt: skip
def test_classification_table(
    code: str, message: str, status: int, expected: str, retryable: bool
) -> None:
    err = classify_client_error(client_error(code, message, status))
    assert (err.code, err.retryable) == (expected, retryable)
    assert (expected in NON_RETRYABLE_ERROR_TYPES) is (not retryable)
    assert err.aws_code == code


def test_model_error_with_container_5xx_is_retryable() -> None:
    err = classify_client_error(client_error("ModelError", "boom", 424, OriginalStatusCode=500))
    assert (err.code, err.retryable) == ("ModelServerError", True)


def test_connection_errors_are_retryable() -> None:
    for exc in (
        EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://runtime.sagemaker"),
    ):
        err = classify_exception(exc)
        assert err is not None and (err.code, err.retryable) == ("ServiceUnavailable", True)
    assert classify_exception(KeyError("bug")) is None  # not a backend failure


def test_non_retryable_list_matches_the_error_types() -> None:
    assert NON_RETRYABLE_ERROR_TYPES == sorted(c for c, r in ERROR_TYPES.items() if not r)
    assert {"QuotaExceeded", "EndpointFailed", "ModelError", "ValidationError"} <= set(
        NON_RETRYABLE_ERROR_TYPES
    )
    assert not {"Throttled", "CapacityUnavailable", "InvalidEndpointState", "ModelNotReady"} & set(
        NON_RETRYABLE_ERROR_TYPES
    )


def test_backend_error_pickles_and_keeps_fields() -> None:
    err = classify_client_error(client_error("ResourceLimitExceeded", "quota"))
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err) and (copy.code, copy.retryable, copy.message) == (
        err.code, err.retryable, err.message,
    )  # fmt: skip
    generic = BackendError("Custom", "msg", True)
    assert str(generic) == "Custom: msg" and generic.retryable


# --------------------------------------------------------------------------- helpers


def test_check_capacity() -> None:
    assert check_capacity(5, 1, 3, async_inference=False) == 3  # clamped to max
    assert check_capacity(1, 2, 3, async_inference=False) == 2  # raised to the floor
    assert check_capacity(0, 0, 2, async_inference=True) == 0
    with pytest.raises(BackendError, match="delete_endpoint"):
        check_capacity(0, 0, 2, async_inference=False)
    with pytest.raises(BackendError):
        check_capacity(1, 3, 2, async_inference=False)


async def test_the_local_stand_in_refuses_a_payload_sagemaker_would(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SageMaker's 6 MB real-time limit holds on the stand-in too (before any endpoint lookup):
    a job that passes locally must not fail on AWS for its size."""
    from activities.backends.local import LocalStandInBackend

    backend = LocalStandInBackend(tmp_path)
    with pytest.raises(InvalidRequest, match="exceeds the 6291456-byte limit"):
        await backend.invoke("radiant-a-b-c", b"x" * (MAX_SYNC_PAYLOAD + 1), "image/jpeg")


def test_require_in_service() -> None:
    def info(status: str) -> EndpointInfo:
        return EndpointInfo(endpoint_name="e", status=status, failure_reason="why")  # type: ignore[arg-type]

    assert require_in_service(info("InService"), "e").status == "InService"
    for status, code, retryable in [
        ("Creating", "EndpointNotReady", True),
        ("Failed", "EndpointFailed", False),
    ]:
        with pytest.raises(BackendError) as exc:
            require_in_service(info(status), "e")
        assert (exc.value.code, exc.value.retryable) == (code, retryable)
    with pytest.raises(BackendError, match="does not exist"):
        require_in_service(None, "e")


# --------------------------------------------------------------------------- factory


def test_factory_builds_the_configured_backend(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from activities.backends.factory import create_backend
    from activities.backends.local import LocalStandInBackend
    from activities.backends.sagemaker import SageMakerBackend
    from workers.settings import Settings

    local = create_backend(Settings(backend="local", data_dir=tmp_path))
    assert isinstance(local, LocalStandInBackend) and local.data_dir == tmp_path.resolve()
    sm = create_backend(
        Settings(
            backend="sagemaker",
            data_dir=tmp_path,
            aws_region="eu-west-1",
            sagemaker_execution_role_arn="arn:aws:iam::123456789012:role/r",
            async_output_s3_uri="s3://b/async",
        )
    )
    assert isinstance(sm, SageMakerBackend) and sm.sm.meta.region_name == "eu-west-1"
    assert sm.async_output_s3_uri == "s3://b/async" and sm.kind == "sagemaker"
