"""Inputs and settings that used to escape as retryable errors (so `inputs.validate` retried
forever): deeply nested JSON and a worker without a spool for inline inputs."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from activities.inputs.activity import ERR_INPUT_CONFIGURATION, InputActivities
from activities.inputs.formats import json_too_deep
from activities.inputs.limits import MAX_JSON_DEPTH
from tests.fixtures.validation import app_error, request, run
from workers.samples import SAMPLES
from workflows.service_types import ERR_INPUT_NOT_FOUND, ERR_INVALID_INPUT, InputRef


def nested(depth: int, key: str = "problem") -> bytes:
    return b'{"' + key.encode() + b'":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("key", "depth"),
    [
        ("scientific/geometry/solve", 30_000),
        ("reconstruction/render", 40_000),
        ("reconstruction/render", MAX_JSON_DEPTH),
    ],  # fmt: skip
)
def test_deeply_nested_json_is_refused_not_retried(tmp_path: Path, key: str, depth: int) -> None:
    path = tmp_path / "deep.json"
    path.write_bytes(nested(depth))
    err = app_error(InputActivities(spool_dir=tmp_path), request(key, InputRef(uri=str(path))))
    assert (err.type, err.non_retryable) == (ERR_INVALID_INPUT, True)
    assert f"more than {MAX_JSON_DEPTH} levels deep" in err.message


def test_nesting_within_the_limit_and_brackets_in_strings_pass(tmp_path: Path) -> None:
    acts = InputActivities(spool_dir=tmp_path)
    problem = '"a b c = triangle a b c; h = on_tline h b a c ? ' + "[{" * 200 + ' perp a h b c"'
    ok = f'{{"problem": {problem}, "meta": {"[" * 40}{"]" * 40}}}'.encode()
    inline = InputRef(inline_base64=base64.b64encode(ok).decode())
    assert run(acts, request("scientific/geometry/solve", inline)).units == 1


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        ('{"a": "\\\\"}' + "[" * 70, True),  # an escaped backslash closes no string
        (
            '{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
            False,
        ),
        ('"unclosed ' + "[" * 70, False),  # inside a string to the end: the parser refuses it
        ("[" * 65, True),
        ("[" * 64 + "]" * 64, False),
    ],
)
def test_depth_scan_follows_strings_and_escapes(text: str, deep: bool) -> None:
    assert json_too_deep(text) is deep


def test_hostile_json_is_scanned_in_one_pass() -> None:
    """Runs of escaped quotes after an unclosed string: a regex rescans from every quote (hours
    at 1 MiB); one pass classifies it at once."""
    hostile = "[" * 5000 + '"' + '\\"' * 350_000
    assert json_too_deep(hostile)
    assert not json_too_deep('"' + '\\"' * 350_000)


def test_missing_spool_is_a_non_retryable_configuration_error(tmp_path: Path) -> None:
    inline = InputRef(
        inline_base64=base64.b64encode(SAMPLES["perception/detect"].read_bytes()).decode()
    )
    for acts, backend in ((InputActivities(), "local"),
                          (InputActivities(spool_dir=tmp_path), "sagemaker")):  # fmt: skip
        err = app_error(acts, request("perception/detect", inline, backend=backend))
        assert (err.type, err.non_retryable) == (ERR_INPUT_CONFIGURATION, True)
        assert "no spool for inline inputs" in err.message


# ------------------------------------------------------------------ found by a security review
@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("nul", ERR_INVALID_INPUT, "NUL character"),
        ("through-a-file", ERR_INPUT_NOT_FOUND, "Not a directory"),
        ("too-long", ERR_INPUT_NOT_FOUND, "File name too long"),
    ],
)
def test_odd_local_paths_are_refused_not_retried(
    tmp_path: Path, name: str, kind: str, words: str
) -> None:
    (tmp_path / "ok.png").write_bytes(SAMPLES["perception/detect"].read_bytes())
    uri = {
        "nul": f"{tmp_path}/ok\0.png",
        "through-a-file": f"{tmp_path}/ok.png/x",
        "too-long": f"{tmp_path}/{'x' * 300}.png",
    }[name]
    acts = InputActivities(spool_dir=tmp_path, allowed_roots=[tmp_path])
    err = app_error(acts, request("perception/detect", InputRef(uri=uri)))
    assert (err.type, err.non_retryable) == (kind, True) and words in err.message


@pytest.mark.parametrize(
    "key", ["inputs/acme/../bob/a.png", "inputs/acme/./a.png", "inputs//acme/a.png"]
)
def test_s3_keys_with_dot_or_empty_segments_are_refused(key: str) -> None:
    from activities.inputs.errors import InputValidationError
    from activities.inputs.policy import check_s3_uri

    with pytest.raises(InputValidationError, match="'..' path segment"):
        check_s3_uri(f"s3://inbucket/{key}", prefixes=["s3://inbucket/inputs/{tenant}/"],
                     tenant="acme")  # fmt: skip
    check_s3_uri("s3://inbucket/inputs/acme/a..b/c.png", prefixes=[], tenant="acme")


def test_concurrent_spools_of_the_same_bytes_are_never_half_written(tmp_path: Path) -> None:
    """Activities run as threads of one process: two jobs spooling the same bytes at once
    each get a complete file (a temp file named by pid was shared, and replaced half-written)."""
    from concurrent.futures import ThreadPoolExecutor

    from activities.inputs.reader import spool_inline

    data = bytes(range(256)) * 4096  # 1 MiB
    for round_ in range(60):
        spool = tmp_path / f"r{round_}"
        with ThreadPoolExecutor(4) as pool:
            locations = list(pool.map(lambda d: spool_inline(d, spool_dir=spool), [data] * 4))  # noqa: B023
        assert all(Path(loc).read_bytes() == data for loc in locations)
        assert [p.name for p in spool.iterdir()] == [Path(locations[0]).name]  # no temp left


@pytest.mark.parametrize(
    ("raised", "attempt", "retried"),
    [
        (TypeError("bad header"), 1, False),
        (RuntimeError("disk blip"), 1, True),
        (RuntimeError("disk blip"), 3, False),
    ],  # fmt: skip
    ids=["parser-bug", "unexpected-first-try", "unexpected-last-try"],
)
def test_an_unexpected_error_is_not_retried_forever(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    raised: Exception,
    attempt: int,
    retried: bool,
) -> None:
    """A validator tripping over the bytes fails the job at once; anything else after a few
    tries (the activity's retry policy has no attempt cap)."""
    import asyncio
    import dataclasses

    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    import activities.inputs.activity as activity_module

    def boom(*args: object, **kw: object) -> None:
        raise raised

    monkeypatch.setattr(activity_module, "check_input", boom)
    acts = InputActivities(spool_dir=tmp_path)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    req = request("perception/detect", InputRef(uri=str(SAMPLES["perception/detect"])))
    with pytest.raises(Exception) as err:
        asyncio.run(env.run(acts.validate, req))
    if retried:
        assert err.value is raised
    else:
        assert isinstance(err.value, ApplicationError) and err.value.non_retryable
        assert type(raised).__name__ in err.value.message


@pytest.mark.parametrize("path", ["/proc/self/environ", "/dev/zero", "/sys/kernel/uevent_seqnum"])
def test_system_files_are_never_inputs_whatever_the_roots(path: str) -> None:
    """/proc/self/environ holds the worker's provider keys: refused even under a root that
    contains it (a root of / is refused by the settings as well)."""
    from activities.inputs.errors import InputValidationError
    from activities.inputs.policy import check_local_path

    with pytest.raises(InputValidationError, match="access denied"):
        check_local_path(Path(path), path, allowed_roots=[Path("/")])
