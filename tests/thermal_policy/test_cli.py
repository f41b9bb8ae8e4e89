"""`radiant bench make-trace` / `thermal-policy`: happy path and one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from workers.cli.bench import app
from workers.cli.main import app as root_app

runner = CliRunner()
HEADER = "model_id,arrival_ts,duration_s\n"


def run(*args: str):
    return runner.invoke(app, list(args))


def error_line(result) -> str:
    text = result.stderr.strip()
    assert text.count("\n") == 0, text
    return text


def write(tmp_path, text: str):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return str(path)


def test_make_trace_is_deterministic(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        r = run(
            "make-trace",
            "--family",
            "rare",
            "--days",
            "2",
            "--seed",
            "7",
            "--out",
            str(out),
            "--models",
            "yolov8n,mistral-7b-instruct",
        )
        assert r.exit_code == 0, r.output
    assert a.read_bytes() == b.read_bytes()
    models = {line.split(",")[0] for line in a.read_text().splitlines()[1:]}
    assert models <= {"yolov8n", "mistral-7b-instruct"}


def test_make_trace_json_summary_and_alias(tmp_path):
    out = tmp_path / "t.csv"
    r = run(
        "make-trace",
        "--family",
        "mixed",
        "--days",
        "1",
        "--out",
        str(out),
        "--models",
        "sam-2",
        "--models",
        "yolov8n",
        "--json",
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["models"] == 2 and set(data["family_of_model"]) == {"sam2", "yolov8n"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "weekly"], "unknown family"),
        (["--days", "0"], "--days must be more than 0 and at most 90 (got 0.0)"),
        (["--days", "inf"], "--days must be more than 0 and at most 90 (got inf)"),
        (["--days", "nan"], "(got nan)"),
        (["--days", "1e9"], "(got 1000000000.0)"),
        (["--models", "no-such-model"], "unknown model"),
        (["--models", "llama-3.3-70b"], "registry entry"),
    ],
)
def test_make_trace_errors(tmp_path, args, message):
    r = run("make-trace", "--out", str(tmp_path / "x.csv"), *args)
    assert r.exit_code == 2
    assert message in error_line(r)


def test_thermal_policy_end_to_end_json(tmp_path):
    out = tmp_path / "t.csv"
    assert (
        run(
            "make-trace",
            "--family",
            "periodic",
            "--days",
            "1",
            "--seed",
            "3",
            "--out",
            str(out),
            "--models",
            "yolov8n,whisper-turbo",
        ).exit_code
        == 0
    )
    r = run("thermal-policy", "--trace", str(out), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert set(data["policies"]) == {"always-warm", "fixed", "automatic"}
    for pol in data["policies"].values():
        assert pol["failed"] == 0
        assert set(pol["added_wait_s"]) == {"p50", "p95", "p99"}
        assert {"billed_gpu_cost", "idle_instance_hours", "cold_start_fraction"} <= set(pol)
    assert set(data["ratios_automatic_vs_fixed"]) == {"cost", "idle_instance_hours", "cold_starts"}


def test_thermal_policy_table_and_warmup_override(tmp_path):
    path = write(tmp_path, HEADER + "sam-2,100,10\nsam2,500,10\n")  # alias accepted
    r = run("thermal-policy", "--trace", path, "--warmup-seconds", "300", "--json")
    assert r.exit_code == 0, r.output
    fixed = json.loads(r.stdout)["policies"]["fixed"]
    assert fixed["cold_starts"] == 1 and fixed["added_wait_s"]["p99"] == 300.0
    r = run("thermal-policy", "--trace", path, "--per-model")
    assert r.exit_code == 0, r.output
    assert "automatic / fixed" not in r.stdout and "auto/fixed" in r.stdout
    assert "sam2" in r.stdout


def test_mounted_under_radiant_bench(tmp_path):
    path = write(tmp_path, HEADER + "yolov8n,100,1\n")
    r = runner.invoke(root_app, ["bench", "thermal-policy", "--trace", path, "--json"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model,ts,dur\nyolov8n,1,2\n", "bad header"),
        (HEADER + "yolov8n,soon,2\n", "line 2: arrival_ts and duration_s must be numbers"),
        (HEADER + "yolov8n,1,2\nnot-a-model,5,1\n", "line 3: unknown model 'not-a-model'"),
        (HEADER + "llama-3.3-70b,1,2\n", "registry entry"),
        (HEADER, "no requests"),
        ("", "empty trace"),
    ],
)
def test_malformed_trace_is_one_line_exit_2(tmp_path, text, message):
    r = run("thermal-policy", "--trace", write(tmp_path, text))
    assert r.exit_code == 2
    assert message in error_line(r)
    assert "Traceback" not in r.output


def test_missing_trace_file(tmp_path):
    r = run("thermal-policy", "--trace", str(tmp_path / "none.csv"))
    assert r.exit_code == 2
    line = error_line(r)
    assert "cannot read the trace file" in line and line.count("none.csv") == 1


def test_bad_options(tmp_path):
    path = write(tmp_path, HEADER + "yolov8n,1,2\n")
    assert run("thermal-policy", "--trace", path, "--warmup-seconds", "-1").exit_code == 2
    assert run("thermal-policy", "--trace", path, "--concurrency", "0").exit_code == 2
    for flag in ("--scale-in-seconds", "--delete-seconds"):
        for bad in ("-1", "nan", "3601"):
            r = run("thermal-policy", "--trace", path, flag, bad)
            assert r.exit_code == 2, (flag, bad, r.output)
            assert f"{flag} must be between 0 and 3600" in error_line(r)


def test_scale_in_and_delete_seconds(tmp_path):
    # two requests a day apart: fixed and automatic delete the endpoint in between (and the
    # last deletion falls after the end of the trace, where billing stops)
    path = write(tmp_path, HEADER + "yolov8n,100,1\nyolov8n,50000,1\n")
    r = run("thermal-policy", "--trace", path, "--warmup-seconds", "60", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert (data["config"]["scale_in_s"], data["config"]["delete_s"]) == (300.0, 120.0)
    assert data["policies"]["fixed"]["teardown_instance_hours"] == round(120 / 3600, 3)
    assert data["policies"]["always-warm"]["teardown_instance_hours"] == 0.0
    args = ("--scale-in-seconds", "0", "--delete-seconds", "0")
    r0 = run("thermal-policy", "--trace", path, "--warmup-seconds", "60", "--json", *args)
    assert r0.exit_code == 0, r0.output
    zero = json.loads(r0.stdout)
    assert (zero["config"]["scale_in_s"], zero["config"]["delete_s"]) == (0.0, 0.0)
    fixed, fixed0 = data["policies"]["fixed"], zero["policies"]["fixed"]
    assert fixed0["teardown_instance_hours"] == 0.0
    assert fixed["billed_instance_hours"] == pytest.approx(
        fixed0["billed_instance_hours"] + 120 / 3600, abs=0.002
    )
    r = run("thermal-policy", "--trace", path, "--delete-seconds", "60")
    assert r.exit_code == 0 and "scale-in/delete" in r.stdout


def test_make_trace_reads_the_configured_catalog(tmp_path, monkeypatch):
    """RADIANT_CATALOG_DIR, as every other command: a broken catalog there is refused."""
    from models_catalog.catalog import DATA_DIR
    from workers.settings import get_settings

    broken = tmp_path / "catalog"
    broken.mkdir()
    for f in DATA_DIR.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    with (broken / "services.yaml").open("a") as fh:
        fh.write("{{{ not yaml\n")
    monkeypatch.setenv("RADIANT_CATALOG_DIR", str(broken))
    get_settings.cache_clear()
    try:
        r = run("make-trace", "--out", str(tmp_path / "x.csv"), "--days", "1")
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 2
    assert f"catalog in {broken} is invalid" in r.stderr and "services.yaml" in r.stderr
