"""Telnet over TLS: the server's certificate and its TLS settings.

The telnet transport runs unchanged over a :class:`trio.SSLStream`; this
module makes the :class:`ssl.SSLContext` it needs. With ``ssl_certificate``
and ``ssl_private_key`` set, those files are used; without them, a
self-signed certificate is made once in the data directory (as Evennia
does) and used from then on, with a warning that clients will not trust it
unless told to. Only TLS 1.2 and newer; no TLS compression.

Error handling:
    :func:`server_context` raises :class:`TLSSetupError` with one line an
    operator can act on (a missing or unreadable file, a key that does not
    match the certificate).

Resource handling:
    Blocking (file reads, key generation): call it in a worker thread.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from pathlib import Path

from ..settings import Settings

log = logging.getLogger("trio_mud.tls")

#: Where the self-signed certificate and its key are kept in the data directory.
GENERATED_CERTIFICATE = "tls-certificate.pem"
GENERATED_KEY = "tls-private-key.pem"


class TLSSetupError(Exception):
    """The certificate or key cannot be used; the message says why."""


def server_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context for the telnet+TLS listeners.

    Raises:
        TLSSetupError: the configured (or generated) files cannot be used.
    """
    certificate, key = settings.ssl_certificate, settings.ssl_private_key
    if (certificate is None) != (key is None):
        raise TLSSetupError("set both ssl_certificate and ssl_private_key, or neither")
    if certificate is None or key is None:
        certificate, key = ensure_self_signed(settings.data_dir, settings.server_name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSSetupError(
            f"cannot use the certificate {certificate} with key {key}: {exc}"
        ) from None
    return context


def ensure_self_signed(data_dir: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate and key in ``data_dir``, made the first time.

    The key is an ECDSA P-256 key (fast to make and to use), readable by its
    owner only; the certificate is valid for ten years, for ``localhost`` and
    the server's name.
    """
    certificate, key = data_dir / GENERATED_CERTIFICATE, data_dir / GENERATED_KEY
    if certificate.exists() and key.exists():
        return certificate, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64] or "trio_mud")])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    if name and name.replace("-", "").replace(".", "").isalnum():
        names.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    key_bytes = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key_bytes)
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.warning(
        "made a self-signed TLS certificate in %s: clients will not trust it unless told to; "
        "set ssl_certificate and ssl_private_key to use a real one",
        certificate,
    )
    return certificate, key
