"""An export's files: Arrow schemas for the tables' rows, one partition written to a temporary
folder and renamed into place whole, and the manifest, replaced atomically.

Writing to ``<partition>.tmp-<pid>`` and renaming means a reader (or a killed run) never sees
half a day: a partition folder holds either the previous complete write or the new one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from rrr.storage.range_reads import RangeQuery, is_integer, is_json, is_numeric
from rrr.storage.tables import Column

# Rows per part file: a day of one pair's trades rarely reaches it; past it a new part
# starts, so no file outgrows what a reader wants to open at once.
PART_ROWS = 1_000_000
MANIFEST = "_manifest.json"


def arrow_type(column: Column, fmt: str) -> pa.DataType:
    if column.time:
        return pa.timestamp("ms", tz="UTC")
    if is_numeric(column):
        return pa.float64()
    if is_integer(column):
        return pa.int64()
    if column.name == "conditions" and fmt == "parquet":
        return pa.list_(pa.int32())
    return pa.string()  # text, and JSON as its text (CSV has no lists)


def _json_text(value: Any) -> str:
    return orjson.dumps(list(value) if isinstance(value, tuple) else value).decode()


class RowsToArrow:
    """Rows of a range query (field order) -> Arrow tables of one schema, without the
    partition's key column (its value is in the folder name)."""

    def __init__(self, query: RangeQuery, fmt: str) -> None:
        key = query.source.key
        self._kept = [(i, c) for i, c in enumerate(query.columns) if c.name != key]
        self._as_text = {
            i for i, c in self._kept if is_json(c) and arrow_type(c, fmt) == pa.string()
        }
        self.schema = pa.schema([(c.name, arrow_type(c, fmt)) for _, c in self._kept])

    def table(self, rows: list[tuple[Any, ...]]) -> pa.Table:
        columns = list(zip(*rows, strict=True)) if rows else []
        arrays = []
        for (i, _), field in zip(self._kept, self.schema, strict=True):
            values: Sequence[Any] = columns[i] if rows else ()
            if i in self._as_text:
                values = [_json_text(v) for v in values]
            arrays.append(pa.array(values, type=field.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


class PartitionWriter:
    """One partition's part files in a temporary folder until ``commit``."""

    def __init__(self, final: Path, schema: pa.Schema, fmt: str, part_rows: int) -> None:
        self.final = final
        self.temp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(self.temp, ignore_errors=True)  # a killed run's leftovers
        self.temp.mkdir(parents=True)
        self.schema, self.fmt, self.part_rows = schema, fmt, part_rows
        self.files: dict[str, int] = {}
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._writer is None or self.files[self._name] >= self.part_rows:
                self._next_file()
            room = self.part_rows - self.files[self._name]
            piece, table = table.slice(0, room), table.slice(room)
            assert self._writer is not None
            self._writer.write_table(piece)
            self.files[self._name] += piece.num_rows

    def _next_file(self) -> None:
        self._close_file()
        self._name = f"part-{len(self.files)}.{self.fmt}"
        path = self.temp / self._name
        if self.fmt == "parquet":
            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        else:
            self._writer = pa_csv.CSVWriter(path, self.schema)
        self.files[self._name] = 0

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def commit(self) -> dict[str, int]:
        """Put the partition in place (replacing an earlier, incomplete write) and return
        {file: rows}. A day without rows leaves no folder."""
        self._close_file()
        old = self.final.with_name(f"{self.final.name}.old-{os.getpid()}")
        if self.final.exists():
            self.final.rename(old)
        if self.files:
            self.temp.rename(self.final)
        else:
            self.temp.rmdir()
        shutil.rmtree(old, ignore_errors=True)
        return dict(self.files)

    def abandon(self) -> None:
        self._close_file()
        shutil.rmtree(self.temp, ignore_errors=True)


def load_manifest(folder: Path, fmt: str) -> dict[str, Any]:
    """The partitions written before (empty: none). An export folder holds one format."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != fmt:
        raise ValueError(
            f"{folder} holds a {manifest.get('format')} export; export {fmt} to another --out"
        )
    partitions: dict[str, Any] = manifest.get("partitions", {})
    return partitions


def save_manifest(folder: Path, kind: str, fmt: str, partitions: dict[str, Any]) -> None:
    """Rows per file of every partition written, replaced atomically."""
    body = {
        "kind": kind,
        "format": fmt,
        "rows": sum(p["rows"] for p in partitions.values()),
        "partitions": dict(sorted(partitions.items())),
    }
    temp = folder / f"{MANIFEST}.tmp-{os.getpid()}"
    temp.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(temp, folder / MANIFEST)
