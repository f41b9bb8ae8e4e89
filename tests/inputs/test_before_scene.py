"""geospatial/change's before scene as `options.before_location`: checked like the main input
(location rules, size limit, format), billed as one more unit, and handed back validated."""

from __future__ import annotations

import base64
import io
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from temporalio.exceptions import ApplicationError

from activities.inputs.activity import InputActivities, ValidateRequest
from tests.fixtures.validation import request, run, s3_client
from workers.samples import SAMPLES
from workers.samples.make_samples import geotiff_scene, tiff_bytes
from workflows.service_types import (
    ERR_INPUT_NOT_FOUND,
    ERR_INPUT_TOO_LARGE,
    ERR_INVALID_INPUT,
    InputRef,
)

CHANGE = "geospatial/change"
ONE_SCENE = SAMPLES["geospatial/classify"]  # a one-page 64 x 64 x 6 GeoTIFF
TWO_SCENES = SAMPLES[CHANGE]


def change(before: object = None, main: Path | str = ONE_SCENE, **over: object) -> ValidateRequest:
    options = {} if before is None else {"before_location": before}
    return request(CHANGE, InputRef(uri=str(main)), options=options, **over)


def refused(acts: InputActivities, req: ValidateRequest, kind: str = ERR_INVALID_INPUT) -> str:
    with pytest.raises(ApplicationError) as exc:
        run(acts, req)
    assert (exc.value.type, exc.value.non_retryable) == (kind, True), exc.value.message
    return exc.value.message


@pytest.fixture
def acts(tmp_path: Path) -> InputActivities:
    return InputActivities(spool_dir=tmp_path / "spool", allowed_roots=[SAMPLES[CHANGE].parent,
                           tmp_path / "in"], denied_roots=[tmp_path / "spool"])  # fmt: skip


def test_before_scene_is_validated_billed_and_returned(acts: InputActivities) -> None:
    out = run(acts, change(str(ONE_SCENE)))
    assert out.units == Decimal(2)  # limits.py: the before scene is 1 more unit
    assert out.details["before_location"] == str(ONE_SCENE)
    assert out.details["before"]["size_bytes"] == ONE_SCENE.stat().st_size
    # A two-page GeoTIFF alone still needs nothing more.
    two = run(acts, change(main=TWO_SCENES))
    assert two.units == Decimal(2) and "before_location" not in two.details


def test_before_scene_required_for_a_single_scene(acts: InputActivities) -> None:
    msg = refused(acts, change())
    assert "compares two scenes" in msg and "options.before_location" in msg


def test_before_scene_follows_the_location_rules(acts: InputActivities, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.tif"
    shutil.copy(ONE_SCENE, outside)
    for where in (str(outside), str(tmp_path / "spool" / "inline-x"), "/etc/hostname"):
        assert "access denied" in refused(acts, change(where), ERR_INPUT_NOT_FOUND)
    client, data = s3_client(), ONE_SCENE.read_bytes()
    acts._s3 = client
    with Stubber(client) as stub:  # sagemaker: the main input from S3, the before scene local
        stub.add_response("head_object", {"ContentLength": len(data)})
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))})
        msg = refused(
            acts, change(str(ONE_SCENE), main="s3://scenes/after.tif", backend="sagemaker")
        )
    assert "reads inputs from S3; options.before_location" in msg


def test_before_scene_format_and_size(acts: InputActivities, tmp_path: Path) -> None:
    assert "image/png" in refused(acts, change(str(SAMPLES["perception/detect"])))
    assert "2 scenes" in refused(acts, change(str(TWO_SCENES)))
    small = tmp_path / "in" / "small.tif"
    small.parent.mkdir()
    small.write_bytes(tiff_bytes([geotiff_scene(32, seed=3)]))
    assert "differ" in refused(acts, change(str(small)))
    plain = tmp_path / "in" / "plain.tif"
    plain.write_bytes(tiff_bytes([geotiff_scene(64, seed=3, geo=False)]))
    assert "georeferencing" in refused(acts, change(str(plain)))
    limit = ONE_SCENE.stat().st_size  # the main input fits, the bigger before scene does not
    big = refused(acts, change(str(TWO_SCENES), max_bytes=limit), ERR_INPUT_TOO_LARGE)
    assert "geospatial/change accepts at most" in big
    for bad in ("", 7, {"uri": "x"}):
        assert "path or an s3:// URI" in refused(acts, change(bad))


def test_before_scene_with_two_scenes_or_elsewhere_is_refused(acts: InputActivities) -> None:
    assert "not both" in refused(acts, change(str(ONE_SCENE), main=TWO_SCENES))
    req = request("geospatial/classify", InputRef(uri=str(ONE_SCENE)),
                  options={"before_location": str(ONE_SCENE)})  # fmt: skip
    assert "takes no options.before_location" in refused(acts, req)


def test_s3_before_scene_is_spooled_on_the_local_backend(acts: InputActivities,
                                                         tmp_path: Path) -> None:  # fmt: skip
    client, data = s3_client(), ONE_SCENE.read_bytes()
    acts._s3 = client
    with Stubber(client) as stub:
        stub.add_response("head_object", {"ContentLength": len(data)})
        stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))})
        out = run(acts, change("s3://scenes/before.tif"))
    before = Path(out.details["before_location"])
    assert before.parent == tmp_path / "spool" and before.read_bytes() == data


def test_nothing_is_spooled_when_the_before_scene_fails(acts: InputActivities,
                                                        tmp_path: Path) -> None:  # fmt: skip
    inline = InputRef(inline_base64=base64.b64encode(ONE_SCENE.read_bytes()).decode())
    req = request(CHANGE, inline, options={"before_location": str(SAMPLES["perception/detect"])})
    refused(acts, req)
    assert not (tmp_path / "spool").exists()


def test_requests_recorded_without_options_still_decode() -> None:
    old = {"input": {"uri": "/x"}, "service": "perception", "operation": "detect",
           "content_types": ["image/png"], "unit": "image", "max_bytes": None,
           "backend": "local"}  # fmt: skip
    req = ValidateRequest.model_validate(old)
    assert req.options == {} and req.tenant is None
