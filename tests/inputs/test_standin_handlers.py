"""The model-server reference stand-ins as pure functions, on the bundled samples (no processes).

Ground truth comes from the sample generator: the shapes drawn in street.png, the blob in the CT
samples, the river in the GeoTIFFs, the voiced bursts in dictation.wav.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from activities.backends import standin_handlers as H
from activities.backends.local_model_server import HANDLERS, pick_handler
from activities.inputs import parsers
from workers.samples import SAMPLES
from workers.samples import make_samples as mk


def envelope(path: Path | str, **extra: Any) -> bytes:
    return json.dumps({"input_location": str(path), **extra}).encode()


def call(fn: H.Handler, body: bytes, model: str = "m", ctype: str = "application/json") -> Any:
    out = fn(H.Request(body, ctype, model))
    assert out["stand_in"] is True and out["model"] == model
    json.dumps(out)  # serialisable as the server sends it
    return out


def bad(fn: H.Handler, body: bytes, ctype: str = "application/octet-stream") -> str:
    with pytest.raises(H.BadInput) as exc:
        fn(H.Request(body, ctype, "m"))
    return str(exc.value)


def rle_area(rle: dict[str, Any]) -> int:
    h, w = rle["size"]
    assert sum(rle["counts"]) == h * w
    return sum(rle["counts"][1::2])


def rle_decode(rle: dict[str, Any]) -> list[list[int]]:
    h, w = rle["size"]
    flat: list[int] = []
    for i, n in enumerate(rle["counts"]):
        flat += [i % 2] * n
    return [[flat[x * h + y] for x in range(w)] for y in range(h)]  # column-major


# ----------------------------------------------------------------------------- dispatch, input


def test_every_catalog_specialty_has_a_real_stand_in() -> None:
    for specialty, fn in [("object_detection", H.detection), ("instance_segmentation",
                          H.segmentation), ("image_classification", H.classification),
                          ("speech_to_text", H.speech_to_text), ("protein_embeddings",
                          H.protein_embeddings), ("protein_folding", H.protein_folding),
                          ("geometry_reasoning", H.geometry), ("medical_segmentation",
                          H.medical_segmentation), ("satellite_analysis", H.geospatial),
                          ("3d_reconstruction", H.reconstruction)]:  # fmt: skip
        assert pick_handler("", specialty) == (specialty, fn)
    assert pick_handler("medical_imaging", "unknown")[1] is H.medical_segmentation
    assert pick_handler("nothing", "known")[0] == "generic"
    assert "text_generation" in HANDLERS  # the LLM stand-in registers into the same table


def test_resolve_envelope_base64_raw_and_refusals(tmp_path: Path) -> None:
    png = SAMPLES["perception/detect"].read_bytes()
    inv = H.resolve(H.Request(envelope(SAMPLES["perception/detect"], options={"box": [1, 2, 3, 4]},
                                       task="segment"), "application/json", "m"))  # fmt: skip
    assert (inv.data, inv.content_type, inv.options, inv.task) == (
        png, "image/png", {"box": [1, 2, 3, 4]}, "segment")  # fmt: skip
    b64 = json.dumps({"input_base64": base64.b64encode(png).decode()}).encode()
    assert H.resolve(H.Request(b64, "application/json", "m")).data == png
    raw = H.resolve(H.Request(png, "application/octet-stream", "m"))
    assert (raw.content_type, raw.options) == ("image/png", {})
    render = H.resolve(H.Request(SAMPLES["reconstruction/render"].read_bytes(), "", "m"))
    assert render.request is not None and "camera" in render.request
    assert "reads local paths only" in bad(H.detection, envelope("s3://b/k.png"))
    assert "does not exist" in bad(H.detection, envelope(tmp_path / "nope.png"))
    assert "not valid base64" in bad(H.detection, b'{"input_base64": "!!"}')


# ----------------------------------------------------------------------------- perception

# What street.png draws (make_samples.street_scene): PIL rectangles/ellipses include both ends.
SHAPES = {"sun": [10, 8, 26, 24], "crown": [118, 18, 153, 53], "red car": [18, 88, 61, 109],
          "pedestrian": [68, 58, 81, 97], "blue car": [94, 92, 143, 113],
          "trunk": [131, 53, 139, 81]}  # fmt: skip


def test_detection_finds_the_drawn_shapes() -> None:
    out = call(H.detection, envelope(SAMPLES["perception/detect"]), "yolov8m")
    boxes = [d["box"] for d in out["detections"]]
    assert sorted(boxes) == sorted(SHAPES.values())  # and no sky, road or sidewalk
    colors = {tuple(d["box"]): d["attributes"]["color"] for d in out["detections"]}
    assert colors[tuple(SHAPES["red car"])] == "red"
    assert colors[tuple(SHAPES["blue car"])] == "blue"
    assert all(0 < d["score"] <= 0.99 and d["label"] == "object" for d in out["detections"])
    scores = [d["score"] for d in out["detections"]]
    assert scores == sorted(scores, reverse=True)
    assert out["image_size"] == [160, 120]


def test_detection_scales_boxes_back_from_the_analysis_copy() -> None:
    img = mk.street_scene().resize((640, 480), Image.NEAREST)  # the same shapes, x4
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = call(H.detection, buf.getvalue())
    car = next(d["box"] for d in out["detections"] if d["attributes"]["color"] == "red")
    assert all(abs(a - 4 * b) <= 4 for a, b in zip(car, SHAPES["red car"], strict=True))


def test_detection_refuses_undecodable_images() -> None:
    assert "not a decodable image" in bad(H.detection, b"\x89PNG\r\n\x1a\nnot really")
    assert "not a decodable image" in bad(H.detection, b"img")


def test_segmentation_with_a_prompt_box() -> None:
    body = envelope(SAMPLES["perception/segment"], options={"box": SHAPES["red car"]})
    [mask] = call(H.segmentation, body, "mobilesam")["masks"]
    assert mask["box"] == SHAPES["red car"] and mask["area"] == 43 * 21
    assert rle_area(mask["rle"]) == 43 * 21 and mask["rle"]["size"] == [120, 160]
    grid = rle_decode(mask["rle"])
    assert grid[95][30] == 1 and grid[95][70] == 0 and grid[80][30] == 0
    # A loose box around the pedestrian still segments the pedestrian, not the background.
    loose = envelope(SAMPLES["perception/segment"], options={"box": [60, 52, 90, 104]})
    [ped] = call(H.segmentation, loose)["masks"]
    assert ped["box"] == SHAPES["pedestrian"]
    assert "options.box" in bad(H.segmentation, envelope(SAMPLES["perception/segment"],
                                                         options={"box": [1, 2]}))  # fmt: skip


def test_segmentation_without_box_masks_every_region() -> None:
    out = call(H.segmentation, envelope(SAMPLES["perception/segment"]))
    assert sorted(m["box"] for m in out["masks"]) == sorted(SHAPES.values())
    for m in out["masks"]:
        assert rle_area(m["rle"]) == m["area"]


def test_rle_scales_nearest_neighbour() -> None:
    # A 2 x 2 analysis mask with only (x=1, y=0) set, drawn on 4 x 4: the top-right quarter.
    rle = H.rle_encode([[], [(0, 1)]], 2, 2, 4, 4)
    assert rle_decode(rle) == [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_classification_scores_sum_to_one() -> None:
    park = call(H.classification, envelope(SAMPLES["perception/classify"]), "efficientnetv2-l")
    street = call(H.classification, envelope(SAMPLES["perception/detect"]))
    for out in (park, street):
        assert math.isclose(sum(p["score"] for p in out["predictions"]), 1.0, abs_tol=1e-9)
        assert {p["label"] for p in out["predictions"]} == set(H.CLASS_LABELS)
    assert park["predictions"][0]["label"] == "vegetation"
    assert street["predictions"][0]["label"] != "vegetation"
    night = Image.new("RGB", (64, 48), (10, 10, 20))
    buf = io.BytesIO()
    night.save(buf, format="PNG")
    assert call(H.classification, buf.getvalue())["predictions"][0]["label"] == "night"


# ----------------------------------------------------------------------------- audio


def test_speech_segments_follow_the_voiced_bursts() -> None:
    out = call(H.speech_to_text, envelope(SAMPLES["medical/transcribe"]), "whisper-large-v3")
    assert out["duration_s"] == 2.0 and out["language"] is None
    spans = [(s["start"], s["end"]) for s in out["segments"]]
    assert len(spans) == 2
    for (start, end), (t0, t1) in zip(spans, [(0.2, 0.8), (1.1, 1.8)], strict=True):
        assert abs(start - t0) <= 0.1 and abs(end - t1) <= 0.1
    assert out["text"].startswith("[stand-in transcript:")
    assert all(s["text"].startswith("[stand-in transcript:") for s in out["segments"])


def test_silence_and_headerless_pcm() -> None:
    out = call(H.speech_to_text, b"\0" * 64000, ctype="audio/wav")  # raw 16 kHz s16le
    assert (out["duration_s"], out["segments"]) == (2.0, [])
    assert "no speech detected" in out["text"]
    stereo = mk.wav_bytes(mk.dictation_samples(seconds=1.0, voiced=((0.3, 0.7),)))
    assert len(call(H.speech_to_text, stereo)["segments"]) == 1


def test_speaker_stand_in() -> None:
    out = call(H.speakers, envelope(SAMPLES["medical/transcribe"]), "titanet-large")
    assert out["num_speakers"] == 1 and len(out["segments"]) == 2
    assert len(out["embedding"]) == 64
    assert math.isclose(sum(v * v for v in out["embedding"]), 1.0, rel_tol=1e-3)


# ----------------------------------------------------------------------------- proteins


def test_protein_embedding_is_composition() -> None:
    out = call(H.protein_embeddings, envelope(SAMPLES["scientific/protein/embed"]), "esm2-3b")
    emb = out["embedding"]
    assert (out["dim"], len(emb), out["length"], out["id"]) == (420, 420, 76, "1UBQ_A")
    assert math.isclose(sum(emb[:20]), 1.0, abs_tol=1e-3)  # amino-acid composition
    assert math.isclose(sum(emb[20:]), 1.0, abs_tol=1e-3)  # dipeptide composition
    assert emb[H.AMINO.index("K")] == round(mk.UBIQUITIN.count("K") / 76, 5)
    two = call(H.protein_embeddings, b">a\nMKT\n>b\nWWW\n")
    assert [e["id"] for e in two["embeddings"]] == ["a", "b"]
    assert two["embeddings"][1]["embedding"][H.AMINO.index("W")] == 1.0
    assert "amino-acid" in bad(H.protein_embeddings, b"not a protein!")


def _atoms(pdb: str, name: str) -> list[tuple[float, float, float]]:
    rows = [ln for ln in pdb.splitlines() if ln.startswith("ATOM") and ln[12:16].strip() == name]
    return [(float(ln[30:38]), float(ln[38:46]), float(ln[46:54])) for ln in rows]


def test_folding_builds_an_ideal_alpha_helix() -> None:
    out = call(H.protein_folding, envelope(SAMPLES["scientific/protein/fold"]), "alphafold2")
    pdb, n = out["pdb"], 76
    ca = _atoms(pdb, "CA")
    assert len(ca) == n and len(_atoms(pdb, "O")) == n and "NOT A STRUCTURE PREDICTION" in pdb
    dist = math.dist
    assert all(abs(dist(ca[i], ca[i + 1]) - 3.80) < 0.05 for i in range(n - 1))
    assert all(4.9 < dist(ca[i], ca[i + 3]) < 5.6 for i in range(n - 3))  # i -> i+3 in a helix
    assert all(5.9 < dist(ca[i], ca[i + 4]) < 6.5 for i in range(n - 4))  # i -> i+4 H-bond turn
    rise = dist(ca[0], ca[72]) / 72  # 20 turns of 3.6 residues: along the axis
    assert 1.4 < rise < 1.6
    first = next(ln for ln in pdb.splitlines() if ln.startswith("ATOM"))
    assert first[17:20] == "MET" and first[21] == "A" and float(first[60:66]) == out["plddt"][0]
    assert len(out["plddt"]) == n and all(30 <= p <= 95 for p in out["plddt"])


def test_plddt_follows_disorder_propensity() -> None:
    ordered, disordered = H.plddt_from_propensity("W" * 30), H.plddt_from_propensity("PE" * 15)
    assert min(ordered[5:-5]) > max(disordered[5:-5])
    assert ordered[0] < ordered[15]  # termini are lower


def test_geometry_is_parsed_not_solved() -> None:
    out = call(H.geometry, SAMPLES["scientific/geometry/solve"].read_bytes(), "alphageometry")
    assert out["points"] == ["a", "b", "c", "d"] and out["goal"] == "perp a d b c"
    assert out["constructions"][1]["predicates"] == ["on_tline d b a c", "on_tline d c a b"]
    assert (out["solved"], out["proof"], out["status"]) == (False, None, "not_attempted")
    assert "AlphaGeometry syntax" in bad(H.geometry, b'{"problem": "a b = segment a b"}')


# ----------------------------------------------------------------------------- medical


def test_dicom_slice_segments_the_blob() -> None:
    out = call(H.medical_segmentation, envelope(SAMPLES["medical/segment"]), "medsam")
    [seg] = out["segments"]
    assert seg["centroid"] == [40.0, 26.0]  # the blob's centre in ct_slice.dcm
    assert 100 <= out["threshold"] <= 280  # between tissue (40 HU) and the blob (300 HU)
    assert seg["pixels"] == rle_area(out["mask_rle"])
    assert seg["area_mm2"] == round(seg["pixels"] * 0.8 * 0.8, 2)
    # options: a fixed threshold, and a box that excludes the blob.
    body = envelope(SAMPLES["medical/segment"], options={"threshold": 500})
    assert call(H.medical_segmentation, body)["segments"] == []
    body = envelope(SAMPLES["medical/segment"], options={"box": [30, 16, 50, 36]})
    [boxed] = call(H.medical_segmentation, body)["segments"]  # MedSAM-style box prompt
    assert (boxed["pixels"], boxed["centroid"]) == (seg["pixels"], seg["centroid"])


def test_nifti_volume_mask_is_a_nifti() -> None:
    out = call(H.medical_segmentation, envelope(SAMPLES["medical/segment/3d"]), "nnunet")
    [seg] = out["segments"]
    assert seg["centroid"] == [20.0, 14.0, 8.0]
    assert seg["volume_ml"] == round(seg["voxels"] * 2.0 / 1000, 3)  # 1 x 1 x 2 mm voxels
    hdr, mask = parsers.read_nifti(base64.b64decode(out["mask_nifti_gz_base64"]))
    assert hdr.dims == (32, 32, 16) and hdr.datatype_name == "uint8"
    assert hdr.pixdim == (1.0, 1.0, 2.0) and sum(mask) == seg["voxels"]
    # Uncompressed .nii gives the same answer.
    raw = gzip.decompress(SAMPLES["medical/segment/3d"].read_bytes())
    assert call(H.medical_segmentation, raw)["segments"] == out["segments"]


# ----------------------------------------------------------------------------- geospatial


def test_geospatial_classify_and_floods_match_the_drawn_land_cover() -> None:
    truth = mk.land_cover_map(64, 5.0)
    out = call(H.geospatial, envelope(SAMPLES["geospatial/classify"], task="classify"),
               "prithvi-100m")  # fmt: skip
    got = {p["label"]: p["score"] for p in out["predictions"]}
    names = {"water": "water", "vegetation": "vegetation", "bare_soil": "soil",
             "built_up": "urban"}  # fmt: skip
    for label, drawn in names.items():
        assert got[label] == pytest.approx(truth.count(drawn) / 4096, abs=1e-4)
    assert math.isclose(sum(got.values()), 1.0, abs_tol=1e-9) and out["dominant"] == "vegetation"
    fl = call(H.geospatial, envelope(SAMPLES["geospatial/detect/floods"], task="detect/floods"))
    assert fl["water_pixels"] == truth.count("water") == rle_area(fl["mask_rle"])
    assert fl["water_area_km2"] == round(truth.count("water") * 900 / 1e6, 4)  # 30 m pixels


def test_geospatial_change_between_two_scenes(tmp_path: Path) -> None:
    before, after = mk.land_cover_map(64, 0.0), mk.land_cover_map(64, 6.0)
    changed = sum(a != b for a, b in zip(before, after, strict=True))
    out = call(H.geospatial, envelope(SAMPLES["geospatial/change"]), "prithvi-600m")
    assert out["task"] == "change" and out["changed_pixels"] == changed
    assert set(out["transitions"]) <= {"vegetation->water", "bare_soil->water"}
    assert out["new_water_fraction"] == round(changed / 4096, 4)
    # The same pair as two single-scene files (options.before_location).
    b = tmp_path / "before.tif"
    b.write_bytes(mk.tiff_bytes([mk.geotiff_scene(64, flood=0.0, seed=21)]))
    a = tmp_path / "after.tif"
    a.write_bytes(mk.tiff_bytes([mk.geotiff_scene(64, flood=6.0, seed=22)]))
    two = call(H.geospatial, envelope(a, task="change", options={"before_location": str(b)}))
    assert two["changed_pixels"] == changed


def test_geospatial_needs_nir() -> None:
    page = mk.geotiff_scene(16)
    page["bands"] = page["bands"][:3]
    assert "needs green, red and NIR" in bad(H.geospatial, mk.tiff_bytes([page]))
    assert "reads GeoTIFF" in bad(H.geospatial, SAMPLES["perception/detect"].read_bytes())


# ----------------------------------------------------------------------------- 3D


def test_nerf_visual_hull_obj() -> None:
    out = call(H.reconstruction, envelope(SAMPLES["reconstruction/nerf"]), "nerfstudio")
    assert out["format"] == "model/obj" and out["frames_used"] == 12
    lines = out["obj"].splitlines()
    verts = [ln for ln in lines if ln.startswith("v ")]
    faces = [ln for ln in lines if ln.startswith("f ")]
    assert (len(verts), len(faces)) == (out["num_vertices"], out["num_faces"]) and faces
    assert all(1 <= int(i) <= len(verts) for f in faces for i in f.split()[1:])
    lo, hi = out["bbox"]["min"], out["bbox"]["max"]
    assert all(-1 <= a < b <= 1 for a, b in zip(lo, hi, strict=True))
    assert hi[1] - lo[1] < hi[0] - lo[0]  # the hull is a squat box-like solid, not a cube hull


def test_gaussian_splats_ply() -> None:
    out = call(H.reconstruction, envelope(SAMPLES["reconstruction/gaussian"]),
               "3d-gaussian-splatting")  # fmt: skip
    ply = base64.b64decode(out["ply_base64"])
    head, body = ply.split(b"end_header\n", 1)
    assert b"format binary_little_endian 1.0" in head
    assert f"element vertex {out['num_gaussians']}".encode() in head
    assert len(body) == out["num_gaussians"] * 17 * 4
    x, y, z = struct.unpack_from("<3f", body)
    assert all(-1 <= v <= 1 for v in (x, y, z))


def test_reconstruction_from_one_image_and_unsupported_video() -> None:
    jpg = mk.jpeg_bytes(mk.street_scene())
    assert call(H.reconstruction, jpg, "nerfstudio")["frames_used"] == 1
    mp4 = bytearray(SAMPLES["reconstruction/nerf"].read_bytes())
    at = mp4.index(b"mp4v")
    mp4[at : at + 4] = b"avc1"  # as if H.264: the stand-in cannot decode it
    assert "Motion-JPEG" in bad(H.reconstruction, bytes(mp4))


def test_render_png_views() -> None:
    req = json.loads(SAMPLES["reconstruction/render"].read_bytes())
    out = call(H.reconstruction, json.dumps(req).encode(), "nerfstudio")
    [view] = out["images"]
    img = Image.open(io.BytesIO(base64.b64decode(view["png_base64"])))
    assert img.size == (128, 96) and img.format == "PNG"
    assert img.getpixel((64, 40)) != tuple(req["scene"]["background"])  # the red sphere
    assert img.getpixel((2, 2)) == tuple(req["scene"]["background"])
    path = [dict(req["camera"], position=[6 * math.sin(a), 1.2, 6 * math.cos(a)])
            for a in (0.0, 1.0, 2.0)]  # fmt: skip
    many = call(H.reconstruction, json.dumps({**req, "camera_path": path, "width": 32,
                                              "height": 24}).encode())  # fmt: skip
    assert (many["views_requested"], many["views_rendered"]) == (3, 3)
    ref = json.dumps({"scene_ref": "scene-1", "camera": req["camera"]}).encode()
    assert "scene_ref 'scene-1' cannot be resolved" in bad(H.reconstruction, ref)
