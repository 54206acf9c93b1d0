"""A fake Amazon SNS host: serves signing certificates, as SNS does at SigningCertURL, and takes
subscription confirmations at SubscribeURL (`GET /?Action=ConfirmSubscription&TopicArn=…&Token=…`).

The test makes the key pairs and certificates (`Signer`), so it signs messages as SNS would and
can count how often alertbridge fetched a certificate (`certificate_fetches`) or confirmed a
subscription (`confirmations`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..signing import sns_sign
from .server import FakeServer


class Signer:
    """A key pair and its self-signed certificate, as SNS's signing certificate (CN sns.amazonaws.com)."""

    def __init__(self, days: float = 365, start_days_ago: float = 1) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=start_days_ago)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict[str, str], version: str = "1") -> dict[str, str]:
        return sns_sign(message, self.key, version)


class FakeSNS(FakeServer):
    def __init__(self) -> None:
        self.certificates: dict[str, bytes] = {}
        super().__init__()

    def routes(self) -> list[Route]:
        return [Route("/", self.confirm, methods=["GET"]), Route("/{name}.pem", self.certificate, methods=["GET"])]

    def serve(self, signer: Signer) -> str:
        """Serve `signer`'s certificate; its SigningCertURL."""
        name = f"SimpleNotificationService-{uuid.uuid4().hex}"
        self.certificates[name] = signer.pem
        return f"{self.url}/{name}.pem"

    def certificate_fetches(self, url: str | None = None) -> int:
        return sum(1 for r in self.requests if r.path.endswith(".pem") and (url is None or url.endswith(r.path)))

    def confirmations(self, topic: str | None = None) -> list[dict[str, Any]]:
        return [
            r.query
            for r in self.requests
            if r.path == "/" and r.query.get("Action") == "ConfirmSubscription" and topic in (None, r.query["TopicArn"])
        ]

    async def certificate(self, request: Request) -> Response:
        pem = self.certificates.get(request.path_params["name"])
        return Response(pem, media_type="application/x-pem-file") if pem else Response("not found", 404)

    async def confirm(self, request: Request) -> Response:
        if request.query_params.get("Action") != "ConfirmSubscription" or not request.query_params.get("Token"):
            return Response("<ErrorResponse/>", 400, media_type="text/xml")
        arn = f"{request.query_params['TopicArn']}:{uuid.uuid4()}"
        body = (
            "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult>"
            f"<SubscriptionArn>{arn}</SubscriptionArn>"
            "</ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"
        )
        return Response(body, media_type="text/xml")
