"""Test doubles for services that cannot run here (OCI), shared by the integration tests."""
