"""`optional_model_problem`: the one rule for `--model`, shared by the plan and the job client."""

from __future__ import annotations

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.operation_options import optional_model_problem

CATALOG = load_catalog()


def problem(key: str, name: str) -> str | None:
    service, operation = key.split("/", 1)
    return optional_model_problem(CATALOG, service, CATALOG.operation(service, operation), name)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("perception/detect", "yolov8x"),
        ("perception/detect", "yolo11x"),  # an alias of yolov11x
        ("perception/detect", "YOLOv8X"),  # ids are case-insensitive
        ("perception/segment", "sam-2"),  # an alias of sam2
        ("scientific/protein/fold", "protenix"),
    ],
)
def test_an_optional_model_of_the_operation(key: str, name: str) -> None:
    assert problem(key, name) is None


@pytest.mark.parametrize(
    ("key", "name", "words"),
    [
        (
            "perception/detect",
            "sam2",
            "sam2 is not an option of perception/detect; options: yolov8x, yolov11x, "
            "grounding-dino",
        ),
        ("perception/detect", "yolov8m", "yolov8m is not an option"),  # required, not optional
        ("scientific/protein/embed", "protenix", "options: none"),
        ("perception/detect", "nosuch", "unknown model 'nosuch'"),
        ("perception/detect", "convnext-xl", "registry entry without a deployable spec"),
    ],
)
def test_not_an_optional_model(key: str, name: str, words: str) -> None:
    found = problem(key, name)
    assert found is not None and words in found


def test_the_job_client_checks_options_as_the_worker_will_see_them():
    """A tuple travels as a JSON list: the client must not refuse what the plan accepts."""
    from workers.job_client import JobClient
    from workers.settings import Settings

    jobs = JobClient(None, Settings())  # type: ignore[arg-type] - no Temporal call made
    jobs.check_request("perception", "segment", {"box": (1, 2, 30, 40)}, [])
    with pytest.raises(ValueError, match="box"):
        jobs.check_request("perception", "segment", {"box": (1, 2)}, [])
