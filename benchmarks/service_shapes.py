"""Which stream-bank shapes a loaded ``a2x serve`` process makes, and when (issue 14 point 4).

On CUDA every new shape costs once: the network's row bucket a CUDA-graph capture and cuDNN's
algorithm timing, a chain step's (streams, frames) group an ADMM graph capture (both keep at
most 8 graphs: later shapes run eagerly). This runs a real server (``bench_service``'s clients)
with the bank's network call, chain step and close recorded: first the server's warm-up
(``--warm`` streams; 0: none), then ``bench_service``'s old warm-up trial (8 streams, 2 s),
then a trial of ``--streams`` streams; it prints how many shapes each phase made first (the
ones a trial makes first are the stalls of its process on a GPU), which of those came from
closes (the streams' tails), and how often each shape was used in the trial.

Usage: python benchmarks/service_shapes.py [--streams 48] [--warm 0,96] [--model small]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_service as bench  # noqa: E402 - the path above


def record(hub: Any, phase: list[str]) -> tuple[dict[Any, tuple[str, str]], dict[Any, int]]:
    """Wrap the hub's bank: first phase and kind (push/close) of every shape, trial uses."""
    bank = hub.bank
    first: dict[Any, tuple[str, str]] = {}
    uses: dict[Any, int] = {}
    closing = [False]
    network, step, close = bank._network, bank._chain.step, bank.close

    def seen(key: Any) -> None:
        first.setdefault(key, (phase[0], "close" if closing[0] else "push"))
        if phase[0] == "trial":
            uses[key] = uses.get(key, 0) + 1

    def network_call(audio: Any, emotion: Any) -> Any:
        seen(("network rows", int(audio.shape[0])))
        return network(audio, emotion)

    def chain_step(rows: Any, slots: Any, starts: Any) -> Any:
        seen(("chain streams x frames", len(slots), int(rows.shape[1])))
        return step(rows, slots, starts)

    def close_call(slots: Any) -> Any:
        closing[0] = True
        try:
            return close(slots)
        finally:
            closing[0] = False

    bank._network, bank._chain.step, bank.close = network_call, chain_step, close_call
    return first, uses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=48)
    parser.add_argument("--warm", default="0,96", help="server warm-up stream counts, a list")
    parser.add_argument("--model", default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seconds", type=float, default=3.0)
    cli = parser.parse_args()
    args = argparse.Namespace(model=cli.model, device=cli.device, precision=cli.precision,
                              threads=1, postprocess="cpu" if cli.device == "cpu" else "",
                              cache=Path("/tmp/a2x_bench_stream"), fps=30.0, chunk=640,
                              client_procs=1, seconds=cli.seconds)  # fmt: skip
    from a2x_core.options import InferenceOptions
    from a2x_core.service.hub import Limits, ModelHub
    from a2x_core.service.server import ServeConfig, ServiceServer

    model = bench.load(args)
    lookahead = int(model.stream_bank(InferenceOptions(fps=30)).lookahead_samples)
    for warm in [int(w) for w in cli.warm.split(",") if w]:
        hub = ModelHub(model, fps=30, limits=Limits(max_streams=cli.streams + 16))
        phase = ["warm-up"]
        first, uses = record(hub, phase)
        server = ServiceServer(hub, ServeConfig(grpc_port=0, http_port=None,
                                                warm_streams=warm)).start()  # fmt: skip
        try:
            phase[0] = "8-stream trial"
            short = argparse.Namespace(**vars(args))
            short.seconds = 2.0
            bench.trial(server.grpc_port, 8, short, 0, lookahead)
            phase[0] = "trial"
            result = bench.trial(server.grpc_port, cli.streams, args, 0, lookahead)
        finally:
            server.stop(grace=2.0)
        new = sorted(k for k, v in first.items() if v[0] == "trial")
        made = {p: sum(v[0] == p for v in first.values())
                for p in ("warm-up", "8-stream trial", "trial")}  # fmt: skip
        print(f"warm-up for {warm} streams: shapes made per phase {made}; made first in the "
              f"{cli.streams}-stream trial: {len(new)} (by closes: "
              f"{sum(first[k][1] == 'close' for k in new)}) {new}")  # fmt: skip
        print(f"  uses in the trial: {sorted(uses.items(), key=lambda kv: -kv[1])}")
        print(f"  server delay p99 while streaming / tails: {result['delay_p99_streaming']:.0f} / "
              f"{result['delay_p99_tail']:.0f} ms", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
