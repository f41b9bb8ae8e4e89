"""Trace input limits: bounded values, csv errors, short echoes, a row cap, true line numbers.

Each bad input must be a one-line `TraceFormatError` (exit 2 from the CLI), never a traceback or
an absurd bill.
"""

from __future__ import annotations

import io
import re

import pytest
from typer.testing import CliRunner

from models_catalog import tracegen
from models_catalog.tracegen import TraceFormatError, TraceRow
from workers.cli import bench
from workers.cli.bench import app

runner = CliRunner()
HEADER = "model_id,arrival_ts,duration_s\n"


def read(text: str) -> list[TraceRow]:
    return tracegen.read_trace_csv(io.StringIO(text))


def cli_error(tmp_path, text: str) -> str:
    """The one-line stderr of `thermal-policy` on ``text`` (asserting exit 2)."""
    path = tmp_path / "trace.csv"
    path.write_text(text)
    r = runner.invoke(app, ["thermal-policy", "--trace", str(path), "--json"])
    assert r.exit_code == 2, (r.exit_code, r.exception, r.output[:500])
    line = r.stderr.strip()
    assert line.count("\n") == 0 and "Traceback" not in r.output
    return line


# 1. arrival_ts / duration_s bounds --------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("m,1e12,1", "line 2: arrival_ts 1e+12 is after the longest trace (90 days = 7776000 s)"),
        ("m,1e30,1", "line 2: arrival_ts 1e+30 is after the longest trace"),
        ("m,1,1e12", "line 2: duration_s 1e+12 is over the limit of 86400 s (1 day)"),
        ("m,1,1e30", "line 2: duration_s 1e+30 is over the limit"),
    ],
)
def test_out_of_range_values_are_refused(row, message):
    with pytest.raises(TraceFormatError, match=re.escape(message)):
        read(HEADER + row + "\n")


def test_bounds_are_inclusive_and_fit_the_longest_generated_trace():
    edge = f"m,{tracegen.MAX_ARRIVAL_S},{tracegen.MAX_DURATION_S}\n"
    assert read(HEADER + edge) == [TraceRow("m", 90 * 86400.0, 86400.0)]
    # make-trace's --days limit is the reader's: its longest trace reads back
    assert bench.MAX_TRACE_DAYS == tracegen.MAX_TRACE_DAYS
    rows = tracegen.generate_trace(["m"], "periodic", days=tracegen.MAX_TRACE_DAYS, seed=1)
    assert read(tracegen.trace_to_csv(rows)) == rows


@pytest.mark.parametrize("row", ["yolov8n,1e12,1", "yolov8n,1e30,1", "yolov8n,1,1e30"])
def test_cli_refuses_out_of_range_values(tmp_path, row):
    # before: a $361M bill for 1e12, a decimal.InvalidOperation traceback for 1e30
    line = cli_error(tmp_path, HEADER + row + "\n")
    assert "line 2: " in line and ("longest trace" in line or "over the limit" in line)


# 2. csv errors, short echoes, row cap -------------------------------------------------------------


def test_oversized_field_is_a_format_error(tmp_path):
    text = HEADER + "yolov8n,1,1\n" + "x" * 200_000 + ",1,1\n"
    with pytest.raises(TraceFormatError, match=r"^line 3: field larger than field limit"):
        read(text)
    assert "line 3: field larger than field limit" in cli_error(tmp_path, text)


def test_echoed_values_are_cut(tmp_path):
    long = "9" * 50_000 + "x"
    with pytest.raises(TraceFormatError) as exc:
        read(HEADER + f"m,{long},1\n")
    assert len(str(exc.value)) < 300 and "(50,001 chars)" in str(exc.value)
    with pytest.raises(TraceFormatError) as exc:
        read("h" * 50_000 + "\nm,1,1\n")
    assert len(str(exc.value)) < 300 and "bad header" in str(exc.value)
    line = cli_error(tmp_path, HEADER + "a" * 100_000 + ",1,1\n")
    assert len(line) < 400 and "line 2: unknown model 'aaaa" in line and "(100,000 chars)" in line


def test_short_unknown_model_keeps_the_catalog_message(tmp_path):
    line = cli_error(tmp_path, HEADER + "yolov8q,1,1\n")
    assert "line 2: unknown model 'yolov8q'" in line and "did you mean" in line


def test_row_cap(monkeypatch):
    monkeypatch.setattr(tracegen, "MAX_TRACE_ROWS", 3)
    assert len(read(HEADER + "m,1,1\n" * 3)) == 3
    with pytest.raises(TraceFormatError, match=r"^line 5: more than 3 requests"):
        read(HEADER + "m,1,1\n" * 4)


# 3. true source line numbers --------------------------------------------------------------------


def test_rows_carry_their_source_line():
    text = HEADER + "\n\nm,1,1\n" + '"a\nb",2,1\n' + "m,3,1\n"
    rows = read(text)
    assert [r.line for r in rows] == [4, 5, 7]  # the quoted field spans lines 5-6
    assert rows == [TraceRow("m", 1, 1), TraceRow("a\nb", 2, 1), TraceRow("m", 3, 1)]
    with pytest.raises(TraceFormatError, match=r"^line 7: arrival_ts and duration_s"):
        read(HEADER + "\n\nm,1,1\n" + '"a\nb",2,1\n' + "m,soon,1\n")


def test_cli_unknown_model_line_counts_blank_lines(tmp_path):
    line = cli_error(tmp_path, HEADER + "\n\nyolov8n,1,1\nnope,2,1\n")
    assert "line 5: unknown model 'nope'" in line


# 4. the mixed deal depends on the whole model set (as the docstring now says) --------------------


def test_mixed_deal_depends_on_the_model_set_but_streams_do_not():
    ids = [f"m{i:02d}" for i in range(33)]
    full = tracegen.assign_families(ids, "mixed", seed=42)
    fewer = tracegen.assign_families(ids[1:], "mixed", seed=42)
    moved = [m for m in ids[1:] if full[m] != fewer[m]]
    assert moved  # removing one model re-deals others
    stays = next(m for m in ids[1:] if full[m] == fewer[m])
    a = tracegen.generate_trace(ids, "mixed", days=1, seed=42)
    b = tracegen.generate_trace(ids[1:], "mixed", days=1, seed=42)
    assert [r for r in a if r.model_id == stays] == [r for r in b if r.model_id == stays]
    doc = " ".join((tracegen.__doc__ or "").split())
    assert "depends on the whole model set" in doc
    assert "so a model's trace does not change when other models are added" not in doc
