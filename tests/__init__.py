"""The test suite. Importing the package points the broker at the test broker before `workers` is imported."""

import os
import uuid

NAMESPACE = f"dsr-test-{uuid.uuid4().hex[:8]}"
os.environ["DRAMATIQ_BROKER_URL"] = os.environ.get("TEST_BROKER_URL") or ""
os.environ["DRAMATIQ_NAMESPACE"] = NAMESPACE
