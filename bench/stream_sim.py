"""The simulator for ``bench.stream``, in its own process: ``rrr simulate`` plus the load-mode
knob the CLI does not expose, ``--pool-frames``.

Load mode re-sends a pool of pre-encoded frames with fresh times and trade ids; a quote has no
id, so with the default 1,024-frame pool, chunks written in the same millisecond repeat whole
quotes, which the store (rightly) keeps once: ~75 % fewer quote rows than a real feed at 200,000
events/s. A 65,536-frame pool keeps every quote distinct for the end-to-end figures.

    python -m bench.stream_sim --port P [--load-events N --load-rate R --pool-frames K]
        [--rate R] [--events-per-frame E] [--record PATH]
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from rrr.simulator.load import LoadOptions
from rrr.simulator.server import Simulator, SimulatorOptions
from rrr.simulator.ws import FeedOptions

TICKERS = ("X:BTCUSD", "X:ETHUSD")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--load-events", type=int, default=0)
    parser.add_argument("--load-rate", type=float, default=0.0)
    parser.add_argument("--pool-frames", type=int, default=1024)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--events-per-frame", type=int, default=1)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    load = None
    if args.load_events:
        load = LoadOptions(
            args.load_events, args.events_per_frame, args.load_rate, pool_frames=args.pool_frames
        )
    feed = FeedOptions(
        port=args.port,
        accept_any_key=True,
        rate=args.rate,
        events_per_frame=args.events_per_frame,
        load=load,
    )
    options = SimulatorOptions(
        tickers=TICKERS, feed=feed, record_path=args.record, record_in_memory=False
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with Simulator(options) as sim:
        print(f"POLYGON_WS_URL={sim.ws_url}", flush=True)
        done.wait()


if __name__ == "__main__":
    main()
