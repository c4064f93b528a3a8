"""The bench tooling reads vegeta, ghz and py-spy output correctly.

The fixtures are real outputs of the pinned tools, captured on this project's loopback
services (see fixtures/README.md). Nothing here is timed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.harness import (
    BenchError,
    histogram_totals,
    mean_ms_between,
    parse_ghz_report,
    parse_vegeta_report,
)
from bench.mesh import percentile
from bench.plot import authz_series, mint_series, split_by_transport
from bench.profile import summarise_collapsed
from mint.metrics import MintMetrics

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_vegeta_report_reads_percentiles_in_ms() -> None:
    raw = json.loads(fixture_text("vegeta-report-ok.json"))
    result = parse_vegeta_report(fixture_text("vegeta-report-ok.json"), 20)
    assert result.p50_ms == raw["latencies"]["50th"] / 1e6
    assert result.p95_ms == raw["latencies"]["95th"] / 1e6
    assert result.p99_ms == raw["latencies"]["99th"] / 1e6


def test_vegeta_report_reads_counts_and_rate() -> None:
    raw = json.loads(fixture_text("vegeta-report-ok.json"))
    result = parse_vegeta_report(fixture_text("vegeta-report-ok.json"), 20)
    assert result.requests == raw["requests"]
    assert result.throughput == raw["throughput"]
    assert result.requested_rate == 20
    assert result.error_ratio == 0.0


def test_vegeta_report_counts_failures_as_errors() -> None:
    raw = json.loads(fixture_text("vegeta-report-failures.json"))
    result = parse_vegeta_report(fixture_text("vegeta-report-failures.json"), 300)
    assert result.error_ratio == pytest.approx(1.0 - raw["success"])
    assert result.errors[0] == raw["errors"][0]
    assert len(result.errors) == 5


def test_vegeta_report_rejects_other_json() -> None:
    with pytest.raises(BenchError, match="vegeta report is not valid JSON"):
        parse_vegeta_report('{"requests": 3}', 10)


def test_ghz_report_reads_percentiles_in_ms() -> None:
    raw = json.loads(fixture_text("ghz-report-ok.json"))
    by_percent = {row["percentage"]: row["latency"] for row in raw["latencyDistribution"]}
    result = parse_ghz_report(fixture_text("ghz-report-ok.json"), 0)
    assert result.p50_ms == by_percent[50] / 1e6
    assert result.p95_ms == by_percent[95] / 1e6
    assert result.p99_ms == by_percent[99] / 1e6


def test_ghz_report_throughput_counts_ok_calls() -> None:
    raw = json.loads(fixture_text("ghz-report-ok.json"))
    result = parse_ghz_report(fixture_text("ghz-report-ok.json"), 0)
    assert result.requests == raw["count"]
    assert result.throughput == pytest.approx(raw["count"] / (raw["total"] / 1e9))
    assert result.error_ratio == 0.0


def test_ghz_report_counts_non_ok_statuses_as_errors() -> None:
    raw = json.loads(fixture_text("ghz-report-ok.json"))
    failed = raw["count"] // 4
    raw["statusCodeDistribution"] = {"OK": raw["count"] - failed, "Unavailable": failed}
    raw["errorDistribution"] = {"rpc error: code = Unavailable": failed}
    result = parse_ghz_report(json.dumps(raw), 0)
    assert result.error_ratio == pytest.approx(failed / raw["count"])
    assert result.errors == (f"rpc error: code = Unavailable: {failed}",)


def test_ghz_report_rejects_missing_percentiles() -> None:
    raw = json.loads(fixture_text("ghz-report-ok.json"))
    raw["latencyDistribution"] = [
        row for row in raw["latencyDistribution"] if row["percentage"] != 99
    ]
    with pytest.raises(BenchError, match="no 50th, 95th and 99th"):
        parse_ghz_report(json.dumps(raw), 0)


def test_ghz_report_rejects_text_output() -> None:
    with pytest.raises(BenchError, match="ghz report is not valid JSON"):
        parse_ghz_report("Summary:\n  Count: 20\n", 0)


def test_summarise_collapsed_counts_each_function_once_per_stack() -> None:
    text = "main (app.py:1);work (app.py:5);work (app.py:9) 3\nmain (app.py:1);idle (app.py:20) 1\n"
    summary = summarise_collapsed(text)
    inclusive = dict((name, share) for name, share in summary["inclusive"])
    assert summary["samples"] == 4
    assert inclusive["work (app.py)"] == 0.75
    assert inclusive["main (app.py)"] == 1.0


def test_summarise_collapsed_reads_leaf_as_self_time() -> None:
    text = "main (app.py:1);work (app.py:5) 3\nmain (app.py:1) 1\n"
    self_time = dict((name, share) for name, share in summarise_collapsed(text)["self"])
    assert self_time["work (app.py)"] == 0.75
    assert self_time["main (app.py)"] == 0.25


def test_summarise_collapsed_reads_py_spy_raw_output() -> None:
    summary = summarise_collapsed(fixture_text("py-spy-raw.txt"))
    lines = fixture_text("py-spy-raw.txt").splitlines()
    assert summary["samples"] == sum(int(line.rsplit(" ", 1)[1]) for line in lines)
    assert summary["inclusive"][0][1] == 1.0


def test_summarise_collapsed_ignores_lines_without_count() -> None:
    assert summarise_collapsed("not a stack\n\n")["samples"] == 0


def test_authz_series_keeps_fixed_rates_only() -> None:
    run = {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0}
    document = {
        "targets": {
            "ztmint": {
                "grpc": [
                    {**run, "requested_rate": 500},
                    {**run, "requested_rate": 100},
                    {**run, "requested_rate": 0},
                ],
                "http": [],
            }
        }
    }
    assert authz_series(document) == {"ztmint grpc": [(100, 1.0, 2.0, 3.0), (500, 1.0, 2.0, 3.0)]}


def test_split_by_transport_groups_targets() -> None:
    points = [(100.0, 1.0, 2.0, 3.0)]
    panels = split_by_transport({"a grpc": points, "a http": points, "b http": points})
    assert panels == {"grpc": {"a": points}, "http": {"a": points, "b": points}}


def test_mint_series_drops_runs_that_all_failed() -> None:
    run = {"p50_ms": 9.0, "p95_ms": 20.0, "p99_ms": 30.0}
    document = {
        "meshes": {
            "3-of-5-attested": {
                "runs": [
                    {**run, "requested_rate": 50, "error_ratio": 0.0},
                    {**run, "requested_rate": 300, "error_ratio": 1.0},
                ]
            },
            "5-of-9-attested": {"error": "did not start"},
        }
    }
    assert mint_series(document) == {"3-of-5-attested": [(50, 9.0, 20.0, 30.0)]}


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.5, 50.0), (0.95, 95.0), (0.99, 99.0), (1.0, 100.0), (0.001, 1.0)],
)
def test_percentile_uses_nearest_rank(fraction: float, expected: float) -> None:
    values = [float(value) for value in range(1, 101)]
    assert percentile(values, fraction) == expected


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile([], 0.99) == 0.0


def mint_metrics_text(observations: dict[str, list[float]]) -> str:
    """Render the mint's own metrics after the given stage observations, in seconds."""
    metrics = MintMetrics()
    for stage, values in observations.items():
        for value in values:
            metrics.stage_seconds.labels(stage).observe(value)
    return metrics.render().decode()


def test_histogram_totals_reads_sum_and_count_per_stage() -> None:
    text = mint_metrics_text({"webauthn": [0.002, 0.004], "signing": [0.03]})
    totals = histogram_totals(text, "ztmint_mint_stage_seconds", "stage")
    assert totals["webauthn"] == pytest.approx((0.006, 2.0))
    assert totals["signing"] == pytest.approx((0.03, 1.0))


def test_mean_ms_between_uses_only_new_observations() -> None:
    before = histogram_totals(
        mint_metrics_text({"kms": [1.0]}), "ztmint_mint_stage_seconds", "stage"
    )
    after = histogram_totals(
        mint_metrics_text({"kms": [1.0, 0.002, 0.004], "audit": [0.01]}),
        "ztmint_mint_stage_seconds",
        "stage",
    )
    means = mean_ms_between(before, after)
    assert means["kms"] == pytest.approx(3.0)
    assert means["audit"] == pytest.approx(10.0)


def test_mean_ms_between_skips_idle_series() -> None:
    totals = histogram_totals(
        mint_metrics_text({"policy": [0.001]}), "ztmint_mint_stage_seconds", "stage"
    )
    assert mean_ms_between(totals, totals) == {}
