"""Reading inputs: local files, S3 (botocore Stubber), inline base64; sizes before bytes."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from activities.inputs.errors import (
    InputCredentialsError,
    InputValidationError,
    TransientInputError,
)
from activities.inputs.reader import READ_CHUNK, read_capped, read_input, spool_inline
from tests.fixtures.validation import client_without_credentials
from workers.samples import SAMPLES
from workflows.service_types import (
    ERR_INPUT_NOT_FOUND,
    ERR_INPUT_TOO_LARGE,
    ERR_INVALID_INPUT,
    INLINE_LIMIT_BYTES,
    InputRef,
)

PNG = SAMPLES["perception/detect"]


def s3_client():  # noqa: ANN201
    return boto3.client("s3", region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")  # fmt: skip


def fails(type_: str, ref: InputRef, **kw: object) -> str:
    kw.setdefault("max_bytes", 20 * 1024 * 1024)
    with pytest.raises(InputValidationError) as exc:
        read_input(ref, **kw)  # type: ignore[arg-type]
    assert exc.value.type == type_, exc.value.message
    return exc.value.message


# ----------------------------------------------------------------------------- local


def test_local_file_absolute_relative_and_file_uri(tmp_path: Path) -> None:
    data, loc = read_input(InputRef(uri=str(PNG)), max_bytes=1 << 20)
    assert data == PNG.read_bytes() and loc == str(PNG)
    data, loc = read_input(InputRef(uri=PNG.name), max_bytes=1 << 20, base_dir=PNG.parent)
    assert loc == str(PNG)
    data, loc = read_input(InputRef(uri=f"file://{PNG}"), max_bytes=1 << 20)
    assert loc == str(PNG)


def test_relative_path_needs_a_base_dir() -> None:
    assert "needs an absolute path" in fails(ERR_INVALID_INPUT, InputRef(uri="street.png"))


def test_missing_local_file(tmp_path: Path) -> None:
    msg = fails(ERR_INPUT_NOT_FOUND, InputRef(uri=str(tmp_path / "nope.png")))
    assert msg == f"input file {str(tmp_path / 'nope.png')!r} does not exist"


def test_directory_and_fifo_are_refused(tmp_path: Path) -> None:
    assert "is a directory, not a file" in fails(ERR_INVALID_INPUT, InputRef(uri=str(tmp_path)))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "not a regular file" in fails(ERR_INVALID_INPUT, InputRef(uri=str(fifo)))


def test_oversize_local_file_refused_from_stat(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as f:  # sparse: 25 MiB without writing them
        f.truncate(25 * 1024 * 1024)
    msg = fails(ERR_INPUT_TOO_LARGE, InputRef(uri=str(big)), what="perception/detect")
    assert msg == "input is 25 MiB; perception/detect accepts at most 20 MiB"


def test_allowed_roots_confine_paths(tmp_path: Path) -> None:
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "a.png").write_bytes(PNG.read_bytes())
    assert read_input(InputRef(uri=str(inside / "a.png")), max_bytes=1 << 20,
                      allowed_roots=[inside])[1] == str(inside / "a.png")  # fmt: skip
    (inside / "escape.png").symlink_to(PNG)  # a symlink pointing out is outside too
    for uri in (str(PNG), str(inside / "escape.png"), str(inside / ".." / ".." / "x")):
        msg = fails(ERR_INVALID_INPUT, InputRef(uri=uri), allowed_roots=[inside])
        assert "outside the allowed input directories" in msg


def test_unsupported_scheme() -> None:
    msg = fails(ERR_INVALID_INPUT, InputRef(uri="https://example.com/a.png"))
    assert "unsupported input URI scheme 'https'" in msg


class RecordingStream(io.BytesIO):
    """A stream that remembers how many bytes each read asked for (read(n) reserves n)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, n: int | None = -1) -> bytes:
        self.asked.append(-1 if n is None else n)
        return super().read(n)


def test_a_small_input_under_a_big_limit_reserves_only_its_size() -> None:
    stream = RecordingStream(b"x" * 1000)
    assert read_capped(stream, (1 << 30) + 1, expected=1000) == b"x" * 1000
    assert stream.asked == [1001, READ_CHUNK]  # not 1 GiB, and one read to see the end


@pytest.mark.parametrize("size", [5000, 3 * READ_CHUNK + 7])
def test_an_input_grown_since_stat_is_read_up_to_the_limit(size: int) -> None:
    data = os.urandom(size)
    assert read_capped(RecordingStream(data), size + 1, expected=10) == data  # all of it
    assert len(read_capped(RecordingStream(data), size - 1, expected=10)) == size - 1  # capped


def test_local_file_grown_past_the_limit_after_stat_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "grows.png"
    path.write_bytes(b"x" * 100)
    real_open = os.open

    def open_after_growth(file: object, flags: int, *args: object, **kw: object) -> int:
        if Path(str(file)) == path and not flags & (os.O_WRONLY | os.O_RDWR):
            with path.open("ab") as f:  # written between the stat and the read
                f.write(b"x" * 4900)
        return real_open(file, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_after_growth)
    msg = fails(ERR_INPUT_TOO_LARGE, InputRef(uri=str(path)), max_bytes=1000)
    assert msg == "input is larger than 1000 bytes; the limit is 1000 bytes"


# ----------------------------------------------------------------------------- S3


def test_s3_head_then_get() -> None:
    client, data = s3_client(), PNG.read_bytes()
    with Stubber(client) as stub:
        stub.add_response("head_object", {"ContentLength": len(data)},
                          {"Bucket": "inputs", "Key": "t1/street.png"})  # fmt: skip
        stub.add_response("get_object",
                          {"Body": StreamingBody(io.BytesIO(data), len(data)),
                           "ContentLength": len(data)},
                          {"Bucket": "inputs", "Key": "t1/street.png"})  # fmt: skip
        got, loc = read_input(InputRef(uri="s3://inputs/t1/street.png"), max_bytes=1 << 20,
                              s3_client=client)  # fmt: skip
        stub.assert_no_pending_responses()
    assert (got, loc) == (data, "s3://inputs/t1/street.png")


def test_s3_object_replaced_by_a_bigger_one_after_head_is_refused() -> None:
    client, data = s3_client(), b"x" * 5000
    with Stubber(client) as stub:
        stub.add_response("head_object", {"ContentLength": 100})
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))})
        msg = fails(ERR_INPUT_TOO_LARGE, InputRef(uri="s3://inputs/swap.png"), s3_client=client,
                    max_bytes=1000)  # fmt: skip
    assert msg == "input is larger than 1000 bytes; the limit is 1000 bytes"


def test_s3_oversize_refused_without_download() -> None:
    client = s3_client()
    with Stubber(client) as stub:  # only HeadObject is stubbed: a GetObject would fail the test
        stub.add_response("head_object", {"ContentLength": 30 * 1024 * 1024},
                          {"Bucket": "inputs", "Key": "big.png"})  # fmt: skip
        msg = fails(ERR_INPUT_TOO_LARGE, InputRef(uri="s3://inputs/big.png"), s3_client=client,
                    what="perception/detect")  # fmt: skip
        stub.assert_no_pending_responses()
    assert msg == "input is 30 MiB; perception/detect accepts at most 20 MiB"


@pytest.mark.parametrize(("code", "status"), [("404", 404), ("NoSuchKey", 404),
                                             ("NoSuchBucket", 404)])  # fmt: skip
def test_s3_missing_object(code: str, status: int) -> None:
    client = s3_client()
    with Stubber(client) as stub:
        stub.add_client_error("head_object", service_error_code=code, http_status_code=status)
        msg = fails(ERR_INPUT_NOT_FOUND, InputRef(uri="s3://inputs/gone.png"), s3_client=client)
    assert msg.startswith("input s3://inputs/gone.png does not exist")


def test_s3_access_denied_is_not_found() -> None:
    client = s3_client()
    with Stubber(client) as stub:
        stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
        msg = fails(ERR_INPUT_NOT_FOUND, InputRef(uri="s3://inputs/x.png"), s3_client=client)
    assert "access denied" in msg


def test_s3_transient_errors_are_retryable() -> None:
    client = s3_client()
    with Stubber(client) as stub:
        stub.add_client_error("head_object", service_error_code="SlowDown", http_status_code=503)
        with pytest.raises(TransientInputError, match="SlowDown"):
            read_input(InputRef(uri="s3://inputs/x.png"), max_bytes=100, s3_client=client)

    class Down:
        def head_object(self, **kw: object) -> None:
            raise EndpointConnectionError(endpoint_url="https://s3.example")

    with pytest.raises(TransientInputError, match="EndpointConnectionError"):
        read_input(InputRef(uri="s3://inputs/x.png"), max_bytes=100, s3_client=Down())


def test_malformed_s3_uri() -> None:
    assert "malformed S3 URI" in fails(ERR_INVALID_INPUT, InputRef(uri="s3://nokey"))


# ----------------------------------------------------------------------------- inline


def test_inline_is_spooled_content_addressed(tmp_path: Path) -> None:
    data = PNG.read_bytes()
    ref = InputRef(inline_base64=base64.b64encode(data).decode())
    got, loc = read_input(ref, max_bytes=1 << 20, spool_dir=tmp_path)
    assert got == data and Path(loc).read_bytes() == data
    assert Path(loc).name.startswith("inline-") and len(Path(loc).name) == 7 + 64
    again = read_input(ref, max_bytes=1 << 20, spool_dir=tmp_path)[1]
    assert again == loc and len(list(tmp_path.iterdir())) == 1


def test_inline_data_uri_and_line_breaks(tmp_path: Path) -> None:
    data = b">a\nMKT\n"
    b64 = base64.encodebytes(data).decode()  # with a trailing newline
    got, _ = read_input(InputRef(inline_base64=f"data:text/x-fasta;base64,{b64}"),
                        max_bytes=100, spool_dir=tmp_path)  # fmt: skip
    assert got == data


def test_inline_without_writing(tmp_path: Path) -> None:
    ref = InputRef(inline_base64=base64.b64encode(b"abc").decode())
    _, loc = read_input(ref, max_bytes=100, spool_dir=tmp_path, write_spool=False)
    assert not Path(loc).exists() and loc.startswith(str(tmp_path))


def test_bad_base64(tmp_path: Path) -> None:
    msg = fails(ERR_INVALID_INPUT, InputRef(inline_base64="not base64!!"), spool_dir=tmp_path)
    assert msg.startswith("inline_base64 is not valid base64")
    assert not list(tmp_path.iterdir())


def test_inline_too_large(tmp_path: Path) -> None:
    blob = base64.b64encode(b"\0" * (INLINE_LIMIT_BYTES + 1)).decode()
    msg = fails(ERR_INPUT_TOO_LARGE, InputRef(inline_base64=blob), spool_dir=tmp_path)
    assert "inline inputs are limited to 256 KiB" in msg and "s3://" in msg
    small_limit = base64.b64encode(b"\0" * 200).decode()
    msg = fails(ERR_INPUT_TOO_LARGE, InputRef(inline_base64=small_limit), spool_dir=tmp_path,
                max_bytes=100)  # fmt: skip
    assert "limited to 100 bytes" in msg
    assert not list(tmp_path.iterdir())


def test_inline_upload_to_s3_for_sagemaker() -> None:
    client, data = s3_client(), b"hello"
    sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    with Stubber(client) as stub:
        expected = {"Bucket": "spool", "Key": f"inline/{sha}", "Body": data,
                    "ContentType": "text/plain"}  # fmt: skip
        stub.add_response("put_object", {}, expected)
        loc = spool_inline(data, spool_s3_uri="s3://spool/inline/", s3_client=client,
                           content_type="text/plain")  # fmt: skip
        stub.assert_no_pending_responses()
    assert loc == f"s3://spool/inline/{sha}"


def test_s3_without_credentials_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker with no AWS credentials: the job must not retry forever at "validating
    input" (the activity makes it final after a few attempts)."""
    client = client_without_credentials(monkeypatch)
    with pytest.raises(InputCredentialsError, match="NoCredentialsError.*credentials"):
        read_input(InputRef(uri="s3://inputs/x.png"), max_bytes=100, s3_client=client)
