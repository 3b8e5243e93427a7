"""The flood benchmark (`sixdpose bench flood`): a node flooded with camera frames over DDS for a minute.

The deployment's node runs as its own process (`NodeProcesses`, as `sixdpose run` starts it); frames of a BOP
scene go out round and round at `rate` Hz, each stamped with its publish time (`nodes.flood`). Figures:
latency (stamp -> receipt of the answer) p50 / p99, answers per second, the longest gap between two answers
(a stall; the issue's bound is 2 periods of the node's own answer rate), the resident memory of the node's
process and its children over time (growth = the last 10 s against the first 10 s of the flood), whether the
process survived, and the node's /diagnostics frame counts against the frames sent.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ros2_sixdpose.nodes.deployment import Deployment

TARGET_P99_MS = 200.0  # issue 13
TARGET_RSS_GROWTH_MB = 50.0
STALL_PERIODS = 2.0  # the longest gap between answers may be this many periods of the node's own rate
RSS_PERIOD_S = 0.5
RSS_WINDOW_S = 10.0  # growth: mean RSS of the last this-many seconds minus that of the first (at most a quarter)


def process_tree_rss(pid: int) -> int:
    """Resident bytes of process `pid` and all its descendants (from /proc; 0 once it has ended)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
        rss = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0")
        total += int(rss) * 1024
    return total


class RssSampler:
    """Samples `process_tree_rss(pid)` every RSS_PERIOD_S in a thread: (monotonic s, bytes) pairs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss_sampler", daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), process_tree_rss(self.pid)))
            self._stop.wait(RSS_PERIOD_S)


def figures_of(sent: list[int], answers: dict[int, int], started: int, ended: int) -> dict[str, Any]:
    """Latency, rate and stalls of a flood: `sent` stamps (= publish times, ns), `answers` stamp -> receipt ns.

    Rate: answers per second between the first image out and the last; stall: the longest gap between
    consecutive answer receipts, from the first answer to the last image out (the start-up before the
    first answer is not a stall).
    """
    answered = sorted(answers[s] for s in sent if s in answers)
    latency = np.array([(answers[s] - s) / 1e6 for s in sent if s in answers])
    seconds = max((ended - started) / 1e9, 1e-9)
    figures: dict[str, Any] = {"frames_sent": len(sent), "frames_answered": len(answered),
                               "answer_hz": len(answered) / seconds}
    if len(latency):
        figures |= {"latency_ms_p50": float(np.percentile(latency, 50)),
                    "latency_ms_p99": float(np.percentile(latency, 99)), "latency_ms_max": float(latency.max())}
    window = [t for t in answered if t <= ended] + [ended]
    gaps = np.diff(window) / 1e6 if len(window) > 1 else np.zeros(0)
    figures["longest_gap_ms"] = float(gaps.max()) if len(gaps) else float("nan")
    figures["gap_ms_p99"] = float(np.percentile(gaps, 99)) if len(gaps) else float("nan")
    period_ms = 1e3 / figures["answer_hz"] if figures["answer_hz"] > 0 else float("inf")
    figures["answer_period_ms"] = period_ms
    figures["stalls_over_2_periods"] = int(np.sum(gaps > STALL_PERIODS * period_ms))
    return figures


def rss_figures(samples: list[tuple[float, int]], started: float) -> dict[str, Any]:
    """Memory over the flood: samples (monotonic s, bytes) from `started` on; growth, peak, and the curve."""
    kept = [(t - started, b / 2**20) for t, b in samples if t >= started and b > 0]
    if not kept:
        return {"rss_mb_curve": []}
    t, mb = np.array(kept).T
    window = min(RSS_WINDOW_S, (t[-1] - t[0]) / 4)  # short floods (tests): a quarter at each end
    first, last = mb[t <= t[0] + window], mb[t >= t[-1] - window]
    return {"rss_mb_start": float(first.mean()), "rss_mb_end": float(last.mean()), "rss_mb_peak": float(mb.max()),
            "rss_growth_mb": float(last.mean() - first.mean()),
            "rss_mb_curve": [[round(float(a), 2), round(float(b), 1)] for a, b in kept]}


def diagnostics_figures(diagnostics: list[tuple[int, dict[str, str]]]) -> dict[str, Any]:
    """The node's last frame counts and stage latencies (its final DiagnosticStatus's 'frames ...' and '... ms ...')."""
    if not diagnostics:
        return {}
    values = diagnostics[-1][1]
    figures: dict[str, Any] = {key.replace(" ", "_"): int(value) for key, value in values.items()
                               if key.startswith("frames ") and value.lstrip("-").isdigit()}
    figures["node_latency_ms"] = {key.replace(" ms", ""): float(value) for key, value in values.items()
                                  if " ms " in key}
    return figures


def plot(figures: dict[str, Any], latencies: list[tuple[float, float]], path: Path) -> None:
    """PNG: the node's RSS over the flood (top) and each answer's latency by its send time (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    curve = np.array(figures["rss_mb_curve"]) if figures["rss_mb_curve"] else np.zeros((0, 2))
    top.plot(curve[:, 0], curve[:, 1])
    top.set_ylabel("RSS of node process tree (MB)")
    top.set_title(f"flood {figures['rate_hz']:.0f} Hz x {figures['duration_s']:.0f} s: "
                  f"RSS growth {figures.get('rss_growth_mb', float('nan')):.1f} MB")
    if latencies:
        t, ms = np.array(latencies).T
        bottom.plot(t, ms, ".", markersize=2)
    bottom.axhline(TARGET_P99_MS, color="r", linestyle="--", label=f"target p99 {TARGET_P99_MS:.0f} ms")
    bottom.set_xlabel("s since the first image")
    bottom.set_ylabel("latency (ms)")
    bottom.set_title(f"p50 {figures.get('latency_ms_p50', float('nan')):.0f} ms, "
                     f"p99 {figures.get('latency_ms_p99', float('nan')):.0f} ms, "
                     f"{figures['frames_answered']} / {figures['frames_sent']} answered")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def measure(deployment: Deployment, data: Path, split: str, scene: int, frames: int, rate: float, duration: float,
            logs: Path, png: Path) -> dict[str, Any]:
    """Flood the deployment's (single) node with `frames` images of a scene; the JSON's content (PNG to `png`)."""
    from tqdm import tqdm

    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.nodes.flood import camera_frames, flood
    from ros2_sixdpose.nodes.processes import NodeExited, NodeProcesses

    if len(deployment.nodes) != 1:
        raise ValueError(f"the flood benchmark floods one node; the deployment has {len(deployment.nodes)}")
    messages = camera_frames(BopSplit(data, split), scene, frames)
    node = deployment.nodes[0]
    with NodeProcesses(deployment, logs) as nodes, RssSampler(nodes.processes[node.name].pid) as sampler:
        with tqdm(total=duration, desc="flood", unit="s", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s") as bar:
            record = flood(messages, node.name, rate, duration, check_node=nodes.check,
                           progress=lambda s: bar.update(min(s, duration) - bar.n))
        try:
            nodes.check()
            crashed = None
        except NodeExited as exc:
            crashed = str(exc)
        # The first image's time on the sampler's (monotonic) clock.
        flood_start = time.monotonic() - (time.time_ns() - record.started) / 1e9
    figures: dict[str, Any] = {"node": node.spec.executable, "rate_hz": rate, "duration_s": duration,
                               "data": str(Path(data) / split), "scene": scene, "distinct_frames": len(messages)}
    figures |= figures_of(record.sent, record.answers, record.started, record.ended)
    figures |= rss_figures(sampler.samples, flood_start)
    figures |= diagnostics_figures(record.diagnostics)
    figures["crashed"] = crashed
    figures |= {"target_p99_ms": TARGET_P99_MS, "target_rss_growth_mb": TARGET_RSS_GROWTH_MB,
                "meets_target": (crashed is None and figures.get("latency_ms_p99", float("inf")) < TARGET_P99_MS
                                 and figures.get("rss_growth_mb", float("inf")) < TARGET_RSS_GROWTH_MB
                                 and figures["stalls_over_2_periods"] == 0),
                "load_average": [round(v, 2) for v in os.getloadavg()]}
    latencies = [((s - record.started) / 1e9, (record.answers[s] - s) / 1e6)
                 for s in record.sent if s in record.answers]
    plot(figures, latencies, png)
    return figures
