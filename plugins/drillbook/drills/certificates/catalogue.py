"""Catalogue model of a ``certificates`` drill."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from drillbook.catalogue.common import ConnId, DrillBase, Duration, StrictModel


class Thresholds(StrictModel):
    warn: Duration = 30 * 86400
    critical: Duration = 7 * 86400
    # also warn when less than this fraction of the certificate's own lifetime remains
    lifetime_fraction: float = Field(default=1 / 3, gt=0, lt=1)

    @model_validator(mode="after")
    def _order(self) -> Thresholds:
        if self.critical > self.warn:
            raise ValueError(
                f"critical ({self.critical:.0f}s) must not be longer than warn ({self.warn:.0f}s)"
            )
        return self


class EndpointSpec(StrictModel):
    address: str  # host:port
    sni: str | None = None  # the name to ask for and check; defaults to the host
    starttls: Literal["smtp", "postgres"] | None = None
    ca_bundle: str | None = None  # PEM bundle of private CAs to trust for this endpoint
    thresholds: Thresholds | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected 'host:port' like 'example.com:443', got {value!r}")
        return value


class AcmSpec(StrictModel):
    region: str
    connection: ConnId = "aws_default"
    certificate_arns: list[str] = Field(default_factory=list)  # empty: every certificate in the region


class CertificatesDrill(DrillBase):
    kind: Literal["certificates"]
    endpoints: list[EndpointSpec] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)  # PEM files or directories
    acm: AcmSpec | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    timeout: Duration = 10.0  # per endpoint
    concurrency: int = Field(default=100, ge=1, le=2000)
    ca_bundle: str | None = None  # default private CA bundle for every endpoint

    @model_validator(mode="after")
    def _something(self) -> CertificatesDrill:
        if not (self.endpoints or self.files or self.acm):
            raise ValueError("a certificates drill needs at least one of endpoints, files or acm")
        if self.timeout <= 0:
            raise ValueError(
                f"timeout must be longer than 0s (it bounds each endpoint's probe), got {self.timeout:g}s"
            )
        return self
