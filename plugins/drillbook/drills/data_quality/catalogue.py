"""Catalogue model of a ``data_quality`` drill."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from drillbook.catalogue.common import ConnId, DrillBase


class DataQualityDrill(DrillBase):
    kind: Literal["data_quality"]
    connection: ConnId
    table: str | None = None  # "schema.table"
    query: str | None = None  # alternatively, a SQL query to validate
    suite: str  # name of a suite JSON in include/expectations/ (without .json)
    sample_unexpected: int = Field(default=0, ge=0, le=100)  # unexpected values sampled; 0 = off
    sensitive_columns: list[str] = Field(default_factory=list)  # never sampled

    @model_validator(mode="after")
    def _table_or_query(self) -> DataQualityDrill:
        if (self.table is None) == (self.query is None):
            raise ValueError(
                f"give exactly one of table ('schema.table') or query; got table={self.table!r}, query={self.query!r}"
            )
        return self
