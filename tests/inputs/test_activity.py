"""The `inputs.validate` activity: ApplicationError types, retryability, spool-only writes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
from decimal import Decimal
from pathlib import Path

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from activities.inputs.activity import (
    CREDENTIALS_ATTEMPTS,
    ERR_INPUT_CONFIGURATION,
    ERR_INPUT_READ_FAILED,
    InputActivities,
)
from tests.fixtures.validation import (
    app_error,
    client_without_credentials,
    request,
    run,
    s3_client,
)
from workers.samples import SAMPLES
from workflows.service_types import (
    ERR_INPUT_NOT_FOUND,
    ERR_INPUT_TOO_LARGE,
    ERR_INVALID_INPUT,
    InputRef,
)


def test_valid_local_sample(tmp_path: Path) -> None:
    acts = InputActivities(spool_dir=tmp_path)
    ref = InputRef(uri=str(SAMPLES["medical/transcribe"]), content_type="audio/x-wav",
                   filename="d.wav")  # fmt: skip
    out = run(acts, request("medical/transcribe", ref))
    assert out.location == str(SAMPLES["medical/transcribe"])
    assert (out.content_type, out.units, out.size_bytes) == ("audio/wav", Decimal("0.1"), 64044)
    assert out.details["duration_s"] == 2.0 and out.details["filename"] == "d.wav"
    assert len(out.sha256) == 64
    assert not list(tmp_path.iterdir())  # nothing written for a path input


def test_inline_is_spooled_only_after_it_passed(tmp_path: Path) -> None:
    acts = InputActivities(spool_dir=tmp_path)
    good = base64.b64encode(SAMPLES["scientific/protein/fold"].read_bytes()).decode()
    out = run(acts, request("scientific/protein/fold", InputRef(inline_base64=good)))
    assert Path(out.location).parent == tmp_path and Path(out.location).is_file()
    bad = base64.b64encode(b">x\nMKJ\n").decode()
    err = app_error(acts, request("scientific/protein/fold", InputRef(inline_base64=bad)))
    assert (err.type, err.non_retryable) == (ERR_INVALID_INPUT, True)
    assert "'J' at residue 3" in err.message
    assert len(list(tmp_path.iterdir())) == 1  # the refused input left nothing


def test_error_types_are_non_retryable(tmp_path: Path) -> None:
    acts = InputActivities(spool_dir=tmp_path)
    err = app_error(acts, request("perception/detect", InputRef(uri=str(tmp_path / "x"))))
    assert (err.type, err.non_retryable) == (ERR_INPUT_NOT_FOUND, True)
    # the caller's mistake: logged by the worker at DEBUG, not as a WARNING with a traceback
    assert err.category == ApplicationErrorCategory.BENIGN
    err = app_error(acts, request("perception/detect",
                                        InputRef(uri=str(SAMPLES["perception/detect"])),
                                        max_bytes=100))  # fmt: skip
    assert (err.type, err.non_retryable) == (ERR_INPUT_TOO_LARGE, True)
    assert "perception/detect accepts at most 100 bytes" in err.message
    wav = InputRef(uri=str(SAMPLES["medical/transcribe"]))
    err = app_error(acts, request("perception/detect", wav))
    assert err.message == "perception/detect accepts image/jpeg, image/png; got audio/wav"


def test_default_size_limit_comes_from_the_table(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b"{" + b" " * (70 * 1024) + b"}")
    acts = InputActivities(spool_dir=tmp_path)
    err = app_error(acts, request("scientific/geometry/solve", InputRef(uri=str(big))))
    assert err.type == ERR_INPUT_TOO_LARGE and "at most 64 KiB" in err.message


def test_sagemaker_backend_refuses_local_paths(tmp_path: Path) -> None:
    acts = InputActivities(spool_dir=tmp_path)
    err = app_error(acts, request("perception/detect",
                                        InputRef(uri=str(SAMPLES["perception/detect"])),
                                        backend="sagemaker"))  # fmt: skip
    assert err.type == ERR_INVALID_INPUT and "reads inputs from S3" in err.message


def test_s3_on_sagemaker_keeps_the_uri_and_transient_errors_retry(tmp_path: Path) -> None:
    client, data = s3_client(), SAMPLES["perception/detect"].read_bytes()
    acts = InputActivities(s3_client=client, spool_s3_uri="s3://spool/inline")
    with Stubber(client) as stub:
        stub.add_response("head_object", {"ContentLength": len(data)})
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))})
        out = run(acts, request("perception/detect", InputRef(uri="s3://inputs/a.png"),
                                      backend="sagemaker"))  # fmt: skip
        assert out.location == "s3://inputs/a.png" and out.content_type == "image/png"
        stub.add_client_error("head_object", service_error_code="InternalError",
                              http_status_code=500)  # fmt: skip
        err = app_error(acts, request("perception/detect", InputRef(uri="s3://inputs/a.png"),
                                            backend="sagemaker"))  # fmt: skip
        assert (err.type, err.non_retryable) == (ERR_INPUT_READ_FAILED, False)
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        err = app_error(acts, request("perception/detect", InputRef(uri="s3://inputs/b.png"),
                                            backend="sagemaker"))  # fmt: skip
        assert (err.type, err.non_retryable) == (ERR_INPUT_NOT_FOUND, True)


def test_s3_on_local_backend_is_spooled(tmp_path: Path) -> None:
    client, data = s3_client(), SAMPLES["perception/detect"].read_bytes()
    acts = InputActivities(spool_dir=tmp_path, s3_client=client)
    with Stubber(client) as stub:
        stub.add_response("head_object", {"ContentLength": len(data)})
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))})
        out = run(acts, request("perception/detect", InputRef(uri="s3://inputs/a.png")))
    assert Path(out.location).read_bytes() == data


def test_inline_on_sagemaker_is_uploaded(tmp_path: Path) -> None:
    client, data = s3_client(), SAMPLES["scientific/protein/embed"].read_bytes()
    acts = InputActivities(s3_client=client, spool_s3_uri="s3://spool/inline")
    with Stubber(client) as stub:
        stub.add_response("put_object", {})
        out = run(acts, request("scientific/protein/embed",
                                      InputRef(inline_base64=base64.b64encode(data).decode()),
                                      backend="sagemaker"))  # fmt: skip
        stub.assert_no_pending_responses()
    assert out.location.startswith("s3://spool/inline/") and out.location.endswith(out.sha256)


def test_s3_without_credentials_fails_the_job_after_a_few_attempts(monkeypatch) -> None:
    acts = InputActivities(s3_client=client_without_credentials(monkeypatch))
    req = request("perception/detect", InputRef(uri="s3://inputs/a.png"), backend="sagemaker")
    cases = [
        (1, ERR_INPUT_READ_FAILED, False),
        (CREDENTIALS_ATTEMPTS, ERR_INPUT_CONFIGURATION, True),
    ]
    for attempt, kind, final in cases:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, attempt=attempt)
        with pytest.raises(ApplicationError) as info:
            asyncio.run(env.run(acts.validate, req))
        assert (info.value.type, info.value.non_retryable) == (kind, final)
        assert "cannot read s3://inputs/a.png" in info.value.message
