"""Verify an SEV-SNP attestation report: its signature and its AMD certificate chain.

Sources:

* AMD SEV-SNP Firmware ABI Specification (publication 56860): the report is signed with
  ECDSA P-384 and SHA-384 over bytes 0x000-0x29F; r and s are 72-byte little-endian
  integers at 0x2A0 and 0x2E8. SIGNING_KEY selects the VCEK (0) or the VLEK (1).
* AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification"
  (publication 57230): the chain is VCEK (or VLEK) -> ASK (or ASVK) -> ARK. Every link is
  signed with RSASSA-PSS, SHA-384, MGF1 with SHA-384 and a 48-byte salt. AMD extensions under
  1.3.6.1.4.1.3704.1 carry the product name, the TCB the key was derived for, and (VCEK
  only) the hwID, which is the CHIP_ID (the first 8 bytes of it on Turin).

Security:
    The ARK is trusted only through its SHA-256 fingerprint, looked up in the verifier's
    pinned map. An ARK that arrives with the evidence is never trusted on its own.
    Validity periods are checked at the ``now`` the caller passes, on every call, also
    when the signature checks of a chain come from the cache.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import SignatureAlgorithmOID

from actors.attestation.errors import (
    CertificateExpired,
    CertificateMalformed,
    ChainInvalid,
    ChipIdMismatch,
    ReportUnsigned,
    SignatureInvalid,
    TcbMismatch,
    UntrustedRoot,
    WrongProduct,
)
from actors.attestation.evidence import Evidence
from actors.attestation.report import AttestationReport, SigningKey, parse_report
from actors.attestation.tcb import Product, product_from_name

AMD_OID = "1.3.6.1.4.1.3704.1"
OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{AMD_OID}.2")
OID_HWID = x509.ObjectIdentifier(f"{AMD_OID}.4")
OID_CSP_ID = x509.ObjectIdentifier(f"{AMD_OID}.5")
# TCB component -> extension OID (blSPL, teeSPL, snpSPL, ucodeSPL, fmcSPL).
TCB_EXTENSION_OIDS: Mapping[str, x509.ObjectIdentifier] = {
    "boot_loader": x509.ObjectIdentifier(f"{AMD_OID}.3.1"),
    "tee": x509.ObjectIdentifier(f"{AMD_OID}.3.2"),
    "snp": x509.ObjectIdentifier(f"{AMD_OID}.3.3"),
    "microcode": x509.ObjectIdentifier(f"{AMD_OID}.3.8"),
    "fmc": x509.ObjectIdentifier(f"{AMD_OID}.3.9"),
}

# SHA-256 of the DER of AMD's ARKs, as published by AMD's KDS.
AMD_ARK_FINGERPRINTS: Mapping[str, Product] = {
    "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd": Product.MILAN,
    "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1": Product.GENOA,
    "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a": Product.TURIN,
}

PSS_SALT_LENGTH = 48
_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
    "581a0db248b0a77aecec196accc52973",
    16,
)
_TURIN_HWID_SIZE = 8


def fingerprint(der: bytes) -> str:
    """Return the hex SHA-256 of a DER certificate."""
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class VerifiedChain:
    """A chain whose signatures and pinned root were checked.

    Attributes:
        product: the product of the pinned ARK (equal to the signer's productName).
        signer: the VCEK or VLEK certificate.
        certificates: signer, ASK/ASVK, ARK, for the validity check at each use.
        ark_fingerprint: hex SHA-256 of the ARK DER.
        signer_fingerprint: hex SHA-256 of the signer DER.
    """

    product: Product
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    ark_fingerprint: str
    signer_fingerprint: str

    @property
    def signer_is_vcek(self) -> bool:
        """True for a VCEK (it carries hwID), False for a VLEK."""
        return _find_extension(self.signer, OID_HWID) is not None


@dataclass(frozen=True)
class VerifiedReport:
    """A report whose signature and chain verified, before any policy is applied."""

    report: AttestationReport
    chain: VerifiedChain


def load_certificate(der: bytes, role: str) -> x509.Certificate:
    """Parse a DER certificate.

    AMD issues VCEK and VLEK certificates with serial number 0, which RFC 5280 forbids;
    ``cryptography`` warns about it, and the warning is silenced here only.

    Limitations:
        A future ``cryptography`` release may reject serial number 0 outright; AMD's
        VCEKs then need another parser.

    Raises:
        CertificateMalformed: the bytes are not a DER certificate.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateMalformed(f"{role} certificate is not valid DER: {exc}") from exc


def _find_extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        extension = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise CertificateMalformed(f"extension {oid.dotted_string} has an unexpected type")
    return value.value


def _der_integer(data: bytes, name: str) -> int:
    """Decode a DER INTEGER of short form (all AMD SPL extensions are 0-255)."""
    if len(data) < 3 or data[0] != 0x02 or data[1] != len(data) - 2 or data[1] > 2:
        raise CertificateMalformed(f"extension {name} is not a small DER INTEGER: {data.hex()}")
    content = data[2:]
    if len(content) == 2 and content[0] == 0 and content[1] < 0x80:
        raise CertificateMalformed(f"extension {name} is not minimally encoded: {data.hex()}")
    if content[0] & 0x80:
        raise CertificateMalformed(f"extension {name} is negative: {data.hex()}")
    return int.from_bytes(content, "big")


def _der_ia5_string(data: bytes, name: str) -> str:
    if len(data) < 2 or data[0] != 0x16 or data[1] != len(data) - 2 or data[1] >= 0x80:
        raise CertificateMalformed(f"extension {name} is not a short DER IA5String")
    try:
        return data[2:].decode("ascii")
    except UnicodeDecodeError as exc:
        raise CertificateMalformed(f"extension {name} is not ASCII") from exc


def _verify_pss(cert: x509.Certificate, issuer: x509.Certificate, role: str) -> None:
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise ChainInvalid(
            f"{role} certificate is signed with {cert.signature_algorithm_oid.dotted_string}; "
            "AMD certificates use RSASSA-PSS"
        )
    if cert.issuer != issuer.subject:
        raise ChainInvalid(
            f"{role} certificate issuer {cert.issuer.rfc4514_string()} is not the subject "
            f"{issuer.subject.rfc4514_string()} of the next certificate"
        )
    public_key = issuer.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ChainInvalid(f"the issuer of the {role} certificate has no RSA key")
    try:
        public_key.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=PSS_SALT_LENGTH),
            hashes.SHA384(),
        )
    except InvalidSignature as exc:
        raise ChainInvalid(
            f"{role} certificate signature does not verify with its issuer's key; "
            "check that the chain belongs to the same product and key kind"
        ) from exc


class ChainVerifier:
    """Verify VCEK/VLEK -> ASK/ASVK -> ARK chains against pinned ARK fingerprints.

    Signature checks are cached per (signer, ASK, ARK) fingerprint triple, because the
    RSA verifications dominate the cost and the same chain is seen on every mint.
    Validity periods are not cached. The cache is bounded and safe to share between
    threads.

    Args:
        trusted_arks: hex SHA-256 of each trusted ARK DER -> the product it signs for.
            ``AMD_ARK_FINGERPRINTS`` in production.
        cache_size: most chains kept in the cache.
    """

    def __init__(self, trusted_arks: Mapping[str, Product], cache_size: int = 256) -> None:
        self._trusted_arks = {key.lower(): product for key, product in trusted_arks.items()}
        self._cache_size = cache_size
        self._cache: dict[tuple[str, str, str], VerifiedChain] = {}
        self._lock = threading.Lock()

    def pins(self, trusted_arks: Mapping[str, Product]) -> bool:
        """Return True when this verifier pins exactly ``trusted_arks``."""
        return self._trusted_arks == {key.lower(): value for key, value in trusted_arks.items()}

    def verify_chain(self, cert_chain: Sequence[bytes], now: datetime) -> VerifiedChain:
        """Verify a (signer, ASK/ASVK, ARK) chain of DER certificates at time ``now``.

        Raises:
            ChainInvalid: not three certificates, or a signature or issuer name is wrong.
            UntrustedRoot: the ARK's fingerprint is not pinned.
            CertificateMalformed: a certificate or an AMD extension cannot be parsed.
            WrongProduct: the signer's productName is not the pinned ARK's product.
            CertificateExpired: a certificate is not valid at ``now``.
        """
        if len(cert_chain) != 3:
            raise ChainInvalid(
                f"certificate chain has {len(cert_chain)} certificates; expected 3 "
                "(VCEK or VLEK, ASK or ASVK, ARK)"
            )
        key = (fingerprint(cert_chain[0]), fingerprint(cert_chain[1]), fingerprint(cert_chain[2]))
        product = self._trusted_arks.get(key[2])
        if product is None:
            raise UntrustedRoot(
                f"ARK with SHA-256 {key[2]} is not pinned; pass a trusted ARK or pin this "
                "fingerprint in the attestation policy"
            )
        with self._lock:
            chain = self._cache.get(key)
        if chain is None:
            chain = self._verify_signatures(cert_chain, product, key)
            with self._lock:
                if len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = chain
        _check_validity(chain.certificates, now)
        return chain

    def _verify_signatures(
        self, cert_chain: Sequence[bytes], product: Product, key: tuple[str, str, str]
    ) -> VerifiedChain:
        signer = load_certificate(cert_chain[0], "VCEK/VLEK")
        ask = load_certificate(cert_chain[1], "ASK/ASVK")
        ark = load_certificate(cert_chain[2], "ARK")

        _verify_pss(ark, ark, "ARK")
        _verify_pss(ask, ark, "ASK/ASVK")
        _verify_pss(signer, ask, "VCEK/VLEK")

        signer_key = signer.public_key()
        if not isinstance(signer_key, ec.EllipticCurvePublicKey) or not isinstance(
            signer_key.curve, ec.SECP384R1
        ):
            raise CertificateMalformed("VCEK/VLEK public key is not an EC P-384 key")
        name_value = _find_extension(signer, OID_PRODUCT_NAME)
        if name_value is None:
            raise CertificateMalformed("VCEK/VLEK certificate lacks the productName extension")
        named = product_from_name(_der_ia5_string(name_value, "productName"))
        if named is not product:
            raise WrongProduct(
                f"VCEK/VLEK is for {named.value} but the pinned ARK is for {product.value}; "
                "use the ASK and ARK of the signer's product"
            )
        return VerifiedChain(
            product=product,
            signer=signer,
            certificates=(signer, ask, ark),
            ark_fingerprint=key[2],
            signer_fingerprint=key[0],
        )


def _check_validity(certificates: Sequence[x509.Certificate], now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    for cert, role in zip(certificates, ("VCEK/VLEK", "ASK/ASVK", "ARK"), strict=True):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CertificateExpired(
                f"{role} certificate is valid from {cert.not_valid_before_utc.isoformat()} "
                f"to {cert.not_valid_after_utc.isoformat()}, not at {now.isoformat()}; "
                "fetch a current certificate from AMD's KDS"
            )


def verify_report_signature(report: AttestationReport, signer: x509.Certificate) -> None:
    """Verify the ECDSA P-384/SHA-384 signature over bytes 0x000-0x29F of ``report.raw``.

    Raises:
        ReportUnsigned: MASK_CHIP_KEY is set or SIGNING_KEY is 7 (none).
        SignatureInvalid: r or s is out of range, or the signature does not verify.
    """
    if report.mask_chip_key or report.signing_key is SigningKey.NONE:
        raise ReportUnsigned(
            "the firmware did not sign this report (MASK_CHIP_KEY set or SIGNING_KEY none); "
            "request a report from a guest whose platform signs reports"
        )
    public_key = signer.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CertificateMalformed("VCEK/VLEK public key is not an EC key")
    r, s = report.signature_r, report.signature_s
    if not (0 < r < _P384_ORDER and 0 < s < _P384_ORDER):
        raise SignatureInvalid("signature r or s is outside 1..n-1 of P-384")
    try:
        public_key.verify(
            encode_dss_signature(r, s), report.signed_bytes, ec.ECDSA(hashes.SHA384())
        )
    except InvalidSignature as exc:
        raise SignatureInvalid(
            "report signature does not verify with the VCEK/VLEK of the chain; the report "
            "was altered or the chain belongs to another chip or TCB"
        ) from exc


def check_certificate_binding(report: AttestationReport, chain: VerifiedChain) -> None:
    """Check that the signer certificate was issued for this report's chip and TCB.

    Raises:
        ChainInvalid: SIGNING_KEY names a VCEK but the signer is a VLEK, or the reverse.
        TcbMismatch: a TCB extension differs from REPORTED_TCB.
        ChipIdMismatch: the VCEK hwID differs from CHIP_ID.
    """
    declared_vcek = report.signing_key is SigningKey.VCEK
    if declared_vcek != chain.signer_is_vcek:
        raise ChainInvalid(
            f"report SIGNING_KEY is {report.signing_key.name} but the chain's signer is a "
            f"{'VCEK' if chain.signer_is_vcek else 'VLEK'}; send the matching certificate"
        )

    for component, expected in report.reported_tcb.components().items():
        value = _find_extension(chain.signer, TCB_EXTENSION_OIDS[component])
        if value is None:
            raise CertificateMalformed(f"VCEK/VLEK lacks the {component} SPL extension")
        actual = _der_integer(value, component)
        if actual != expected:
            raise TcbMismatch(
                f"VCEK/VLEK {component} SPL is {actual} but REPORTED_TCB has {expected}; "
                "fetch the VCEK for the reported TCB"
            )

    if declared_vcek:
        hwid = _find_extension(chain.signer, OID_HWID) or b""
        expected_id = (
            report.chip_id[:_TURIN_HWID_SIZE] if report.product is Product.TURIN else report.chip_id
        )
        if hwid != expected_id:
            raise ChipIdMismatch(
                f"VCEK hwID {hwid.hex()} is not the report CHIP_ID {expected_id.hex()}; "
                "fetch the VCEK of the chip that produced the report"
            )


def verify_evidence(evidence: Evidence, verifier: ChainVerifier, now: datetime) -> VerifiedReport:
    """Verify the chain, parse the report for the chain's product, check its signature.

    Order: chain and pinned root, report structure, signature, then the certificate's
    TCB and chip binding. So a changed signed byte fails as ``SignatureInvalid`` unless
    it already breaks the structure (``ReportMalformed`` and related).

    Raises:
        AttestationError: a subclass naming the first check that failed.
    """
    chain = verifier.verify_chain(evidence.cert_chain, now)
    report = parse_report(evidence.report, chain.product)
    verify_report_signature(report, chain.signer)
    check_certificate_binding(report, chain)
    return VerifiedReport(report=report, chain=chain)
