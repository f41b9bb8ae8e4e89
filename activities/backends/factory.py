"""Pick the hosting backend from settings (`RADIANT_BACKEND`: local | sagemaker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from activities.backends.base import HostingBackend

if TYPE_CHECKING:
    from workers.settings import Settings


def create_backend(settings: Settings) -> HostingBackend:
    """`local`: the local stand-in for SageMaker hosting under `data_dir` (warm-up delay from
    RADIANT_LOCAL_WARMUP_SECONDS; its model servers read inputs under `data_dir` and
    `input_roots` only). `sagemaker`: boto3 clients for `aws_region`, credentials from
    the standard AWS chain."""
    if settings.backend == "sagemaker":
        from activities.backends.sagemaker import SageMakerBackend

        return SageMakerBackend.from_settings(
            settings.aws_region,
            settings.sagemaker_execution_role_arn,
            async_output_s3_uri=settings.async_output_s3_uri,
        )
    if settings.backend == "local":
        from activities.backends.local import LocalStandInBackend

        # Its model servers read inputs only from data_dir and the worker's input roots.
        return LocalStandInBackend(settings.data_dir, read_roots=settings.input_roots)
    raise ValueError(f"unknown backend {settings.backend!r} (local | sagemaker)")
