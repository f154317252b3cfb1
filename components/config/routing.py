"""The config of routing: the Gateway's hosts and TLS."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from mlplane.config.scalars import _DNS_NAME, DnsLabel, DnsName
from mlplane.config.blocks import _Model, Resources, resources


def _wildcard_host(value: str) -> str:
    name = value[2:] if value.startswith("*.") else value
    if len(value) > 253 or not _DNS_NAME.match(name):
        raise ValueError("must be a host name or a wildcard such as '*.vision.example.com'")
    return value


WildcardHost = Annotated[str, AfterValidator(_wildcard_host)]


class TlsCertificateConfig(_Model):
    """One more HTTPS listener on the Gateway: a host name pattern and its certificate."""

    hostname: WildcardHost = Field(
        description=(
            "Host name or wildcard the certificate is for, e.g. '*.vision.example.com' for team "
            "vision's models (a wildcard certificate covers one label only)."
        )
    )
    secret: DnsLabel = Field(
        description="Secret of type kubernetes.io/tls in the gateway namespace holding its certificate and key."
    )


class TlsConfig(_Model):
    """HTTPS on the Gateway, with certificates you bring (docs/components/routing.md)."""

    certificate_secret: DnsLabel | None = Field(
        default=None,
        description=(
            "Secret of type kubernetes.io/tls in the gateway namespace ('<name>-gateway') with the "
            "certificate and key for '*.<domain>' (create it yourself, or let cert-manager write it: "
            "a Certificate whose secretName is this name). Set: HTTPS on port 443 and every plain "
            "HTTP request redirected to HTTPS. Required when cluster.mode is 'existing', unless "
            "plain_http is set."
        ),
    )
    certificates: list[TlsCertificateConfig] = Field(
        default_factory=list,
        description="More HTTPS host names with their own certificates (e.g. '*.<team>.<domain>' for team models).",
    )
    plain_http: bool = Field(
        default=False,
        description=(
            "Explicit opt-out: serve plain HTTP only. MLflow basic auth and model API keys then "
            "travel in clear text; meant for the laptop stack, whose kind cluster binds the "
            "Gateway to 127.0.0.1."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> TlsConfig:
        if self.plain_http and (self.certificate_secret or self.certificates):
            raise ValueError("plain_http: true conflicts with certificate_secret/certificates: choose HTTPS or plain HTTP")
        if self.certificates and not self.certificate_secret:
            raise ValueError("certificates need certificate_secret (the certificate for '*.<domain>') too")
        hosts = [c.hostname for c in self.certificates]
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"certificates: a hostname is listed twice ({', '.join(hosts)})")
        return self


class RoutingConfig(_Model):
    """Gateway API routing to every UI (Envoy Gateway)."""

    domain: DnsName = Field(
        default="mlplane.localhost",
        description=(
            "Parent domain of every UI host name (mlflow.<domain>, grafana.<domain>, ...). "
            "Names under '.localhost' resolve to 127.0.0.1 without editing /etc/hosts."
        ),
    )
    controller: Literal["bundled", "existing"] = Field(
        default="bundled",
        description=(
            "'bundled' installs Envoy Gateway (Helm chart, pinned) into the gateway namespace; "
            "'existing' uses an Envoy Gateway (v1.9 or later) already running in the cluster and "
            "creates only the EnvoyProxy, GatewayClass and Gateway."
        ),
    )
    proxy_namespace: DnsLabel | None = Field(
        default=None,
        description=(
            "With controller 'existing': the namespace where that Envoy Gateway runs its Envoy "
            "proxies (its own namespace in the default deploy mode, e.g. 'envoy-gateway-system'); "
            "NetworkPolicies admit Gateway traffic from it and Prometheus scrapes it. Default: "
            "the platform's gateway namespace."
        ),
    )
    controller_resources: Resources = Field(
        default_factory=resources("50m", "96Mi", "500m", "256Mi"),
        description="Requests and limits of the Envoy Gateway controller.",
    )
    proxy_resources: Resources = Field(
        default_factory=resources("50m", "64Mi", "500m", "256Mi"),
        description="Requests and limits of the Gateway's Envoy proxy.",
    )
    shutdown_manager_resources: Resources = Field(
        default_factory=resources("10m", "32Mi", "100m", "64Mi"),
        description=(
            "Requests and limits of the shutdown-manager sidecar Envoy Gateway runs next to each "
            "Envoy proxy (it drains connections before the proxy stops)."
        ),
    )

    tls: TlsConfig = Field(
        default_factory=TlsConfig,
        description=(
            "HTTPS on the Gateway. Default: none, which only a kind cluster (Gateway on 127.0.0.1) "
            "accepts; any other cluster needs a certificate or the explicit plain_http opt-out."
        ),
    )

    @model_validator(mode="after")
    def _proxy_namespace(self) -> RoutingConfig:
        if self.proxy_namespace is not None and self.controller != "existing":
            raise ValueError("proxy_namespace is only used with controller 'existing' (the bundled one runs proxies in the gateway namespace)")
        return self
