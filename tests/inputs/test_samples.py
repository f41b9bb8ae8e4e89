"""The bundled samples: one per catalog operation, small, reproducible, listed in the README."""

from __future__ import annotations

from models_catalog.catalog import load_catalog
from workers.samples import SAMPLE_CONTENT_TYPES, SAMPLES, SAMPLES_DIR, make_samples


def test_one_sample_per_operation() -> None:
    keys = {f"{svc.id}/{op.id}" for svc, op in load_catalog().operations()}
    assert set(SAMPLES) == keys
    assert all(path.is_file() for path in SAMPLES.values())


def test_samples_are_small_and_documented() -> None:
    readme = (SAMPLES_DIR / "README.md").read_text()
    for name in SAMPLE_CONTENT_TYPES:
        assert (SAMPLES_DIR / name).stat().st_size < 100 * 1024, name
        assert f"`{name}`" in readme, name
    assert set(make_samples.build()) == set(SAMPLE_CONTENT_TYPES)


def test_generator_is_deterministic() -> None:
    assert make_samples.main(["--check"]) == 0
