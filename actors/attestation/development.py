"""A development report provider: real-format SEV-SNP reports signed by a local chain.

The provider generates, once per state folder, an ARK -> ASK -> VCEK chain shaped like
AMD's (RSASSA-PSS with SHA-384 and a 48-byte salt on every link, an EC P-384 VCEK with
AMD's productName, SPL and hwID extensions) and signs 1184-byte ATTESTATION_REPORTs with
the VCEK. The reports parse and verify with the production code. Only the pinned ARK
differs, so a development report is accepted only by a policy that trusts this ARK.

Security:
    The VCEK private key is stored unencrypted (file mode 0600) in the state folder, and
    anyone who can read it can produce reports that the development policy accepts. The
    ARK and ASK private keys are discarded once the chain is signed. This provider proves
    nothing about the machine. It exists so that the rest of the system runs the real
    verification code on machines without SEV-SNP.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from actors.attestation.encode import attach_signature, encode_signed_part
from actors.attestation.evidence import Evidence
from actors.attestation.report import (
    AttestationReport,
    GuestPolicy,
    PlatformInfo,
    SigningKey,
)
from actors.attestation.tcb import Product, TcbVersion
from actors.attestation.verify import (
    OID_HWID,
    OID_PRODUCT_NAME,
    PSS_SALT_LENGTH,
    TCB_EXTENSION_OIDS,
    fingerprint,
)

# RSA-2048 keeps generation fast; AMD's ARK and ASK are RSA-4096.
_RSA_KEY_SIZE = 2048
_CHAIN_LIFETIME = timedelta(days=3650)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=PSS_SALT_LENGTH)
# CPUID family, model and stepping written into version 3+ development reports.
_CPUID: dict[Product, tuple[int, int, int]] = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x00),
}
_PRODUCT_NAMES: dict[Product, str] = {
    Product.MILAN: "Milan-B0",
    Product.GENOA: "Genoa-B1",
    Product.TURIN: "Turin",
}
_FILES = ("ark.der", "ask.der", "vcek.der", "vcek-key.pem", "chip-id.bin", "report-id.bin")


@dataclass(frozen=True)
class DevelopmentSettings:
    """Contents of the development reports and of the development VCEK.

    Attributes:
        product: the product to imitate (chain names, TCB layout, CPUID).
        measurement: MEASUREMENT of every report (48 bytes).
        tcb: the TCB written as CURRENT, COMMITTED, LAUNCH and REPORTED TCB and into
            the VCEK's SPL extensions.
        chip_id: CHIP_ID and VCEK hwID; generated once and stored when ``None``.
        version: report VERSION, 2 to 5.
        guest_policy: the raw guest POLICY (default: SMT allowed, debugging off).
        vmpl: VMPL written into the reports.
    """

    product: Product = Product.MILAN
    measurement: bytes = bytes(48)
    tcb: TcbVersion = field(
        default_factory=lambda: TcbVersion.encode(
            Product.MILAN, boot_loader=3, tee=0, snp=8, microcode=115
        )
    )
    chip_id: bytes | None = None
    version: int = 3
    guest_policy: int = 0x30000
    vmpl: int = 0


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ztmint development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _der_integer(value: int) -> bytes:
    content = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(content)]) + content


def _der_ia5_string(text: str) -> bytes:
    return bytes([0x16, len(text)]) + text.encode("ascii")


def _certificate(
    subject: str,
    issuer: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    signing_key: rsa.RSAPrivateKey,
    now: datetime,
    is_ca: bool,
    extensions: list[x509.UnrecognizedExtension] | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + _CHAIN_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    for extension in extensions or []:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signing_key, hashes.SHA384(), rsa_padding=_PSS)


def _vcek_extensions(
    product: Product, tcb: TcbVersion, chip_id: bytes
) -> list[x509.UnrecognizedExtension]:
    hwid = chip_id[:8] if product is Product.TURIN else chip_id
    extensions = [
        x509.UnrecognizedExtension(OID_PRODUCT_NAME, _der_ia5_string(_PRODUCT_NAMES[product])),
        x509.UnrecognizedExtension(OID_HWID, hwid),
    ]
    for component, value in tcb.components().items():
        extensions.append(
            x509.UnrecognizedExtension(TCB_EXTENSION_OIDS[component], _der_integer(value))
        )
    return extensions


def _generate_state(folder: Path, settings: DevelopmentSettings, now: datetime) -> None:
    chip_id = settings.chip_id
    if chip_id is None:
        # Turin chips identify themselves with 8 bytes, and the rest of CHIP_ID is zero.
        size = 8 if settings.product is Product.TURIN else 64
        chip_id = secrets.token_bytes(size).ljust(64, b"\0")

    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_KEY_SIZE)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_KEY_SIZE)
    vcek_key = ec.generate_private_key(ec.SECP384R1())

    product = settings.product.value
    ark = _certificate(
        f"ARK-{product}", f"ARK-{product}", ark_key.public_key(), ark_key, now, is_ca=True
    )
    ask = _certificate(
        f"SEV-{product}", f"ARK-{product}", ask_key.public_key(), ark_key, now, is_ca=True
    )
    vcek = _certificate(
        "SEV-VCEK",
        f"SEV-{product}",
        vcek_key.public_key(),
        ask_key,
        now,
        is_ca=False,
        extensions=_vcek_extensions(settings.product, settings.tcb, chip_id),
    )

    contents = {
        "ark.der": ark.public_bytes(serialization.Encoding.DER),
        "ask.der": ask.public_bytes(serialization.Encoding.DER),
        "vcek.der": vcek.public_bytes(serialization.Encoding.DER),
        "vcek-key.pem": vcek_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "chip-id.bin": chip_id,
        "report-id.bin": secrets.token_bytes(32),
    }

    # Write into a fresh folder and rename it into place, so a concurrent start finds
    # either no state or a complete one.
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sev-snp-dev-", dir=folder.parent))
    for name, data in contents.items():
        descriptor = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
    try:
        os.rename(staging, folder)
    except OSError:
        for name in contents:
            (staging / name).unlink()
        staging.rmdir()
        if not all((folder / name).is_file() for name in _FILES):
            raise


class DevelopmentProvider:
    """Sign real-format SEV-SNP reports with a locally generated VCEK-style chain.

    Args:
        state_folder: where the chain and keys are kept; created on first use.
        settings: report contents; must match the stored chain on later runs.
        clock: returns the current time; used only to date a newly generated chain.

    Raises:
        ValueError: the stored chain was generated for another product, chip or TCB.
    """

    def __init__(
        self,
        state_folder: Path,
        settings: DevelopmentSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings or DevelopmentSettings()
        if self.settings.tcb.product is not self.settings.product:
            raise ValueError("settings.tcb must be encoded for settings.product")
        self.folder = Path(state_folder)
        if not (self.folder / "vcek.der").is_file():
            _generate_state(self.folder, self.settings, clock())
        self._chain = tuple(
            (self.folder / name).read_bytes() for name in ("vcek.der", "ask.der", "ark.der")
        )
        self._chip_id = (self.folder / "chip-id.bin").read_bytes()
        self._report_id = (self.folder / "report-id.bin").read_bytes()

        key = serialization.load_pem_private_key(
            (self.folder / "vcek-key.pem").read_bytes(), password=None
        )
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.folder / 'vcek-key.pem'} is not an EC private key")
        self._vcek_key = key

        if self.settings.chip_id is not None and self.settings.chip_id != self._chip_id:
            raise ValueError(
                f"{self.folder} contains a chain for another chip id; use a new state folder"
            )

        expected = _vcek_extensions(self.settings.product, self.settings.tcb, self._chip_id)
        vcek = x509.load_der_x509_certificate(self._chain[0])
        for extension in expected:
            stored = vcek.extensions.get_extension_for_oid(extension.oid).value
            if (
                not isinstance(stored, x509.UnrecognizedExtension)
                or stored.value != extension.value
            ):
                raise ValueError(
                    f"{self.folder} contains a VCEK for another product or TCB "
                    f"(extension {extension.oid.dotted_string}); use a new state folder"
                )

    @property
    def ark_fingerprint(self) -> str:
        """Hex SHA-256 of the development ARK, for ``development_policy``."""
        return fingerprint(self._chain[2])

    def _report(self, report_data: bytes) -> AttestationReport:
        settings = self.settings
        cpuid = _CPUID[settings.product] if settings.version >= 3 else (None, None, None)
        tcb = settings.tcb
        return AttestationReport(
            product=settings.product,
            version=settings.version,
            guest_svn=0,
            policy=GuestPolicy.decode(settings.guest_policy),
            family_id=bytes(16),
            image_id=bytes(16),
            vmpl=settings.vmpl,
            signature_algo=1,
            current_tcb=tcb,
            platform_info=PlatformInfo.decode(1),
            author_key_en=False,
            mask_chip_key=False,
            signing_key=SigningKey.VCEK,
            report_data=report_data,
            measurement=settings.measurement,
            host_data=bytes(32),
            id_key_digest=bytes(48),
            author_key_digest=bytes(48),
            report_id=self._report_id,
            report_id_ma=b"\xff" * 32,
            reported_tcb=tcb,
            cpuid_fam_id=cpuid[0],
            cpuid_mod_id=cpuid[1],
            cpuid_step=cpuid[2],
            chip_id=self._chip_id,
            committed_tcb=tcb,
            current_build=0,
            current_minor=55,
            current_major=1,
            committed_build=0,
            committed_minor=55,
            committed_major=1,
            launch_tcb=tcb,
            launch_mit_vector=0 if settings.version >= 5 else None,
            current_mit_vector=0 if settings.version >= 5 else None,
            signature_r=0,
            signature_s=0,
        )

    def get_report(self, report_data: bytes) -> Evidence:
        """Return a signed development report over ``report_data`` with its chain.

        Raises:
            ValueError: ``report_data`` is not 64 bytes.
        """
        if len(report_data) != 64:
            raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
        signed_part = encode_signed_part(self._report(bytes(report_data)))
        der_signature = self._vcek_key.sign(signed_part, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der_signature)
        return Evidence(report=attach_signature(signed_part, r, s), cert_chain=self._chain)
