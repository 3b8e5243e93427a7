"""The flood benchmark, bounded: tracker_node flooded with 60 Hz images over real DDS (private namespace) for 6 s.

The node runs as `sixdpose run` starts it (its own process, config/nodes.yaml's tracker with the learned detector;
the initialisations in its child process); the frames are a fresh 30 Hz sequence of two tori, sent round and
round with new stamps. The node must survive, answer with bounded latency and no growing memory, and its
/diagnostics must account for (nearly) every frame sent, processed or skipped. The minute-long run with the
issue's targets is `sixdpose bench flood` (docs/tracking.md).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ros2_sixdpose.bench.flood import figures_of, measure
from ros2_sixdpose.config import load_config
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from ros2_sixdpose.nodes.deployment import load_deployment, with_parameters

ROOT = Path(__file__).resolve().parents[1]
TORUS = 8
SEED = 9412  # never used for training, validation or test data
FRAMES = 30
RATE, DURATION = 60.0, 6.0


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    root = tmp_path_factory.mktemp("flood")
    config = load_config(SynthConfig, ROOT / "config/synth.yaml", {
        "scene.objects_per_scene": [2, 2], "scene.max_instances_per_object": 2, "scene.distractors_per_scene": [0, 1]})
    generate_split(root / "data", "test", 1, FRAMES, SEED, config, ROOT / "assets/models", object_ids=[TORUS],
                   sequence=True, progress=False)
    return root


def test_figures_of_a_hand_made_flood():
    """Latency, rate and gaps of four frames 100 ms apart, three answered (ns)."""
    sent = [0, 100_000_000, 200_000_000, 300_000_000]
    answers = {0: 10_000_000, 100_000_000: 130_000_000, 300_000_000: 320_000_000}
    figures = figures_of(sent, answers, sent[0], sent[-1])
    assert figures["frames_answered"] == 3 and figures["answer_hz"] == pytest.approx(10.0)
    assert figures["latency_ms_p50"] == pytest.approx(20.0)
    # answers at 10 and 130 ms, then none until the last image at 300 ms: the longest gap is 170 ms
    assert figures["longest_gap_ms"] == pytest.approx(170.0) and figures["stalls_over_2_periods"] == 0


@pytest.mark.ros
def test_tracker_node_survives_a_flood_with_bounded_latency_and_memory(sequence):
    deployment = with_parameters(load_deployment(ROOT / "config/nodes.yaml"), {
        "objects": [TORUS], "diagnostics_period": 0.5,
        # no retrieved templates and fewer model views than shipped: the node starts in seconds
        "refiner.retrieval_hypotheses": 0, "tracking.region.n_viewpoints": 150})
    figures = measure(deployment, sequence / "data", "test", 0, FRAMES, RATE, DURATION, sequence / "logs",
                      sequence / "flood.png")
    assert figures["crashed"] is None
    summary = {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items() if k != "rss_mb_curve"}
    sent = figures["frames_sent"]
    assert sent == RATE * DURATION
    # Measured (load average 12 on the 2 cores): 170-229 of 360 answered (the worker takes the newest frame when
    # free), latency p99 103-136 ms, RSS growth 7-13 MB, every frame accounted for.
    assert figures["frames_answered"] >= 0.25 * sent, summary
    assert figures["latency_ms_p99"] < 400.0, summary
    assert figures["rss_growth_mb"] < 50.0, summary
    # Every frame that reached the node is counted: processed, skipped by the busy worker, or dropped in DDS.
    assert figures["frames_arrived"] == (figures["frames_received"] + figures["frames_skipped"]
                                         + figures["frames_dropped"])
    assert figures["frames_arrived"] >= 0.95 * sent, summary
    assert figures["frames_received"] >= figures["frames_answered"]
