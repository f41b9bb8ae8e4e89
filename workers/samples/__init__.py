"""Bundled small sample inputs, one per service operation (the demo runs one job per service).

`SAMPLES["perception/detect"]` is the path of a file that operation accepts. The files are
synthetic and small; `make_samples.py` regenerates them deterministically. README.md lists them.
"""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent

SAMPLE_FILES: dict[str, str] = {
    "perception/detect": "street.png",
    "perception/segment": "street.png",
    "perception/classify": "park.jpg",
    "perception/analyze": "street.png",
    "scientific/protein/embed": "ubiquitin.fasta",
    "scientific/protein/fold": "ubiquitin.fasta",
    "scientific/geometry/solve": "orthocenter.json",
    "medical/segment": "ct_slice.dcm",
    "medical/segment/3d": "ct_volume.nii.gz",
    "medical/transcribe": "dictation.wav",
    "geospatial/classify": "flood_scene.tif",
    "geospatial/detect/floods": "flood_scene.tif",
    "geospatial/change": "change_pair.tif",
    "reconstruction/nerf": "orbit.mp4",
    "reconstruction/gaussian": "orbit.mp4",
    "reconstruction/render": "render_scene.json",
}

SAMPLES: dict[str, Path] = {key: SAMPLES_DIR / name for key, name in SAMPLE_FILES.items()}

# The content type each sample is (what the input check sniffs from its bytes).
SAMPLE_CONTENT_TYPES: dict[str, str] = {
    "street.png": "image/png",
    "park.jpg": "image/jpeg",
    "ubiquitin.fasta": "text/fasta",
    "orthocenter.json": "application/json",
    "ct_slice.dcm": "application/dicom",
    "ct_volume.nii.gz": "application/nifti",
    "dictation.wav": "audio/wav",
    "flood_scene.tif": "image/geotiff",
    "change_pair.tif": "image/geotiff",
    "orbit.mp4": "video/mp4",
    "render_scene.json": "application/json",
}


def sample_path(service: str, operation: str) -> Path:
    """The bundled sample for `service/operation` (KeyError names the missing key)."""
    return SAMPLES[f"{service}/{operation.strip('/')}"]
