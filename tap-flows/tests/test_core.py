"""singer-sdk's standard tap tests, against a real flows-api serving a generated database."""

from __future__ import annotations

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from singer_sdk.testing.runners import TapTestRunner

from tap_flows.tap import TapFlows

# The stream and attribute tests are built when this module is imported, before any
# service runs: building them needs the tap's streams, not data. The `runner` fixture
# below replaces the factory's with one pointed at the session's flows-api.
PLACEHOLDER_CONFIG = {"api_url": "http://127.0.0.1:9"}
SUITE = SuiteConfig(max_records_limit=5_000)


class TestTapFlows(get_tap_test_class(TapFlows, config=PLACEHOLDER_CONFIG, suite_config=SUITE)):
    @pytest.fixture(scope="class")
    @classmethod
    def runner(cls, flows_api_url: str) -> TapTestRunner:
        runner = TapTestRunner(
            TapFlows,
            config={"api_url": flows_api_url, "page_size": 700},
            suite_config=SUITE,
            parse_env_config=False,
        )
        runner.sync_all()
        assert len(runner.records["flows"]) == SUITE.max_records_limit
        return runner
