"""SEV-SNP attestation reports: parsing, verification, policy and providers.

``report`` and ``tcb`` parse the ATTESTATION_REPORT. ``verify`` checks its signature and
AMD certificate chain, and ``policy`` decides whether a verified report is acceptable.
``providers`` and ``development`` obtain reports. ``binding`` ties a report to one mint and
digests the evidence for the token.
"""
