"""Tags, API tokens and rack enrolment services against the real schema, without daemons."""

from __future__ import annotations

import attrs
import pytest
import pytest_twisted

from common import tls
from common.enrolment import EnrolRequest
from region.db import events, racks, secrets
from region.db.pool import run_sync
from region.services import enrol, errors, login, tags, users
from region.services.context import Context
from region.services.tags import NodeChanges, TagFields
from tests.fixtures.services import ServiceRegion, service_region  # noqa: F401  (fixture)


def audit(service_region, object_type: str) -> list[tuple[str, str, str | None, str]]:
    return [(e.type, e.description, e.username, e.object_id) for e in
            reversed(run_sync(service_region.dsn, events.list_thd, object_type=object_type))]


@pytest_twisted.ensureDeferred
async def test_tag_create_rename_delete_are_audited_by_name(service_region):
    ctx = service_region.as_user("admin")
    made = await tags.create(ctx, TagFields(name="fast", comment="NVMe"))
    assert (made.name, made.comment, made.definition) == ("fast", "NVMe", "")
    with pytest.raises(errors.FieldError, match="already exists"):
        await tags.create(ctx, TagFields(name="fast"))
    renamed = await tags.update(ctx, "fast", TagFields(name="faster", kernel_opts="quiet"))
    assert (renamed.name, renamed.comment, renamed.kernel_opts) == ("faster", "NVMe", "quiet")
    await tags.update(ctx, "faster", TagFields(comment="fast disks"))
    assert (await tags.tagged_machines(ctx, "faster")).machines == []
    await tags.delete(ctx, "faster")
    with pytest.raises(errors.NotFound):
        await tags.get(ctx, "faster")
    assert audit(service_region, "tag") == [("TAG_CREATED", "Tag 'fast' created.", "admin", "fast"),
                                            ("TAG_UPDATED", "Tag 'fast' renamed to 'faster'.", "admin", "faster"),
                                            ("TAG_UPDATED", "Tag 'faster' updated.", "admin", "faster"),
                                            ("TAG_DELETED", "Tag 'faster' deleted.", "admin", "faster")]


@pytest_twisted.ensureDeferred
async def test_update_nodes_refuses_a_stale_definition_and_skips_unknown_machines(service_region):
    ctx = service_region.as_user("admin")
    await tags.create(ctx, TagFields(name="gpu", definition="//gpu"))
    with pytest.raises(errors.Conflict, match="doesn't match current definition '//gpu'"):
        await tags.update_nodes(ctx, "gpu", NodeChanges(add=["abc123"], definition="//other"))
    updated = await tags.update_nodes(ctx, "gpu", NodeChanges(add=["nosuch"], definition="//gpu"))
    assert (updated.added, updated.removed) == (0, 0)
    assert [e[0] for e in audit(service_region, "tag")] == ["TAG_CREATED"], "nothing changed, nothing recorded"


@pytest_twisted.ensureDeferred
async def test_tokens_create_rename_delete_as_authorisation_events(service_region):
    ctx = service_region.as_user("carol", admin=False)
    token = await users.create_token(ctx, "ci")
    await users.rename_token(ctx, token.apikey, "ci-2")  # the whole key
    await users.rename_token(ctx, token.token_key, "ci-3")  # or its token key
    assert [(t.name, t.apikey) for t in await users.list_tokens(ctx)] == [("ci-3", token.apikey)]
    with pytest.raises(errors.NotFound):
        await users.rename_token(service_region.as_user("dave", admin=False), token.token_key, "stolen")
    await users.delete_token(ctx, token.token_key)
    with pytest.raises(errors.NotFound):
        await users.delete_token(ctx, token.token_key)
    assert await users.list_tokens(ctx) == []
    assert audit(service_region, "user") == [
        ("AUTHORISATION", "Created token.", "carol", "carol"),
        ("AUTHORISATION", "Modified consumer name of token.", "carol", "carol"),
        ("AUTHORISATION", "Modified consumer name of token.", "carol", "carol"),
        ("AUTHORISATION", "Deleted token.", "carol", "carol")]


@pytest_twisted.ensureDeferred
async def test_authenticate_finds_or_makes_the_consumers_token_for_the_user(service_region):
    service_region.user("erin")  # password "pw-erin"
    anonymous, guard = Context(service_region), login.LoginGuard()

    async def authenticate(username: str, password: str, consumer: str | None):
        return await login.authenticate(anonymous, login.LoginAttempt(username, password, consumer, "192.0.2.1"),
                                        guard)

    assert await authenticate("erin", "wrong", None) is None
    assert await authenticate("nobody", "pw-erin", None) is None
    made = await authenticate("erin", "pw-erin", "erin@laptop")
    again = await authenticate("erin", "pw-erin", "erin@laptop")
    assert (made.name, again.apikey) == ("erin@laptop", made.apikey)
    assert audit(service_region, "user") == [("AUTHORISATION", "Created API (OAuth) token.", "erin", "erin"),
                                             ("AUTHORISATION", "Retrieved API (OAuth) token.", "erin", "erin")]


@attrs.define
class EnrollingRegion(ServiceRegion):
    """A region that can sign rack certificates."""

    ca: tls.KeyPair = attrs.field(factory=tls.make_ca)
    rpc_port: int = 5250


@pytest_twisted.ensureDeferred
async def test_enrolment_secrets_are_listed_and_a_one_time_secret_is_used_up(service_region):
    region = EnrollingRegion(service_region.db, service_region.box, service_region.config, service_region.dsn)
    ctx, dsn, box = Context(region), region.dsn, region.box
    shared = run_sync(dsn, secrets.rotate_shared_secret_thd, box)
    once = run_sync(dsn, secrets.create_one_time_secret_thd, box)
    listed = dict(run_sync(dsn, secrets.enrolment_secrets_thd, box))
    assert listed[secrets.ENROLLMENT_SECRET] == shared and sorted(listed.values()) == sorted([shared, once])

    _, csr = tls.make_csr("rack1")
    with pytest.raises(errors.Forbidden, match="enrollment secret is wrong"):
        await enrol.enrol(ctx, EnrolRequest.make("not-the-secret", "rack1", csr))
    response = await enrol.enrol(ctx, EnrolRequest.make(once, "rack1", csr))
    assert response.rpc_port == 5250 and response.ca == region.ca.cert_pem
    assert run_sync(dsn, racks.get_thd, response.system_id).hostname == "rack1"
    assert [v for _, v in run_sync(dsn, secrets.enrolment_secrets_thd, box)] == [shared], "the one-time secret is gone"
    with pytest.raises(errors.Forbidden):
        await enrol.enrol(ctx, EnrolRequest.make(once, "rack2", csr))
    with pytest.raises(errors.FieldError) as bad_csr:
        await enrol.enrol(ctx, EnrolRequest.make(shared, "rack2", "not a CSR"))
    assert bad_csr.value.field == "csr"
    assert audit(service_region, "rack") == [
        ("RACK_ENROLLED", f"rack rack1 enrolled as {response.system_id}", None, response.system_id)]


@pytest_twisted.ensureDeferred
async def test_enrolment_refuses_a_hostname_that_is_not_one_before_checking_the_secret(service_region):
    ctx = Context(EnrollingRegion(service_region.db, service_region.box, service_region.config, service_region.dsn))
    _, csr = tls.make_csr("rack1")
    for bad in ("rack1\nregion: enrolled rack forged", "", "-rack", "rack.", "r" * 254, "rack 1", "r\x00ck"):
        with pytest.raises(errors.FieldError) as refused:
            await enrol.enrol(ctx, EnrolRequest.make("not-the-secret", bad, csr))
        assert refused.value.field == "hostname"
    with pytest.raises(errors.Forbidden):  # a good name gets as far as the secret
        await enrol.enrol(ctx, EnrolRequest.make("not-the-secret", "rack-1.example_lab", csr))
