import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Warden, sha256_hex  # noqa: E402
from mock_provider import MockProvider  # noqa: E402

AGENT_KEY = "sk-agent-test-key"
OTHER_KEY = "sk-other-agent-key"
EXPIRED_KEY = "sk-expired-key"
SUSPENDED_KEY = "sk-suspended-key"
PROVIDER_KEY = "sk-provider-secret-openai"
ANTHROPIC_KEY = "sk-provider-secret-anthropic"


def standard_policy(upstream_url, extra_agents=""):
    return f"""version: 1
providers:
  openai:
    base_url: {upstream_url}
    models: ["gpt-*", "slow-*", "error-*", "broken-*", "text-embedding-*"]
    api_key_env: TEST_OPENAI_KEY
    auth: bearer
  anthropic:
    base_url: {upstream_url}
    models: ["claude-*"]
    api_key_env: TEST_ANTHROPIC_KEY
    auth: x-api-key
  local:
    kind: mock
    models: ["mock-*"]
agents:
  app:
    keys:
      - {{id: app-1, sha256: {sha256_hex(AGENT_KEY)}}}
      - {{id: app-old, sha256: {sha256_hex(EXPIRED_KEY)}, expires_at: "2020-01-01T00:00:00Z"}}
    models: ["gpt-4o-mini", "gpt-4o", "slow-model", "error-model", "claude-sonnet-*", "text-embedding-3-small", "mock-*", "unrouted-model", "broken-*"]
  narrow:
    keys:
      - {{id: narrow-1, sha256: {sha256_hex(OTHER_KEY)}}}
    models: ["gpt-4o-mini"]
    endpoints: ["/v1/chat/completions", "/v1/models"]
  frozen:
    keys:
      - {{id: frozen-1, sha256: {sha256_hex(SUSPENDED_KEY)}}}
    models: ["gpt-*"]
    status: suspended
{extra_agents}"""


def dead_provider_policy():
    """A policy whose only provider, `gone`, listens nowhere (a free port nobody bound)."""
    from harness import free_port
    return f"""version: 1
providers:
  gone: {{base_url: "http://127.0.0.1:{free_port()}/v1", models: ["gpt-*"], auth: none}}
agents:
  app:
    keys: [{{id: k, sha256: {sha256_hex(AGENT_KEY)}}}]
    models: ["gpt-*"]
"""


PROVIDER_ENV = {"TEST_OPENAI_KEY": PROVIDER_KEY, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}


@pytest.fixture(scope="module")
def provider():
    p = MockProvider()
    yield p
    p.close()


@pytest.fixture(scope="module")
def warden(provider):
    w = Warden(standard_policy(provider.base_url), env=PROVIDER_ENV,
               server_extra="  max_body_bytes: 9437184\n  read_timeout_secs: 1\n")
    yield w
    w.stop()
