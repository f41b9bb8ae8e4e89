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
from workflows.service_types import ERR_INVALID_INPUT, InputRef


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
