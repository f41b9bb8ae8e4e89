"""Where a tenant's input may come from: the worker's input roots (never its data directory,
whose spool only the activity itself writes) and the per-tenant S3 prefixes."""

from __future__ import annotations

import base64
import io
import shutil
import types
from pathlib import Path

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from temporalio.exceptions import ApplicationError

import activities.inputs.reader as reader
import workers.worker as worker_module
from activities.inputs.activity import ERR_INPUT_CONFIGURATION, InputActivities
from activities.inputs.errors import InputValidationError
from models_catalog.catalog import load_catalog
from tests.fixtures.validation import app_error, request, run, s3_client
from workers.samples import SAMPLES, SAMPLES_DIR
from workers.settings import Settings
from workers.worker import WorkerDeps, activities_for
from workflows.service_types import ERR_INPUT_NOT_FOUND, InputRef

KEY = "perception/detect"
PNG = SAMPLES[KEY]


def worker_inputs(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> InputActivities:
    """The InputActivities a worker builds from `settings` (LLM activities left out: they
    import LiteLLM and need none of this)."""
    monkeypatch.setattr(worker_module, "llm_activities", lambda *a, **k: [])
    deps = WorkerDeps(settings=settings, catalog=load_catalog(),
                      backend=types.SimpleNamespace(kind="local"), engine=None)  # type: ignore[arg-type]  # fmt: skip
    validate = next(a for a in activities_for(deps, None, "q") if a.__name__ == "validate")  # type: ignore[arg-type]
    return validate.__self__


def assert_denied(err: ApplicationError, where: str) -> None:
    assert (err.type, err.non_retryable) == (ERR_INPUT_NOT_FOUND, True)
    assert "access denied" in err.message and where in err.message


def test_worker_refuses_its_data_dir_but_spools_inline_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    acts = worker_inputs(monkeypatch, Settings(data_dir=data_dir, input_roots=[tmp_path]))
    # Another tenant's inline input, spooled earlier, and a job output: valid files, not inputs.
    own = run(
        acts, request(KEY, InputRef(inline_base64=base64.b64encode(PNG.read_bytes()).decode()))
    )
    assert Path(own.location).parent == data_dir / "spool"  # inline input: spooled as before
    output = data_dir / "job_outputs" / "abc" / "step-0.png"
    output.parent.mkdir(parents=True)
    shutil.copy(PNG, output)
    for path in (own.location, str(output), str(data_dir / "postgres" / "PG_VERSION")):
        assert_denied(app_error(acts, request(KEY, InputRef(uri=path))), path)
    # ...even under an allowed root, and through a symlink placed in an allowed directory.
    link = tmp_path / "inputs" / "link.png"
    link.parent.mkdir()
    link.symlink_to(output)
    assert_denied(app_error(acts, request(KEY, InputRef(uri=str(link)))), str(link))
    shutil.copy(PNG, tmp_path / "inputs" / "mine.png")
    assert run(acts, request(KEY, InputRef(uri=str(tmp_path / "inputs" / "mine.png")))).units == 1


def test_worker_default_roots_are_the_bundled_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acts = worker_inputs(monkeypatch, Settings(data_dir=tmp_path / "data"))
    assert run(acts, request(KEY, InputRef(uri=str(PNG)))).location == str(PNG)
    elsewhere = tmp_path / "street.png"
    shutil.copy(PNG, elsewhere)
    assert_denied(app_error(acts, request(KEY, InputRef(uri=str(elsewhere)))), str(elsewhere))
    # A path that does not exist is refused the same way: no probing the worker's disk.
    missing = str(tmp_path / "no-such.png")
    assert_denied(app_error(acts, request(KEY, InputRef(uri=missing))), missing)
    traversal = f"{SAMPLES_DIR}/../../README.md"
    assert_denied(app_error(acts, request(KEY, InputRef(uri=traversal))), traversal)
    other = app_error(acts, request(KEY, InputRef(uri="http://example.com/street.png")))
    assert "unsupported input URI scheme 'http'" in other.message  # not a path: its own error


def test_empty_input_roots_allow_no_local_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIANT_INPUT_ROOTS", "")
    acts = worker_inputs(monkeypatch, Settings())
    assert_denied(app_error(acts, request(KEY, InputRef(uri=str(PNG)))), str(PNG))


def test_s3_inputs_only_under_the_tenants_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADIANT_INPUT_S3_PREFIXES", "s3://inputs/{tenant}")  # a folder
    acts = worker_inputs(monkeypatch, Settings(data_dir=tmp_path))
    client, data = s3_client(), PNG.read_bytes()
    acts._s3 = client
    ok = "s3://inputs/acme/a.png"
    with Stubber(client) as stub:  # no S3 call is made for a refused URI
        stub.add_response("head_object", {"ContentLength": len(data)})
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))})
        out = run(acts, request(KEY, InputRef(uri=ok), tenant="acme", backend="sagemaker"))
        assert out.location == ok
        for uri in ("s3://inputs/other/a.png", "s3://inputs/acme-two/a.png", "s3://data/a.png"):
            req = request(KEY, InputRef(uri=uri), tenant="acme", backend="sagemaker")
            assert_denied(app_error(acts, req), uri)
        stub.assert_no_pending_responses()
    # A request without its tenant cannot be checked: refused, not retried, not read.
    err = app_error(acts, request(KEY, InputRef(uri=ok), backend="sagemaker"))
    assert (err.type, err.non_retryable) == (ERR_INPUT_CONFIGURATION, True)
    assert "tenant" in err.message


def test_unset_s3_prefixes_do_not_restrict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    acts = worker_inputs(monkeypatch, Settings(data_dir=tmp_path))
    client, data = s3_client(), PNG.read_bytes()
    acts._s3 = client
    with Stubber(client) as stub:
        stub.add_response("head_object", {"ContentLength": len(data)})
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))})
        uri = "s3://anything/x.png"
        assert run(acts, request(KEY, InputRef(uri=uri), backend="sagemaker")).location == uri


def test_settings_parse_lists_and_refuse_bad_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIANT_INPUT_ROOTS", "/srv/a, /srv/b")
    monkeypatch.setenv("RADIANT_INPUT_S3_PREFIXES", '["s3://b/in/{tenant}/"]')
    settings = Settings()
    assert settings.input_roots == [Path("/srv/a"), Path("/srv/b")]
    assert settings.input_s3_prefixes == ["s3://b/in/{tenant}/"]
    monkeypatch.setenv("RADIANT_INPUT_S3_PREFIXES", "/srv/not-s3")
    with pytest.raises(ValueError, match="not an s3://"):
        Settings()


def test_a_symlink_swapped_in_after_the_check_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check resolved the path; a link swapped in before the open points into the data
    directory: the file actually opened is checked again."""
    allowed, data = tmp_path / "inputs", tmp_path / "data"
    allowed.mkdir()
    data.mkdir()
    secret = data / "other-tenant.png"
    shutil.copy(PNG, secret)
    link = allowed / "street.png"
    link.symlink_to(secret)
    # As if the path resolved to a plain file inside `inputs` and was replaced right after.
    monkeypatch.setattr(reader, "resolve_local_path", lambda uri, **_: Path(uri))
    with pytest.raises(InputValidationError) as exc:
        reader.read_input(
            InputRef(uri=str(link)),
            max_bytes=10_000_000,
            allowed_roots=[allowed],
            denied_roots=[data],
        )
    assert exc.value.type == ERR_INPUT_NOT_FOUND and "access denied" in exc.value.message
    # Without the swap the same read works.
    shutil.copy(PNG, allowed / "mine.png")
    data_read, _ = reader.read_input(
        InputRef(uri=str(allowed / "mine.png")), max_bytes=10_000_000,
        allowed_roots=[allowed], denied_roots=[data],
    )  # fmt: skip
    assert data_read == PNG.read_bytes()
