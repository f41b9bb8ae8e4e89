"""Input validation before any cost (sniff, size, format checks, billable units).

Modules: `parsers` (stdlib readers for TIFF/NIfTI/DICOM/MP4/WAV, shared with the model-server
stand-ins), `sniff` (content type by magic bytes), `formats` (per-format validators), `limits`
(size limits, sequence limits, unit rules), `reader` (read an InputRef), `validate` (the pure
check), `activity` (the `inputs.validate` Temporal activity).

Kept light on import: the names below load their modules on first use, so a model-server process
importing `activities.inputs.parsers` does not pay for pydantic or Temporal.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "InputValidationError": "activities.inputs.errors",
    "TransientInputError": "activities.inputs.errors",
    "sniff_content_type": "activities.inputs.sniff",
    "read_input": "activities.inputs.reader",
    "spool_inline": "activities.inputs.reader",
    "check_input": "activities.inputs.validate",
    "size_limit": "activities.inputs.limits",
    "audio_minutes": "activities.inputs.limits",
    "FastaLimits": "activities.inputs.limits",
    "validate_image": "activities.inputs.formats",
    "validate_fasta": "activities.inputs.formats",
    "validate_wav": "activities.inputs.formats",
    "validate_tiff": "activities.inputs.formats",
    "validate_nifti": "activities.inputs.formats",
    "validate_dicom": "activities.inputs.formats",
    "validate_mp4": "activities.inputs.formats",
    "ValidateRequest": "activities.inputs.activity",
    "InputActivities": "activities.inputs.activity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'activities.inputs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
