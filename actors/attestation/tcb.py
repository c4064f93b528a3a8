"""AMD products and the TCB_VERSION structure of SEV-SNP, decoded per product.

Source: AMD "SEV Secure Nested Paging Firmware ABI Specification" (publication 56860),
section "TCB_VERSION". A TCB_VERSION is a little-endian 64-bit value whose bytes hold the
security patch levels (SPLs) of the firmware components. The byte layout depends on the
product:

* Milan and Genoa: byte 0 boot_loader, byte 1 tee, bytes 2-5 reserved, byte 6 snp,
  byte 7 microcode.
* Turin: byte 0 fmc, byte 1 boot_loader, byte 2 tee, byte 3 snp, bytes 4-6 reserved,
  byte 7 microcode.

Reserved bytes must be zero; a non-zero reserved byte means the wrong product was assumed
or the value is corrupt, so decoding rejects it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from actors.attestation.errors import ReportMalformed, WrongProduct


class Product(StrEnum):
    """AMD EPYC generations that support SEV-SNP, named as in AMD's KDS and certificates."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"


# CPUID family and model ranges per product (AMD KDS and the SEV-SNP ABI CPUID_FAM_ID /
# CPUID_MOD_ID fields). Genoa includes Bergamo and Siena (model 0xA0-0xAF).
_CPUID_PRODUCTS: tuple[tuple[int, range, Product], ...] = (
    (0x19, range(0x00, 0x10), Product.MILAN),
    (0x19, range(0x10, 0x20), Product.GENOA),
    (0x19, range(0xA0, 0xB0), Product.GENOA),
    (0x1A, range(0x00, 0x12), Product.TURIN),
)


def product_from_cpuid(family: int, model: int) -> Product:
    """Map the report's CPUID_FAM_ID and CPUID_MOD_ID to a product.

    Raises:
        WrongProduct: the family and model belong to no supported product.
    """
    for known_family, models, product in _CPUID_PRODUCTS:
        if family == known_family and model in models:
            return product
    raise WrongProduct(
        f"CPUID family {family:#04x} model {model:#04x} is not Milan, Genoa or Turin; "
        "only those products are supported"
    )


def product_from_name(product_name: str) -> Product:
    """Map the productName extension of a VCEK/VLEK (e.g. ``Milan-B0``, ``Turin``) to a product.

    Raises:
        WrongProduct: the name does not start with a supported product.
    """
    family = product_name.split("-", 1)[0]
    for product in Product:
        if family == product.value:
            return product
    raise WrongProduct(
        f"certificate productName {product_name!r} is not Milan, Genoa or Turin; "
        "only those products are supported"
    )


@dataclass(frozen=True)
class TcbVersion:
    """A decoded TCB_VERSION: the security patch level of each firmware component.

    Attributes:
        product: the product whose byte layout was used to decode ``raw``.
        raw: the 64-bit value as stored in the report (little-endian on the wire).
        boot_loader: SPL of the PSP boot loader.
        tee: SPL of the PSP operating system.
        snp: SPL of the SNP firmware.
        microcode: lowest microcode patch level of all cores.
        fmc: SPL of the FMC firmware, Turin only; ``None`` on Milan and Genoa.
    """

    product: Product
    raw: int
    boot_loader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: int, product: Product, field_name: str = "TCB_VERSION") -> TcbVersion:
        """Decode a raw TCB_VERSION with the byte layout of ``product``.

        Raises:
            ReportMalformed: a reserved byte of the layout is not zero.
        """
        data = raw.to_bytes(8, "little")
        if product is Product.TURIN:
            reserved = data[4:7]
            tcb = cls(
                product,
                raw,
                boot_loader=data[1],
                tee=data[2],
                snp=data[3],
                microcode=data[7],
                fmc=data[0],
            )
        else:
            reserved = data[2:6]
            tcb = cls(
                product, raw, boot_loader=data[0], tee=data[1], snp=data[6], microcode=data[7]
            )
        if any(reserved):
            raise ReportMalformed(
                f"{field_name} {raw:#018x} has non-zero reserved bytes for {product.value}; "
                "check that the report comes from that product"
            )
        return tcb

    @classmethod
    def encode(
        cls,
        product: Product,
        *,
        boot_loader: int,
        tee: int,
        snp: int,
        microcode: int,
        fmc: int | None = None,
    ) -> TcbVersion:
        """Build a TCB_VERSION for ``product`` from its component SPLs (each 0-255).

        Raises:
            ValueError: a component is out of range, or ``fmc`` is given for Milan/Genoa
                or missing for Turin.
        """
        parts = [boot_loader, tee, snp, microcode] + ([] if fmc is None else [fmc])
        if any(not 0 <= part <= 0xFF for part in parts):
            raise ValueError(f"TCB components must be 0-255, got {parts}")
        if product is Product.TURIN:
            if fmc is None:
                raise ValueError("a Turin TCB_VERSION needs an fmc SPL")
            data = bytes([fmc, boot_loader, tee, snp, 0, 0, 0, microcode])
        else:
            if fmc is not None:
                raise ValueError(f"a {product.value} TCB_VERSION has no fmc SPL")
            data = bytes([boot_loader, tee, 0, 0, 0, 0, snp, microcode])
        return cls.decode(int.from_bytes(data, "little"), product)

    def components(self) -> dict[str, int]:
        """Return the SPLs by component name; ``fmc`` only for Turin."""
        parts = {
            "boot_loader": self.boot_loader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.fmc is not None:
            parts["fmc"] = self.fmc
        return parts
