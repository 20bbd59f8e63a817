"""A small results table written as Markdown, CSV or JSON (same rows, same numbers)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

from l2o.eval.machine import describe


def _format(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.3g}" if (value == 0 or 1e-3 <= abs(value) < 1e5) else f"{value:.2e}"
    return str(value)


@dataclasses.dataclass
class Table:
    """Rows of named values. ``columns`` fixes the column order."""

    columns: list[str]
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @classmethod
    def concat(cls, tables: Iterable["Table"]) -> "Table":
        """One table with every row of ``tables``, in order; its columns are the union of
        theirs, in order of first appearance."""
        tables = list(tables)
        if not tables:
            raise ValueError("no tables to concatenate")
        columns = list(dict.fromkeys(c for t in tables for c in t.columns))
        return cls(columns, [row for t in tables for row in t.rows])

    def add(self, **row: Any) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"unknown column(s) {sorted(unknown)}; columns are {self.columns}")
        self.rows.append(row)

    def to_markdown(self) -> str:
        header = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(_format(r.get(c, "")) for c in self.columns) + " |" for r in self.rows]
        return "\n".join([header, rule, *body])

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def to_json(self) -> str:
        """JSON of the columns, the rows (``inf``/``nan`` written as strings: JSON has no such
        numbers) and the machine writing it (:func:`~l2o.eval.machine.describe`), which is the
        one that measured the rows wherever a script saves what it measured."""
        def clean(value: Any) -> Any:
            if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
                return str(value)
            return value

        return json.dumps(
            {"columns": self.columns, "rows": [{k: clean(v) for k, v in r.items()} for r in self.rows],
             "machine": describe()},
            indent=2,
        )

    def save(self, directory: str | Path, stem: str) -> list[Path]:
        """Write ``stem.md``, ``stem.csv`` and ``stem.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix, text in (("md", self.to_markdown()), ("csv", self.to_csv()), ("json", self.to_json())):
            path = directory / f"{stem}.{suffix}"
            path.write_text(text + ("\n" if not text.endswith("\n") else ""))
            paths.append(path)
        return paths
