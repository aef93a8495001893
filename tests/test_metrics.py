"""The Prometheus endpoint: real HTTP scrapes parsed with prometheus-client's own parser."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_xcnn.errors import EdgeXcnnError
from edge_xcnn.stream.metrics import RunMetrics, Snapshot, SourceCounts


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counts_read_live_and_distributions_observed():
    state = Snapshot(
        sources=[SourceCounts("gate", frames_in=10, dropped=2, reconnects=1), SourceCounts("yard", 5, up=False)],
        stage_seconds={"inference": 0.5, "decode": 0.25},
        stage_frames={"inference": 15, "decode": 15},
        sink_dropped={"mqtt://***@b:1883/t": 3},
    )
    metrics = RunMetrics(lambda: state)
    port = metrics.serve(0, "127.0.0.1")
    try:
        for k in range(8):
            metrics.observe_result("gate", 0.03, now=k * 0.1)
        metrics.observe_batch(2)
        metrics.observe_batch(1)
        got = scrape(port)
        assert got[("edge_xcnn_frames_in_total", (("source", "gate"),))] == 10
        assert got[("edge_xcnn_frames_dropped_total", (("source", "gate"),))] == 2
        assert got[("edge_xcnn_source_reconnects_total", (("source", "gate"),))] == 1
        assert got[("edge_xcnn_source_up", (("source", "yard"),))] == 0
        assert got[("edge_xcnn_frames_out_total", (("source", "gate"),))] == 8
        assert got[("edge_xcnn_fps", (("source", "gate"),))] == pytest.approx(10.0)
        assert got[("edge_xcnn_capture_to_result_seconds_count", (("source", "gate"),))] == 8
        assert got[("edge_xcnn_capture_to_result_seconds_bucket", (("le", "0.025"), ("source", "gate")))] == 0
        assert got[("edge_xcnn_capture_to_result_seconds_bucket", (("le", "0.05"), ("source", "gate")))] == 8
        assert got[("edge_xcnn_inference_batch_size_sum", ())] == 3
        assert got[("edge_xcnn_stage_seconds_total", (("stage", "inference"),))] == 0.5
        assert got[("edge_xcnn_output_dropped_total", (("output", "mqtt://***@b:1883/t"),))] == 3
        state.sources[0].frames_in = 11  # read at scrape time: always what the runner has now
        assert scrape(port)[("edge_xcnn_frames_in_total", (("source", "gate"),))] == 11
    finally:
        metrics.close()


def test_a_port_in_use_is_one_line():
    first = RunMetrics()
    port = first.serve(0, "127.0.0.1")
    try:
        with pytest.raises(EdgeXcnnError, match=f"--metrics-port {port}: cannot listen"):
            RunMetrics().serve(port, "127.0.0.1")
    finally:
        first.close()
