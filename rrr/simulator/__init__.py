"""A local stand-in for Polygon/Massive (WebSocket + REST) and Perplexity, on 127.0.0.1.

``rrr.simulator.server.Simulator`` puts it together; ``rrr simulate`` runs it. The market model
is ``rrr.simulator.market.Market``; what was sent is in ``rrr.simulator.truth``. Nothing is
imported here, so ``rrr.simulator.http`` stays light for the route modules.
"""
