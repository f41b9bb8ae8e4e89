"""Every validation case of `check_input`, with the message it gives, and the happy path per
format on the bundled samples."""

from __future__ import annotations

import gzip
import struct
from decimal import Decimal

import pytest

from activities.inputs import formats
from activities.inputs.errors import InputValidationError
from activities.inputs.limits import EMBED_LIMITS, FOLD_LIMITS, FastaLimits, audio_minutes
from models_catalog.catalog import load_catalog
from tests.inputs.conftest import check
from workers.samples import SAMPLES
from workers.samples import make_samples as mk
from workflows.service_types import ERR_INPUT_TOO_LARGE, ERR_INVALID_INPUT


def refused(data: bytes, key: str, declared: str | None = None,
            type_: str = ERR_INVALID_INPUT) -> str:  # fmt: skip
    with pytest.raises(InputValidationError) as exc:
        check(data, key, declared)
    assert exc.value.type == type_, exc.value.message
    return exc.value.message


# ----------------------------------------------------------------------------- happy paths


def test_every_operation_accepts_its_bundled_sample() -> None:
    for svc, op in load_catalog().operations():
        key = f"{svc.id}/{op.id}"
        ctype, units, details = check(SAMPLES[key].read_bytes(), key)
        assert ctype in [c if c != "image/tiff" else "image/geotiff" for c in op.content_types]
        assert units > 0, key
        assert details, key


def test_happy_path_details_and_units() -> None:
    ctype, units, d = check(SAMPLES["perception/detect"].read_bytes(), "perception/detect")
    assert (ctype, units, d["width"], d["height"]) == ("image/png", Decimal(1), 160, 120)
    ctype, units, d = check(SAMPLES["perception/classify"].read_bytes(), "perception/classify")
    assert (ctype, d["format"]) == ("image/jpeg", "JPEG")
    ctype, units, d = check(SAMPLES["scientific/protein/fold"].read_bytes(),
                            "scientific/protein/fold")  # fmt: skip
    assert (ctype, units, d["lengths"], d["ids"]) == ("text/fasta", 1, [76], ["1UBQ_A"])
    ctype, units, d = check(SAMPLES["medical/transcribe"].read_bytes(), "medical/transcribe")
    assert (ctype, d["duration_s"], d["sample_rate"], units) == ("audio/wav", 2.0, 16000,
                                                                 Decimal("0.1"))  # fmt: skip
    ctype, units, d = check(SAMPLES["geospatial/classify"].read_bytes(), "geospatial/classify")
    assert (ctype, d["bands"], d["geo"]["epsg"], units) == ("image/geotiff", 6, 32615, 1)
    ctype, units, d = check(SAMPLES["geospatial/change"].read_bytes(), "geospatial/change")
    assert (d["scenes"], units) == (2, Decimal(2))  # each scene of the pair is billed
    ctype, units, d = check(SAMPLES["medical/segment/3d"].read_bytes(), "medical/segment/3d")
    assert (ctype, d["dims"], d["voxel_size"], d["gzipped"]) == (
        "application/nifti", [32, 32, 16], [1.0, 1.0, 2.0], True)  # fmt: skip
    ctype, units, d = check(SAMPLES["medical/segment"].read_bytes(), "medical/segment")
    assert (ctype, d["rows"], d["modality"]) == ("application/dicom", 64, "CT")
    ctype, units, d = check(SAMPLES["reconstruction/nerf"].read_bytes(), "reconstruction/nerf")
    assert (ctype, d["codec"], d["frames"], units) == ("video/mp4", "mjpeg", 12, 1)


def test_uncompressed_nifti_and_single_scene_change() -> None:
    raw = gzip.decompress(SAMPLES["medical/segment/3d"].read_bytes())
    _, units, d = check(raw, "medical/segment/3d")
    assert (d["gzipped"], units) == (False, 1)
    _, units, d = check(SAMPLES["geospatial/classify"].read_bytes(), "geospatial/change")
    assert units == 1  # one scene here; the before scene comes as a second input


def test_declared_aliases_agree() -> None:
    fasta = SAMPLES["scientific/protein/embed"].read_bytes()
    assert check(fasta, "scientific/protein/embed", "text/x-fasta")[0] == "text/fasta"
    assert check(fasta, "scientific/protein/embed", "text/plain; charset=utf-8")[0]
    png = SAMPLES["perception/detect"].read_bytes()
    assert check(png, "perception/detect", "application/octet-stream")[0] == "image/png"
    tif = SAMPLES["geospatial/classify"].read_bytes()
    assert check(tif, "geospatial/classify", "image/tiff")[0] == "image/geotiff"


@pytest.mark.parametrize(
    ("seconds", "minutes"),
    [(0.5, "0.1"), (6.0, "0.1"), (6.01, "0.2"), (59.99, "1.0"), (60.0, "1.0"), (61.0, "1.1"),
     (0.0, "0.1"), (3600.0, "60.0")],
)  # fmt: skip
def test_audio_minutes_round_up_to_a_tenth(seconds: float, minutes: str) -> None:
    assert audio_minutes(seconds) == Decimal(minutes)


# ----------------------------------------------------------------------------- generic refusals


def test_empty_input() -> None:
    assert refused(b"", "perception/detect") == "input is empty (0 bytes)"


def test_unknown_content_type() -> None:
    msg = refused(b"\x00\x01\x02garbage", "perception/detect")
    assert msg.startswith("unrecognised content")
    assert "image/jpeg, image/png" in msg


def test_wrong_content_type_by_magic_bytes() -> None:
    wav = SAMPLES["medical/transcribe"].read_bytes()
    msg = refused(wav, "perception/detect")
    assert msg == "perception/detect accepts image/jpeg, image/png; got audio/wav"


def test_misleading_declared_type_is_refused() -> None:
    wav = SAMPLES["medical/transcribe"].read_bytes()
    msg = refused(wav, "perception/detect", declared="image/png")
    assert msg.startswith("declared content type image/png, but the bytes are audio/wav")
    png = SAMPLES["perception/detect"].read_bytes()
    msg = refused(png, "perception/detect", declared="image/jpeg")
    assert "declared content type image/jpeg, but the bytes are image/png" in msg


def test_declared_type_with_garbage_names_the_missing_signature() -> None:
    msg = refused(b"hello, not an image at all\x00", "perception/detect", declared="image/png")
    assert "no PNG signature" in msg


def test_raw_sequence_without_header_gets_a_hint() -> None:
    msg = refused(b"MQIFVKTLTGKTITLEV\n", "scientific/protein/fold")
    assert "got text/plain" in msg and "'>' header line" in msg


# ----------------------------------------------------------------------------- images


def test_unreadable_image_png_magic_plus_garbage() -> None:
    msg = refused(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "perception/detect")
    assert msg.startswith("image could not be decoded (PNG)")


def test_truncated_png_is_caught_by_decoding_the_pixels() -> None:
    png = SAMPLES["perception/detect"].read_bytes()
    msg = refused(png[: len(png) // 2], "perception/detect")
    assert msg.startswith("image could not be decoded (PNG)")


def test_truncated_jpeg() -> None:
    jpg = SAMPLES["perception/classify"].read_bytes()
    assert refused(jpg[:300], "perception/classify").startswith("image could not be decoded")


def test_decompression_bomb_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "MAX_IMAGE_PIXELS", 100 * 100)
    msg = refused(SAMPLES["perception/detect"].read_bytes(), "perception/detect",
                  type_=ERR_INPUT_TOO_LARGE)  # fmt: skip
    assert "160 x 120 = 19,200 pixels" in msg and "10,000" in msg


# ----------------------------------------------------------------------------- FASTA


def fasta(text: str) -> bytes:
    return text.encode()


def test_fasta_bad_alphabet_names_character_and_position() -> None:
    msg = refused(fasta(">p1 test\nMQIFV\nKTJTG\n"), "scientific/protein/fold")
    assert msg.startswith("record 1 ('p1'): 'J' at residue 8 (line 3, column 3) is not an "
                          "amino-acid code")  # fmt: skip
    assert "X, B, Z, U, O" in msg


def test_fasta_digits_and_stop_codon_in_the_middle() -> None:
    assert "'1' at residue 4" in refused(fasta(">a\nMQI1FV\n"), "scientific/protein/embed")
    msg = refused(fasta(">a\nMQI*FV\n"), "scientific/protein/embed")
    assert "'*' (stop) at residue 4 is allowed only at the end" in msg


def test_fasta_trailing_stop_lowercase_and_ambiguity_codes_are_fine() -> None:
    _, _, d = check(fasta(">a\nmqifvkXBZUO*\n"), "scientific/protein/embed")
    assert d["lengths"] == [11]


def test_fasta_empty_record() -> None:
    msg = refused(fasta(">a\nMQIF\n>b second\n\n>c\nMK\n"), "scientific/protein/embed")
    assert msg == "record 2 ('b') has no residues (empty record)"


def test_fasta_structure_errors() -> None:
    # Through check_input a text that does not start with '>' is not FASTA at all (sniffing).
    assert "got text/plain" in refused(fasta("MQ\n>a\nMK\n"), "scientific/protein/embed")
    assert "before the first '>'" in _fasta_error(b"MQ\n>a\nMK\n", EMBED_LIMITS)
    assert "no records" in _fasta_error(b";only a comment\n\n", EMBED_LIMITS)
    # Old-style ';' comment lines before the first header are allowed.
    assert check(fasta(";comment\n>a\nMK\n"), "scientific/protein/embed")[2]["lengths"] == [2]
    msg = refused(fasta(">\n"), "scientific/protein/embed")
    assert msg == "record 1 has no residues (empty record)"


def test_fasta_too_long_names_the_limit_and_its_source() -> None:
    seq = "A" * 2701
    msg = refused(fasta(f">long\n{seq}\n"), "scientific/protein/fold")
    assert msg == ("record 1 ('long') has 2,701 residues; scientific/protein/fold accepts at most "
                   "2,700 (AlphaFold2's practical limit on one 24-96 GB GPU)")  # fmt: skip
    assert check(fasta(f">ok\n{'A' * 2700}\n"), "scientific/protein/fold")[2]["lengths"] == [2700]
    assert "at most 1,022" in refused(fasta(f">e\n{'A' * 1023}\n"), "scientific/protein/embed")


def test_fasta_record_count_limits() -> None:
    two = fasta(">a\nMK\n>b\nMQ\n")
    assert "takes at most 1 per request" in refused(two, "scientific/protein/fold")
    assert check(two, "scientific/protein/embed")[2]["records"] == 2


def test_fasta_limits_are_parameters() -> None:
    short = FastaLimits(min_length=5, max_length=10, max_records=2, limit_source="test")
    assert "needs at least 5" in _fasta_error(b">a\nMKT\n", short)
    assert formats.validate_fasta(b">a\nMKTAY\n", short)["lengths"] == [5]
    assert (FOLD_LIMITS.max_length, EMBED_LIMITS.max_length) == (2700, 1022)


def _fasta_error(data: bytes, limits: FastaLimits) -> str:
    with pytest.raises(InputValidationError) as exc:
        formats.validate_fasta(data, limits)
    return exc.value.message


# ----------------------------------------------------------------------------- WAV


def test_wav_malformed_header() -> None:
    wav = SAMPLES["medical/transcribe"].read_bytes()
    broken = wav[:20] + b"\0" * 16 + wav[36:]  # fmt chunk zeroed: 0 channels, 0 Hz
    msg = refused(broken, "medical/transcribe")
    assert msg.startswith("WAV")
    cut = wav[:30]  # header cut inside the fmt chunk
    assert refused(cut, "medical/transcribe").startswith("WAV header is malformed")


def test_wav_truncated_data_and_no_samples() -> None:
    wav = SAMPLES["medical/transcribe"].read_bytes()
    msg = refused(wav[:-1000], "medical/transcribe")
    assert msg == ("WAV is truncated: the data chunk declares 64,000 bytes but only 63,000 are "
                   "present")  # fmt: skip
    assert refused(mk.wav_bytes([]), "medical/transcribe") == (
        "WAV has no audio samples (the data chunk is empty)")  # fmt: skip


def test_wav_unsupported_encoding() -> None:
    wav = bytearray(mk.wav_bytes([0] * 100))
    struct.pack_into("<H", wav, 20, 6)  # A-law
    assert "encoding 0x0006 is not supported" in refused(bytes(wav), "medical/transcribe")


def test_wav_duration_gives_audio_minutes() -> None:
    wav = mk.wav_bytes([0] * (16000 * 65))  # 65 s -> 1.1 min (rounded up to a tenth)
    _, units, d = check(wav, "medical/transcribe")
    assert (d["duration_s"], units) == (65.0, Decimal("1.1"))


# ----------------------------------------------------------------------------- GeoTIFF


def test_tiff_without_geo_tags() -> None:
    plain = mk.tiff_bytes([mk.geotiff_scene(16, geo=False)])
    msg = refused(plain, "geospatial/classify")
    assert msg.startswith("TIFF without georeferencing: none of the GeoTIFF tags")
    assert "34735" in msg and "33922" in msg and "33550" in msg
    # Declared image/geotiff for a plain TIFF: still the precise message.
    assert refused(plain, "geospatial/classify", declared="image/geotiff").startswith(
        "TIFF without georeferencing"
    )


def test_geotiff_band_and_scene_limits() -> None:
    page = mk.geotiff_scene(16)
    page["bands"] = page["bands"][:3]
    assert "has 3 band(s)" in refused(mk.tiff_bytes([page]), "geospatial/detect/floods")
    pair = SAMPLES["geospatial/change"].read_bytes()
    assert "takes at most 1 scene(s)" in refused(pair, "geospatial/classify")
    three = mk.tiff_bytes([mk.geotiff_scene(16, seed=s) for s in (1, 2, 3)])
    assert "takes at most 2 scene(s)" in refused(three, "geospatial/change")


def _tiff_tag_value_offset(tif: bytes, tag: int) -> int:
    """Where the (out-of-line) values of `tag` in the first IFD start."""
    ifd = struct.unpack_from("<I", tif, 4)[0]
    for i in range(struct.unpack_from("<H", tif, ifd)[0]):
        t, _typ, _count, value = struct.unpack_from("<HHII", tif, ifd + 2 + 12 * i)
        if t == tag:
            return value
    raise AssertionError(f"tag {tag} not found")


def test_malformed_and_truncated_tiff() -> None:
    tif = SAMPLES["geospatial/classify"].read_bytes()
    broken = bytearray(tif)
    struct.pack_into("<I", broken, 4, len(broken) + 100)  # first IFD beyond the end
    assert "offset" in refused(bytes(broken), "geospatial/classify")
    broken = bytearray(tif)
    struct.pack_into("<I", broken, _tiff_tag_value_offset(tif, 273), len(tif) - 10)
    msg = refused(bytes(broken), "geospatial/classify")
    assert msg.startswith("TIFF is malformed: TIFF page 1: a data block")
    assert "runs past the end of the file" in msg


# ----------------------------------------------------------------------------- NIfTI / DICOM


def nii(dims: tuple[int, ...] = (8, 8, 4), datatype: int = 4) -> bytearray:
    vol = [0] * (dims[0] * dims[1] * (dims[2] if len(dims) > 2 else 1))
    return bytearray(mk.nifti_bytes(vol, dims, (1.0, 1.0, 1.0), datatype))


def test_nifti_bad_header() -> None:
    bad = nii()
    struct.pack_into("<8h", bad, 40, 3, 8, 0, 4, 1, 1, 1, 1)  # a zero dimension
    msg = refused(bytes(bad), "medical/segment/3d")
    assert msg == "NIfTI header is invalid: NIfTI dimensions [8, 0, 4] must all be positive"
    bad = nii()
    struct.pack_into("<8h", bad, 40, 9, 8, 8, 4, 1, 1, 1, 1)
    assert "dim[0] is 9" in refused(bytes(bad), "medical/segment/3d")
    bad = nii()
    struct.pack_into("<hh", bad, 70, 4, 32)  # int16 with bitpix 32
    assert "bitpix 32 does not match datatype int16" in refused(bytes(bad), "medical/segment")
    bad = nii()
    struct.pack_into("<f", bad, 108, 100.0)
    assert "vox_offset 100.0" in refused(bytes(bad), "medical/segment")


def test_nifti_wrong_magic_and_declared_nifti() -> None:
    bad = nii()
    bad[344:348] = b"xxxx"
    msg = refused(bytes(bad), "medical/segment", declared="application/nifti")
    assert msg.startswith("NIfTI header is invalid: NIfTI magic at byte 344")
    pair = nii()
    pair[344:348] = b"ni1\0"
    assert "two-file NIfTI" in refused(bytes(pair), "medical/segment")


def test_nifti_truncated_voxels_and_2d_for_3d() -> None:
    full = bytes(nii())
    msg = refused(full[:-10], "medical/segment/3d")
    assert msg.startswith("NIfTI voxel data is truncated: [8, 8, 4] int16 needs 864 bytes")
    gz = gzip.compress(full[:-10], mtime=0)
    assert "truncated" in refused(gz, "medical/segment/3d")
    flat = bytes(nii((8, 8)))
    assert "needs a 3D volume" in refused(flat, "medical/segment/3d")
    assert check(flat, "medical/segment")[2]["dims"] == [8, 8]


def test_dicom_missing_dicm() -> None:
    dcm = SAMPLES["medical/segment"].read_bytes()
    no_marker = dcm[:128] + b"XXXX" + dcm[132:]
    msg = refused(no_marker, "medical/segment", declared="application/dicom")
    assert msg == "DICOM is invalid: not a DICOM Part 10 file: no 'DICM' marker at offset 128"
    # Undeclared, the same bytes match no format the operation takes.
    assert refused(no_marker, "medical/segment").startswith("unrecognised content")


def test_dicom_truncated_and_single_slice_for_3d() -> None:
    dcm = SAMPLES["medical/segment"].read_bytes()
    assert "truncated" in refused(dcm[:-100], "medical/segment")
    msg = refused(dcm, "medical/segment/3d")
    assert "single 64 x 64 slice" in msg and "needs a volume" in msg


# ----------------------------------------------------------------------------- MP4 / JSON


def test_mp4_without_moov_and_truncated() -> None:
    mp4 = SAMPLES["reconstruction/gaussian"].read_bytes()
    moov = mp4.index(b"moov") - 4
    assert "no 'moov' box" in refused(mp4[:moov], "reconstruction/gaussian")
    assert "truncated" in refused(mp4[:-50], "reconstruction/gaussian")


def test_json_inputs() -> None:
    assert 'needs a non-empty "problem"' in refused(b'{"name": "x"}', "scientific/geometry/solve")
    assert "has no goal" in refused(b'{"problem": "a b c = triangle a b c"}',
                                    "scientific/geometry/solve")  # fmt: skip
    assert "must be an object" in refused(b"[1, 2]", "scientific/geometry/solve")
    assert 'needs a "camera"' in refused(b'{"scene_ref": "s1"}', "reconstruction/render")
    assert 'needs a "scene"' in refused(b'{"camera": {}}', "reconstruction/render")
    msg = refused(b'{"problem": ', "scientific/geometry/solve", declared="application/json")
    assert msg.startswith("declared content type application/json, but the bytes are text/plain")
