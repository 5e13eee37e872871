"""A tiny test PKI built with cryptography: a root, intermediates and leaves with any flaw we need.

Every certificate a test serves is made here, so each flaw (expiry, key size,
signature hash, names, missing or short-lived intermediate) is explicit in the
fixture that asks for it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = timedelta(days=1)


def now() -> datetime:
    return datetime.now(UTC)


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Issued:
    """A certificate with its key, and the chain (issuer first) that signed it."""

    cert: x509.Certificate
    key: object
    chain: list[x509.Certificate]

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def write(
        self, directory: Path, name: str, *, with_chain: bool = True, with_root: bool = False
    ) -> tuple[Path, Path]:
        """Write ``name.pem`` (leaf plus intermediates unless told otherwise; the root only on request) and ``name.key``."""
        cert_path = directory / f"{name}.pem"
        key_path = directory / f"{name}.key"
        chain = [c for c in self.chain if with_root or c.issuer != c.subject] if with_chain else []
        body = self.pem + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        cert_path.write_bytes(body)
        key_path.write_bytes(self.key_pem())
        return cert_path, key_path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "drillbook tests"),
        ]
    )


def _ski(key) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def make_ca(
    cn: str = "drillbook test root",
    *,
    issuer: Issued | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key=None,
    ski: bool = True,
    permitted_dns: list[str] | None = None,
) -> Issued:
    """A root (no issuer) or an intermediate CA; ``permitted_dns`` adds a critical name constraint."""
    key = key or rsa_key()
    t = now()
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or t - 30 * DAY)
        .not_valid_after(not_after or t + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if ski:
        builder = builder.add_extension(_ski(key), critical=False)
    if permitted_dns is not None:
        builder = builder.add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(n) for n in permitted_dns], excluded_subtrees=None
            ),
            critical=True,
        )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,  # type: ignore[attr-defined]
        )
    cert = builder.sign(signer_key, hashes.SHA256())  # type: ignore[arg-type]
    chain = [issuer.cert, *issuer.chain] if issuer else []
    return Issued(cert=cert, key=key, chain=chain)


def make_leaf(
    issuer: Issued | None,
    names: list[str] = ("localhost", "127.0.0.1"),  # type: ignore[assignment]
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key=None,
    hash_alg=None,
    cn: str | None = None,
    aki: bool = True,
    eku: bool = True,
    san: bool = True,
) -> Issued:
    """A server certificate for ``names`` signed by ``issuer`` (``None``: self-signed); flags drop extensions."""
    key = key or rsa_key()
    t = now()
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    subject = _name(cn or names[0])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or t - DAY)
        .not_valid_after(not_after or t + 200 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_ski(key), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if issuer and aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,  # type: ignore[attr-defined]
        )
    signer = issuer.key if issuer else key
    if hash_alg == "sha1":
        # cryptography refuses to sign with SHA-1 (as it should); the openssl CLI still can.
        cert = _openssl_sign_sha1(builder, key=key, issuer=issuer, names=sans)
    else:
        cert = builder.sign(signer, hash_alg or hashes.SHA256())  # type: ignore[arg-type]
    chain = [issuer.cert, *issuer.chain] if issuer else []
    return Issued(cert=cert, key=key, chain=chain)


def _openssl_sign_sha1(builder, *, key, issuer: Issued | None, names) -> x509.Certificate:
    """Issue a SHA-1-signed certificate with the openssl CLI (validity: now .. now+100 days)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(builder._subject_name)
            .sign(key, hashes.SHA256())
        )
        (d / "req.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        san = ",".join(f"IP:{n.value}" if isinstance(n, x509.IPAddress) else f"DNS:{n.value}" for n in names)
        aki = "authorityKeyIdentifier=keyid\n" if issuer else ""
        (d / "ext.cnf").write_text(
            f"[v3]\nbasicConstraints=critical,CA:FALSE\nsubjectAltName={san}\nextendedKeyUsage=serverAuth\n"
            f"subjectKeyIdentifier=hash\n{aki}"
        )
        signer = issuer or Issued(cert=None, key=key, chain=[])  # type: ignore[arg-type]
        (d / "ca.key").write_bytes(signer.key_pem())
        cmd = [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(d / "req.csr"),
            "-sha1",
            "-days",
            "100",
            "-extfile",
            str(d / "ext.cnf"),
            "-extensions",
            "v3",
            "-out",
            str(d / "out.pem"),
        ]
        if issuer:
            (d / "ca.pem").write_bytes(issuer.pem)
            cmd += [
                "-CA",
                str(d / "ca.pem"),
                "-CAkey",
                str(d / "ca.key"),
                "-set_serial",
                str(x509.random_serial_number()),
            ]
        else:
            cmd += ["-signkey", str(d / "ca.key")]
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        return x509.load_pem_x509_certificate((d / "out.pem").read_bytes())


def sha1_root(cn: str = "legacy sha1 root", *, bits: int = 2048) -> Issued:
    """An in-date self-signed root signed with SHA-1, made by the openssl CLI (cryptography refuses to)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-sha1",
                "-newkey",
                f"rsa:{bits}",
                "-nodes",
                "-days",
                "3650",
                "-subj",
                f"/O=drillbook tests/CN={cn}",
                "-keyout",
                str(d / "root.key"),
                "-out",
                str(d / "root.pem"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        key = serialization.load_pem_private_key((d / "root.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((d / "root.pem").read_bytes())
    return Issued(cert=cert, key=key, chain=[])
