"""The original system's Python API, as thin façades over rrr (same names, call shapes and
result fields)::

    from rrr.compat import (
        DataPipelineOrchestrator, DataQualityValidator, PerplexitySentimentAnalyzer,
        PolygonWebSocketClient, SupabaseClient,
    )

Each module says where it differs from the original. This package composes the library with
the stream worker (``workers``), like the command line: rrr's own modules never import it.
"""

from rrr.compat.orchestrator import DataPipelineOrchestrator
from rrr.compat.sentiment_analyzer import PerplexitySentimentAnalyzer, StoredSentiment
from rrr.compat.supabase_client import SupabaseClient
from rrr.compat.validator import DataQualityIssue, DataQualityValidator
from rrr.compat.websocket_client import PolygonWebSocketClient

__all__ = [
    "DataPipelineOrchestrator",
    "DataQualityIssue",
    "DataQualityValidator",
    "PerplexitySentimentAnalyzer",
    "PolygonWebSocketClient",
    "StoredSentiment",
    "SupabaseClient",
]
