"""AWS connections: what their extras mean, and the boto3 clients they build.

Rules this module enforces:
- the extras honoured are the Amazon provider's names and meaning (README, "Connections"):
  ``region_name``, ``endpoint_url`` (per service: ``service_config.<service>.endpoint_url``),
  ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token`` (keys also as
  login/password), ``profile_name``, ``role_arn`` with ``assume_role_method`` (only
  ``assume_role``), ``assume_role_kwargs`` (e.g. ``ExternalId``) and ``role_session_name``
  (default "drillbook"; ``assume_role_kwargs.RoleSessionName`` wins), ``config_kwargs``
  (botocore Config, merged over drillbook's timeouts and standard retries: a timeout can be
  changed, never removed) and ``verify`` (bool or CA bundle path). Any other AWS extra is
  logged as a warning naming it, and ignored;
- clients are built on demand, each from a session of its own; nothing connects before;
- every secret key, session token and ``assume_role_kwargs`` value is registered with ``redact``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drillbook.errors import ConfigurationError, ResourceError
from drillbook.resources.connections import Connection
from drillbook.safety.redact import register_secret

# the resolver's logger, as it was before this module split from it: README names it for filtering
log = logging.getLogger("drillbook.resources.resolver")


#: the AWS connection extras honoured, with the Amazon provider's names and meaning (README, "Connections")
AWS_EXTRAS = frozenset(
    {
        "region_name",
        "endpoint_url",
        "service_config",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "profile_name",
        "role_arn",
        "assume_role_method",
        "assume_role_kwargs",
        "role_session_name",
        "config_kwargs",
        "verify",
    }
)
#: the botocore Config every client starts from; ``config_kwargs`` merge over it, the timeouts cannot be removed
AWS_CONFIG_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 30,
    "retries": {"mode": "standard", "max_attempts": 3},
}
DEFAULT_ROLE_SESSION_NAME = "drillbook"


@dataclass(frozen=True)
class AwsClientFactory:
    """boto3 clients for one AWS connection; built on demand, each from a session of its own.

    With ``role_arn`` the session's credentials are STS ``AssumeRole`` credentials obtained with the
    connection's own identity (keys, ``profile_name`` or boto's default chain) and refreshed by
    botocore before they expire (``RefreshableCredentials``), as ``AwsBaseHook`` does.
    """

    conn_id: str | None
    region_name: str | None = None
    endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    profile_name: str | None = None
    role_arn: str | None = None
    role_session_name: str = DEFAULT_ROLE_SESSION_NAME
    assume_role_kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)  # ExternalId
    config_kwargs: Mapping[str, Any] = field(
        default_factory=lambda: copy.deepcopy(AWS_CONFIG_DEFAULTS), hash=False
    )
    verify: bool | str | None = None
    service_endpoints: Mapping[str, str] = field(default_factory=dict, hash=False)

    def endpoint_for(self, service: str) -> str | None:
        """``service_config.<service>.endpoint_url``, else ``endpoint_url`` (the provider's rule)."""
        return self.service_endpoints.get(service, self.endpoint_url)

    def client_kwargs(self, region: str | None = None, service: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "region_name": region or self.region_name,
            "endpoint_url": self.endpoint_for(service) if service else self.endpoint_url,
            "verify": self.verify,
        }
        if self.aws_access_key_id and self.aws_secret_access_key and not self.role_arn:
            kwargs.update(
                aws_access_key_id=self.aws_access_key_id, aws_secret_access_key=self.aws_secret_access_key
            )
            if self.aws_session_token:
                kwargs["aws_session_token"] = self.aws_session_token
        return {k: v for k, v in kwargs.items() if v is not None}

    def botocore_config(self) -> Any:
        from botocore import UNSIGNED
        from botocore.config import Config

        # a deep copy: botocore rewrites the ``retries`` dict it is given in place (max_attempts becomes
        # total_max_attempts), which through a shallow copy changed the defaults of every later client
        options = copy.deepcopy(dict(self.config_kwargs))
        if options.get("signature_version") == "unsigned":
            options["signature_version"] = UNSIGNED
        try:
            return Config(**options)
        except TypeError as exc:  # an option botocore does not know
            raise ConfigurationError(
                f"AWS connection {self.conn_id!r}: extra 'config_kwargs' is not a botocore Config: {exc}"
            ) from None

    def session(self) -> Any:
        """The boto3 session: the connection's identity, or the role it assumes."""
        import boto3

        from drillbook.resources.boundary import AWS, map_exceptions

        base: dict[str, Any] = {"region_name": self.region_name, "profile_name": self.profile_name}
        if self.aws_access_key_id and self.aws_secret_access_key:
            base.update(
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                aws_session_token=self.aws_session_token,
            )
        what = f"AWS connection {self.conn_id!r}" + (
            f": profile {self.profile_name!r}" if self.profile_name else ""
        )
        with map_exceptions(AWS, what=what):
            # a session of our own: boto3's default session caches credentials process-wide
            own = boto3.session.Session(**{k: v for k, v in base.items() if v is not None})
        if not self.role_arn:
            return own
        return self._assumed_session(own)

    def _assumed_session(self, own: Any) -> Any:
        import boto3
        import botocore.session
        from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials

        from drillbook.resources.boundary import AWS, map_exceptions

        # the provider's rule: AssumeRole goes to service_config.sts.endpoint_url, never the global endpoint_url
        sts = own.client(
            "sts",
            config=self.botocore_config(),
            endpoint_url=self.service_endpoints.get("sts"),
            **({"verify": self.verify} if self.verify is not None else {}),
        )
        role_arn, what = self.role_arn, f"AWS connection {self.conn_id!r}: assuming role {self.role_arn!r}"

        def fetch() -> dict[str, Any]:
            with map_exceptions(AWS, what=what):
                answer = sts.assume_role(
                    **{
                        "RoleSessionName": self.role_session_name,
                        **self.assume_role_kwargs,
                        "RoleArn": role_arn,
                    }
                )
            found = answer.get("Credentials") if isinstance(answer, dict) else None
            if not isinstance(found, dict) or not all(
                found.get(k) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
            ):
                raise ResourceError(
                    f"{what}: STS answered without AccessKeyId, SecretAccessKey, SessionToken and Expiration"
                )
            register_secret(found["SecretAccessKey"])
            register_secret(found["SessionToken"])
            expiration = found["Expiration"]
            return {
                "access_key": found["AccessKeyId"],
                "secret_key": found["SecretAccessKey"],
                "token": found["SessionToken"],
                "expiry_time": expiration.isoformat()
                if hasattr(expiration, "isoformat")
                else str(expiration),
            }

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )

        class _Assumed(CredentialProvider):  # type: ignore[misc]
            METHOD = "sts-assume-role"

            def load(self) -> Any:
                return credentials

        core = botocore.session.Session()
        core.register_component("credential_provider", CredentialResolver([_Assumed()]))
        return boto3.session.Session(botocore_session=core, region_name=self.region_name or own.region_name)

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client; without keys, profile or role boto's default chain (instance role, AWS_PROFILE), like AwsBaseHook."""
        from drillbook.resources.boundary import AWS, map_exceptions

        session = self.session()
        config = self.botocore_config()
        with map_exceptions(AWS, what=f"AWS connection {self.conn_id!r}: the {service} client"):
            return session.client(service, config=config, **self.client_kwargs(region, service))


def _aws_mapping(conn_id: str | None, extra: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = extra.get(key)
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"AWS connection {conn_id!r}: extra {key!r} must be a JSON object, found {type(value).__name__}"
        )
    return value


def _aws_config(conn_id: str | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    """``config_kwargs`` over the defaults; a timeout may be changed but not removed (None, 0, negative: an error)."""
    given = copy.deepcopy(_aws_mapping(conn_id, extra, "config_kwargs"))
    merged = {**copy.deepcopy(AWS_CONFIG_DEFAULTS), **given}
    for key in ("connect_timeout", "read_timeout"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(
                f"AWS connection {conn_id!r}: extra config_kwargs.{key} must be a positive "
                f"number of seconds (drillbook never runs without a timeout), found {value!r}"
            )
    retries = given.get("retries", {})
    if not isinstance(retries, dict):
        raise ConfigurationError(
            f"AWS connection {conn_id!r}: extra config_kwargs.retries must be an object, "
            f"found {type(retries).__name__}"
        )
    merged["retries"] = {**AWS_CONFIG_DEFAULTS["retries"], **retries}
    return merged


def _aws_verify(conn_id: str | None, value: Any) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # a URI query gives strings
        return value.strip().lower() == "true"
    if isinstance(value, str) and value:
        return value  # a CA bundle path
    raise ConfigurationError(
        f"AWS connection {conn_id!r}: extra 'verify' must be true, false or a CA bundle path, found {value!r}"
    )


def aws_factory_of(conn: Connection | None, conn_id: str | None) -> AwsClientFactory:
    """The AWS factory a connection describes (None: boto's default credential chain)."""
    if conn is None:
        return AwsClientFactory(conn_id=conn_id)
    extra = conn.extra or {}
    unknown = sorted(set(extra) - AWS_EXTRAS)
    if unknown:
        log.warning(
            "AWS connection %r: extras %s are not honoured by drillbook and are ignored (honoured: %s)",
            conn_id,
            ", ".join(unknown),
            ", ".join(sorted(AWS_EXTRAS)),
        )
    secret = conn.password or extra.get("aws_secret_access_key")
    token = extra.get("aws_session_token")
    register_secret(secret)
    register_secret(token)
    role_arn = extra.get("role_arn") or None
    method = extra.get("assume_role_method") or "assume_role"
    if role_arn and method != "assume_role":
        raise ConfigurationError(
            f"AWS connection {conn_id!r}: extra assume_role_method {method!r} is not supported "
            f"by drillbook (only 'assume_role'); the role {role_arn!r} would not be assumed"
        )
    assume_kwargs = _aws_mapping(conn_id, extra, "assume_role_kwargs") if role_arn else {}
    for value in assume_kwargs.values():
        if isinstance(value, str):
            register_secret(value)  # ExternalId is a shared secret
    session_name = (
        assume_kwargs.pop("RoleSessionName", None)
        or extra.get("role_session_name")
        or DEFAULT_ROLE_SESSION_NAME
    )
    services = _aws_mapping(conn_id, extra, "service_config")
    return AwsClientFactory(
        conn_id=conn_id,
        region_name=extra.get("region_name") or None,
        endpoint_url=extra.get("endpoint_url") or None,
        aws_access_key_id=conn.login or extra.get("aws_access_key_id") or None,
        aws_secret_access_key=secret or None,
        aws_session_token=token or None,
        profile_name=extra.get("profile_name") or None,
        role_arn=role_arn,
        role_session_name=str(session_name),
        assume_role_kwargs=assume_kwargs,
        config_kwargs=_aws_config(conn_id, extra),
        verify=_aws_verify(conn_id, extra.get("verify")),
        service_endpoints={
            name: str(cfg["endpoint_url"])
            for name, cfg in services.items()
            if isinstance(cfg, dict) and cfg.get("endpoint_url")
        },
    )
