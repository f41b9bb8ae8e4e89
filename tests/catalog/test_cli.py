"""`radiant catalog ...` through typer's CliRunner: output, counts and exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models_catalog.catalog import load_catalog
from workers.cli.main import app
from workers.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("RADIANT_CATALOG_DIR", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str):
    return runner.invoke(app, ["catalog", *args])


def test_list_json_counts() -> None:
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {
        "deployable_models",
        "registry_entries",
        "services",
        "operations_count",
        "providers",
        "external_models",
    }
    assert len(data["deployable_models"]) == 33
    assert len(data["registry_entries"]) == 34
    assert len(data["services"]) == 5
    assert data["operations_count"] == 16
    assert sum(len(s["operations"]) for s in data["services"]) == 16
    cat = load_catalog()
    assert len(data["providers"]) == len(cat.providers)
    assert len(data["external_models"]) == len(cat.external_models)
    yolo = next(m for m in data["deployable_models"] if m["id"] == "yolov8m")
    assert yolo["pricing"]["hourly_rate"] == "2.47"  # Decimal as an exact string


def test_list_json_one_kind() -> None:
    data = json.loads(run("list", "--kind", "services", "--json").stdout)
    assert set(data) == {"services", "operations_count"}
    data = json.loads(run("list", "-k", "registry", "--json").stdout)
    assert set(data) == {"registry_entries"}
    assert all(r["deployable"] is False for r in data["registry_entries"])


def test_list_tables() -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    for text in ("Deployable self-hosted models (33)", "Registry entries", "Operations (16)"):
        assert text in result.stdout


def test_list_bad_kind_exits_2() -> None:
    result = run("list", "--kind", "bogus")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("ident", "kind", "expected_id"),
    [
        ("sam-2", "model", "sam2"),
        ("YOLOV8M", "model", "yolov8m"),
        ("llama-3.3-70b", "registry_entry", "llama-3.3-70b"),
        ("perception", "service", "perception"),
        ("scientific/protein/fold", "operation", "protein/fold"),
        ("/medical/segment/3d", "operation", "segment/3d"),
    ],
)
def test_show_json(ident: str, kind: str, expected_id: str) -> None:
    result = run("show", ident, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == kind
    assert data["id"] == expected_id


def test_show_model_details() -> None:
    data = json.loads(run("show", "sam-2", "--json").stdout)
    assert data["resolved_from"] == "sam-2"
    assert data["deployable"] is True
    assert data["instance"]["name"] == "ml.g5.4xlarge"
    assert "perception/segment (optional)" in data["used_by"]
    data = json.loads(run("show", "llama-3.3-70b", "--json").stdout)
    assert data["deployable"] is False
    assert "pricing" not in data


def test_show_provider_and_external_model() -> None:
    cat = load_catalog()
    provider = next(iter(cat.providers.values()))
    data = json.loads(run("show", provider.id, "--json").stdout)
    assert data["kind"] == "provider"
    assert data["models"] == [
        m.id for m in cat.external_models.values() if m.provider_id == provider.id
    ]
    ext = next(m for m in cat.external_models.values() if m.id not in cat.providers)
    data = json.loads(run("show", ext.id, "--json").stdout)
    assert (data["kind"], data["id"]) == ("external_model", ext.id)


def test_show_table() -> None:
    result = run("show", "alphafold2")
    assert result.exit_code == 0, result.output
    assert "ml.g5.12xlarge" in result.stdout


def test_show_unknown_exits_2_with_suggestions() -> None:
    result = run("show", "qwen-72b")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "unknown model 'qwen-72b'; did you mean" in result.stderr
    assert "qwen-72b-instruct" in result.stderr
    assert "Traceback" not in result.output


def test_show_unknown_operation_exits_2() -> None:
    result = run("show", "perception/fold")
    assert result.exit_code == 2
    assert "unknown operation 'fold'" in result.stderr


def test_validate_bundled() -> None:
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert "catalog OK" in result.stdout
    assert "33 deployable models" in result.stdout.replace("\n", " ")
    data = json.loads(run("validate", "--json").stdout)
    assert data["ok"] is True
    assert data["counts"]["operations"] == 16


def test_validate_broken_dir_lists_problems_and_exits_1(data_copy: Path) -> None:
    (data_copy / "instances.yaml").unlink()
    result = run("validate", "--path", str(data_copy))
    assert result.exit_code == 1
    assert "catalog is invalid" in result.stderr
    assert "instances.yaml: missing file" in result.stderr
    data = json.loads(run("validate", "--path", str(data_copy), "--json").stdout)
    assert data["ok"] is False and data["problems"]


def test_validate_missing_dir_exits_2(tmp_path: Path) -> None:
    result = run("validate", "--path", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_settings_catalog_dir_is_honoured(data_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (data_copy / "services.yaml").write_text("services: [\n", encoding="utf-8")
    monkeypatch.setenv("RADIANT_CATALOG_DIR", str(data_copy))
    get_settings.cache_clear()
    result = run("list", "--json")
    assert result.exit_code == 2
    assert "services.yaml: invalid YAML" in result.stderr
    assert run("validate").exit_code == 1


@pytest.mark.parametrize(
    "command",
    [
        ["services", "status"],
        ["services", "enable", "perception"],
        ["thermal", "list"],
        ["thermal", "show", "yolov8n"],
        ["bench", "make-trace", "--out", "trace.csv", "--days", "1"],
    ],
    ids=" ".join,
)
def test_every_command_reading_the_catalog_refuses_a_broken_one_in_a_line(
    data_copy: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """Not a traceback: the problem and its file (exit 2), before any database or Temporal."""
    (data_copy / "services.yaml").write_text("services: [\n", encoding="utf-8")
    monkeypatch.setenv("RADIANT_CATALOG_DIR", str(data_copy))
    monkeypatch.chdir(data_copy.parent)
    get_settings.cache_clear()
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"catalog in {data_copy} is invalid" in result.stderr
    assert "services.yaml: invalid YAML" in result.stderr


# ----------------------------------------------------------------------------- select


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [("--input", "imagee", "unknown input modality 'imagee'"),
     ("--output", "txt", "unknown output modality 'txt'")],
)  # fmt: skip
def test_unknown_modality_is_a_usage_error(flag: str, value: str, needle: str) -> None:
    res = runner.invoke(app, ["select", "--tier", "5", "--no-state", flag, value])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert res.stdout == ""


def test_known_modalities_still_select() -> None:
    res = runner.invoke(
        app, ["select", "--task", "inference", "--tier", "5", "--no-state", "--input", "image"]
    )
    assert res.exit_code == 0, res.output
