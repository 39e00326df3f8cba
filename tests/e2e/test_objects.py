"""Provider objects belong to the agent that created them (issue 31, point 18).

Every agent behind Warden shares one provider key, so the provider (here a mock that keeps
objects as OpenAI does, in one account) cannot tell them apart. Warden can: responses,
conversations and files created by one agent are refused to another (403 `object_not_owned`),
by path and by body reference, with the real OpenAI SDK and the OpenAI Agents SDK's
conversation session; a request without a model goes to the provider holding its object; and
a fleet of Wardens shares who owns what through a real Redis."""

import asyncio
import json
import shutil

import httpx
import openai
import pytest

from conftest import PROVIDER_ENV
from harness import Warden, sha256_hex
from mock_provider import MockProvider

ALICE_KEY = "sk-objects-alice"
BOB_KEY = "sk-objects-bob"
FILER_KEY = "sk-objects-filer"
SNOOP_KEY = "sk-objects-snoop"
CURATOR_KEY = "sk-objects-curator"

FILE_ENDPOINTS = '["/v1/responses", "POST /v1/files", "GET,DELETE /v1/files/*", "GET /v1/files/*/content"]'


def objects_policy(main, alt, extra=""):
    return f"""version: 1
providers:
  openai:
    base_url: {main.base_url}
    models: ["gpt-*"]
    api_key_env: TEST_OPENAI_KEY
  alt:
    base_url: {alt.base_url}
    models: ["alt-*"]
    api_key_env: TEST_OPENAI_KEY
{extra}agents:
  alice:
    keys: [{{id: alice-1, sha256: {sha256_hex(ALICE_KEY)}}}]
    models: ["gpt-*", "alt-*"]
  bob:
    keys: [{{id: bob-1, sha256: {sha256_hex(BOB_KEY)}}}]
    models: ["gpt-*", "alt-*"]
  filer:
    keys: [{{id: filer-1, sha256: {sha256_hex(FILER_KEY)}}}]
    models: ["gpt-*"]
    endpoints: {FILE_ENDPOINTS}
  snoop:
    keys: [{{id: snoop-1, sha256: {sha256_hex(SNOOP_KEY)}}}]
    models: ["gpt-*"]
    endpoints: {FILE_ENDPOINTS}
  curator:
    keys: [{{id: curator-1, sha256: {sha256_hex(CURATOR_KEY)}}}]
    models: ["gpt-*"]
    endpoints: {FILE_ENDPOINTS}
    shared_objects: ["file-*"]
"""


@pytest.fixture(scope="module")
def providers():
    main, alt = MockProvider(stream_interval=0.05), MockProvider(stream_interval=0.05)
    yield main, alt
    main.close()
    alt.close()


@pytest.fixture(scope="module")
def warden(providers):
    w = Warden(objects_policy(*providers), env=PROVIDER_ENV)
    yield w
    w.stop()


def client(warden, key):
    return openai.OpenAI(base_url=warden.base + "/v1", api_key=key, max_retries=0)


def refused(excinfo):
    """The SDK error is Warden's 403 `object_not_owned`."""
    e = excinfo.value
    assert e.status_code == 403
    assert e.response.headers["x-warden-error"] == "object_not_owned"
    assert e.body["code"] == "object_not_owned"
    return e


def paths_seen(provider):
    return [(r.method, r.path.split("?")[0]) for r in provider.requests]


def test_a_response_is_its_creators_only(warden, providers):
    main, _ = providers
    alice, bob = client(warden, ALICE_KEY), client(warden, BOB_KEY)
    created = alice.responses.create(model="gpt-4o-mini", input="remember: 42")
    assert created.id.startswith("resp_")
    assert alice.responses.retrieve(created.id).id == created.id
    assert alice.responses.input_items.list(created.id).data[0].content[0].text == "remember: 42"

    before = len(main.requests)
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        bob.responses.retrieve(created.id)
    assert created.id in refused(excinfo).message
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        bob.responses.input_items.list(created.id)
    refused(excinfo)
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        bob.responses.create(model="gpt-4o-mini", input="what was it?", previous_response_id=created.id)
    refused(excinfo)
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        bob.responses.delete(created.id)
    refused(excinfo)
    assert len(main.requests) == before, "a refused reference reached the provider"
    assert created.id in main.objects

    alice.responses.create(model="gpt-4o-mini", input="and now?", previous_response_id=created.id)
    alice.responses.delete(created.id)
    assert created.id not in main.objects


def test_an_escaped_key_is_read_as_the_provider_reads_it(warden):
    created = client(warden, ALICE_KEY).responses.create(model="gpt-4o-mini", input="x")
    raw = ('{"model":"gpt-4o-mini","input":"y","previous\\u005fresponse_id":"%s"}' % created.id).encode()
    assert json.loads(raw)["previous_response_id"] == created.id
    r = httpx.post(warden.base + "/v1/responses", content=raw, timeout=10,
                   headers={"Authorization": f"Bearer {BOB_KEY}", "Content-Type": "application/json"})
    assert r.status_code == 403 and r.headers["x-warden-error"] == "object_not_owned"
    nested = {"model": "gpt-4o-mini", "conversation": {"id": created.id}, "input": "z"}
    r = httpx.post(warden.base + "/v1/responses", json=nested, timeout=10,
                   headers={"Authorization": f"Bearer {BOB_KEY}"})
    assert r.status_code == 403 and r.headers["x-warden-error"] == "object_not_owned"


def test_an_id_nobody_created_through_warden_is_refused(warden, providers):
    main, _ = providers
    main.objects["resp_planted"] = {"id": "resp_planted", "object": "response"}
    before = len(main.requests)
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        client(warden, ALICE_KEY).responses.retrieve("resp_planted")
    refused(excinfo)
    assert len(main.requests) == before


def test_a_streamed_response_is_owned_as_soon_as_it_is_named(warden):
    alice = client(warden, ALICE_KEY)
    with alice.responses.stream(model="gpt-4o-mini", input="stream it") as stream:
        first = next(iter(stream))
        assert first.type == "response.created"
        rid = first.response.id
        # The stream is still open: its object is already Alice's, and only hers.
        assert alice.responses.retrieve(rid).id == rid
        with pytest.raises(openai.PermissionDeniedError) as excinfo:
            client(warden, BOB_KEY).responses.retrieve(rid)
        refused(excinfo)
        final = stream.get_final_response()
    assert final.id == rid


def test_a_request_without_a_model_goes_to_the_provider_holding_its_object(warden, providers):
    main, alt = providers
    alice = client(warden, ALICE_KEY)
    created = alice.responses.create(model="alt-small", input="on the other provider")
    assert created.id in alt.objects and created.id not in main.objects
    alice.responses.retrieve(created.id)
    assert paths_seen(alt)[-1] == ("GET", f"/v1/responses/{created.id}")
    # Nothing named: the policy's first provider.
    conversation = alice.conversations.create()
    assert conversation.id in main.objects
    assert main.last().header("authorization") == f"Bearer {PROVIDER_ENV['TEST_OPENAI_KEY']}"


def test_the_agents_sdk_conversation_session_works_and_is_private(warden, providers):
    from agents import Agent, OpenAIConversationsSession, Runner, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel

    set_tracing_disabled(True)
    main, _ = providers

    async def run():
        alice = openai.AsyncOpenAI(base_url=warden.base + "/v1", api_key=ALICE_KEY, max_retries=0)
        agent = Agent(name="helper", instructions="Be brief.",
                      model=OpenAIResponsesModel(model="gpt-4o-mini", openai_client=alice))
        session = OpenAIConversationsSession(openai_client=alice)
        result = await Runner.run(agent, "hello there", session=session)
        assert result.final_output == "hello from mock"
        conversation = await session._get_session_id()
        items = await session.get_items()
        assert any(item.get("role") == "user" for item in items), items
        assert await session.pop_item() is not None

        bob = openai.AsyncOpenAI(base_url=warden.base + "/v1", api_key=BOB_KEY, max_retries=0)
        stolen = OpenAIConversationsSession(conversation_id=conversation, openai_client=bob)
        with pytest.raises(openai.PermissionDeniedError) as excinfo:
            await stolen.get_items()
        refused(excinfo)
        with pytest.raises(openai.PermissionDeniedError) as excinfo:
            await stolen.clear_session()
        refused(excinfo)
        assert conversation in main.objects
        with pytest.raises(openai.PermissionDeniedError) as excinfo:
            await bob.responses.create(model="gpt-4o-mini", input="hi", conversation=conversation)
        refused(excinfo)
        await session.clear_session()
        assert conversation not in main.objects

    asyncio.run(run())


def test_files_belong_to_their_uploader(warden, providers):
    main, _ = providers
    filer, snoop = client(warden, FILER_KEY), client(warden, SNOOP_KEY)
    uploaded = filer.files.create(file=("notes.txt", b"the filer's secret"), purpose="user_data")
    assert uploaded.id in main.objects
    assert b"the filer's secret" in filer.files.content(uploaded.id).read()

    for call in (lambda: snoop.files.retrieve(uploaded.id),
                 lambda: snoop.files.content(uploaded.id),
                 lambda: snoop.files.delete(uploaded.id),
                 lambda: snoop.responses.create(model="gpt-4o-mini", input=[{
                     "role": "user", "content": [{"type": "input_file", "file_id": uploaded.id}]}])):
        with pytest.raises(openai.PermissionDeniedError) as excinfo:
            call()
        refused(excinfo)
    assert uploaded.id in main.objects

    # Policy may share objects nobody created through Warden, or others', by id glob.
    curator = client(warden, CURATOR_KEY)
    assert curator.files.retrieve(uploaded.id).id == uploaded.id
    filer.files.delete(uploaded.id)
    assert uploaded.id not in main.objects


def test_refusals_are_audited_and_counted(warden):
    with pytest.raises(openai.PermissionDeniedError):
        client(warden, BOB_KEY).responses.retrieve("resp_nobodys")
    metrics = warden.metrics()
    assert 'agent="bob"' in metrics and 'code="object_not_owned"' in metrics


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server is installed by scripts/ensure-test-deps")
def test_a_fleet_shares_who_owns_what(providers):
    from test_fleet import RedisServer

    redis = RedisServer()
    fleet = f'fleet:\n  redis: {{url: "redis://127.0.0.1:{redis.port}/0"}}\n  on_unavailable: local\n'
    wardens = [Warden(objects_policy(*providers, extra=fleet), env=PROVIDER_ENV) for _ in range(2)]
    try:
        created = client(wardens[0], ALICE_KEY).responses.create(model="gpt-4o-mini", input="shared")

        def on_the_other_replica():
            assert client(wardens[1], ALICE_KEY).responses.retrieve(created.id).id == created.id
        from harness import eventually
        eventually(on_the_other_replica, timeout=5)
        with pytest.raises(openai.PermissionDeniedError) as excinfo:
            client(wardens[1], BOB_KEY).responses.retrieve(created.id)
        refused(excinfo)
        assert "warden:object:" + created.id in redis.command("KEYS", "warden:object:*")

        # Redis gone: a replica that never saw the object cannot confirm its owner, and says so.
        redis.kill()
        fresh = Warden(objects_policy(*providers, extra=fleet), env=PROVIDER_ENV)
        try:
            with pytest.raises(openai.PermissionDeniedError) as excinfo:
                client(fresh, ALICE_KEY).responses.retrieve(created.id)
            assert "cannot be confirmed" in refused(excinfo).message
        finally:
            fresh.stop()
        # The replica that saw it still knows.
        assert client(wardens[0], ALICE_KEY).responses.retrieve(created.id).id == created.id
    finally:
        for w in wardens:
            w.stop()
        redis.close()
