"""Review finding: an `options.box` outside the image passed the plan's shape check and was
refused by the model server only after the model warmed up. The input check (which knows the
image's size) refuses it, before any cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.inputs.activity import InputActivities
from activities.inputs.errors import InputValidationError
from activities.inputs.validate import check_box, plane_size
from tests.fixtures.validation import app_error, request, run
from workers.samples import SAMPLES
from workflows.service_types import ERR_INVALID_INPUT, InputRef

IMAGE = {"width": 160, "height": 120, "mode": "RGB", "format": "PNG"}


@pytest.mark.parametrize(
    "box",
    [
        [0, 0, 160, 120],  # the whole image
        [0, 0, 2, 2],  # the smallest box
        [158, 118, 160, 120],  # the smallest box in the far corner
        [150, 100, 5000, 5000],  # partly outside: clipped to 10 x 20
        [-5, -5, 2, 2],  # negative corners clip to 0 (the plan refuses them anyway)
        [0.0, 0.0, 1.6, 1.6],  # rounds to 2 x 2, as the model server rounds
    ],
)
def test_boxes_covering_two_by_two_pixels_pass(box: list[float]) -> None:
    check_box({"box": box}, IMAGE)


@pytest.mark.parametrize(
    "box",
    [
        [50000, 50000, 60000, 60000],  # entirely outside
        [160, 0, 200, 120],  # just right of the image
        [0, 120, 160, 500],  # just below the image
        [159, 0, 500, 120],  # clipped to 1 pixel wide
        [0, 119, 160, 500],  # clipped to 1 pixel high
        [0, 0, 1, 1],  # inside but 1 x 1
        [0, 0, 1.4, 120],  # rounds to 1 pixel wide
    ],
)
def test_boxes_not_covering_two_by_two_pixels_are_refused(box: list[float]) -> None:
    with pytest.raises(InputValidationError) as exc:
        check_box({"box": box}, IMAGE)
    assert exc.value.type == ERR_INVALID_INPUT
    assert "does not cover at least 2 x 2 pixels of the 160 x 120 image" in exc.value.message


def test_no_box_or_no_plane_is_not_checked() -> None:
    check_box({}, IMAGE)
    volume = {"dims": [64, 64, 32], "voxel_size": [1, 1, 1]}
    assert plane_size(volume) is None
    check_box({"box": [500, 500, 600, 600]}, volume)  # a volume ignores the box
    multi = {"rows": 64, "columns": 64, "frames": 10}
    assert plane_size(multi) is None
    assert plane_size({"rows": 64, "columns": 32, "frames": 1}) == (32, 64)


def test_activity_refuses_a_box_outside_the_image(tmp_path: Path) -> None:
    acts = InputActivities(spool_dir=tmp_path)
    ref = InputRef(uri=str(SAMPLES["perception/segment"]))
    err = app_error(
        acts, request("perception/segment", ref, options={"box": [50000, 50000, 60000, 60000]})
    )
    assert (err.type, err.non_retryable) == (ERR_INVALID_INPUT, True)
    assert "of the 160 x 120 image" in err.message
    ok = run(acts, request("perception/segment", ref, options={"box": [10, 10, 100, 100]}))
    assert ok.details["width"] == 160


def test_activity_refuses_a_box_outside_a_dicom_slice(tmp_path: Path) -> None:
    acts = InputActivities(spool_dir=tmp_path)
    ref = InputRef(uri=str(SAMPLES["medical/segment"]))  # one 64 x 64 slice
    err = app_error(acts, request("medical/segment", ref, options={"box": [64, 0, 80, 64]}))
    assert (err.type, err.non_retryable) == (ERR_INVALID_INPUT, True)
    assert "of the 64 x 64 image" in err.message
    run(acts, request("medical/segment", ref, options={"box": [0, 0, 32, 32]}))
