"""The knowledge base catalog on SQLite and on PostgreSQL: ids, statuses, keyset pages, clientToken promises,
names, cascades and tags; a vector store that cannot be made leaves the knowledge base FAILED with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from outcrop import errors, store
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.knowledge.resources import KnowledgeBase, tagged_resource

ROLE = "arn:aws:iam::123456789012:role/kb"


def _body(name: str, **extra: Any) -> dict[str, Any]:
    config = {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": "test.embed-v1:0"}}
    return {"name": name, "roleArn": ROLE, "knowledgeBaseConfiguration": config, **extra}


@pytest.fixture
def catalog(database_url: str) -> KnowledgeCatalog:
    return KnowledgeCatalog(store.connect(database_url))


def test_create_page_update_delete(catalog: KnowledgeCatalog) -> None:
    made = [catalog.create(_body(f"kb-{i}"), "test.embed-v1:0", 16) for i in range(5)]
    assert {kb.status for kb in made} == {"ACTIVE"} and made[0].dimensions == 16
    seen: list[str] = []
    token = None
    while True:
        page = catalog.list_knowledge_bases(2, token)
        seen += [kb.id for kb in page.items]
        token = page.next_token
        if token is None:
            break
    assert seen == [kb.id for kb in made]
    done = catalog.update(made[0].id, _body("renamed", description="d"), "test.embed-v1:0", 16)
    assert (done.name, done.description) == ("renamed", "d") and done.created_at == made[0].created_at
    with pytest.raises(errors.Conflict):
        catalog.update(made[1].id, _body("renamed"), "test.embed-v1:0", 16)
    with pytest.raises(errors.InvalidRequest, match="cannot change"):
        catalog.update(made[1].id, _body("kb-1"), "other.embed-v1:0", 16)
    catalog.delete(made[0].id)
    with pytest.raises(errors.NotFound):
        catalog.get(made[0].id)
    with pytest.raises(errors.InvalidRequest, match="nextToken"):
        catalog.list_knowledge_bases(2, "garbage")


def test_client_tokens(catalog: KnowledgeCatalog) -> None:
    token = "t" * 40
    first = catalog.create(_body("once", clientToken=token), "m", 8)
    assert catalog.create(_body("once", clientToken=token), "m", 8).id == first.id
    with pytest.raises(errors.Conflict, match="clientToken"):
        catalog.create(_body("twice", clientToken=token), "m", 8)
    ds = {"name": "src", "dataSourceConfiguration": {"type": "CUSTOM"}, "clientToken": token}
    one = catalog.create_data_source(first.id, ds)
    assert catalog.create_data_source(first.id, ds).id == one.id
    with pytest.raises(errors.Conflict):
        catalog.create_data_source(first.id, {**ds, "name": "other"})


def test_data_sources_go_with_their_knowledge_base(catalog: KnowledgeCatalog) -> None:
    kb = catalog.create(_body("parent", tags={"team": "a"}), "m", 8)
    sources = [catalog.create_data_source(kb.id, {"name": f"s{i}", "dataSourceConfiguration": {"type": "CUSTOM"}})
               for i in range(3)]  # fmt: skip
    page = catalog.list_data_sources(kb.id, 2, None)
    assert [d.id for d in page.items] == [d.id for d in sources[:2]] and page.next_token
    assert [d.id for d in catalog.list_data_sources(kb.id, 2, page.next_token).items] == [sources[2].id]
    resource = f"knowledge-base/{kb.id}"
    catalog.tag(resource, {"stage": "prod"})
    assert catalog.tags(resource) == {"team": "a", "stage": "prod"}
    catalog.delete(kb.id)
    with pytest.raises(errors.NotFound):
        catalog.data_source(kb.id, sources[0].id)
    with pytest.raises(errors.NotFound):
        catalog.tags(resource)
    again = catalog.create(_body("parent"), "m", 8)  # its name is free again; no tags or sources carried over
    assert catalog.list_data_sources(again.id, 10, None).items == ()


def test_a_store_that_cannot_be_made_fails_the_knowledge_base(database_url: str) -> None:
    released: list[str] = []

    def provision(kb: KnowledgeBase) -> None:
        raise errors.InvalidRequest("pgvector is not installed in database kb")

    catalog = KnowledgeCatalog(store.connect(database_url), provision, lambda kb: released.append(kb.id))
    kb = catalog.create(_body("broken"), "m", 8)
    assert kb.status == "FAILED" and kb.failure_reasons == ("pgvector is not installed in database kb",)
    catalog.delete(kb.id)
    assert released == [kb.id]


def test_tagged_resources_are_this_accounts_knowledge_bases_and_agents() -> None:
    assert tagged_resource("arn:aws:bedrock:us-east-1:000000000000:knowledge-base/ABCDEFGHIJ") == (
        "knowledge-base/ABCDEFGHIJ"
    )
    assert tagged_resource("arn:aws:bedrock:us-east-1:123456789012:knowledge-base/ABCDEFGHIJ") is None
    assert tagged_resource("arn:aws:bedrock:us-east-1:000000000000:agent/ABCDEFGHIJ") == "agent/ABCDEFGHIJ"
    assert tagged_resource("arn:aws:bedrock:us-east-1:123456789012:agent/ABCDEFGHIJ") is None
    assert tagged_resource("arn:aws:bedrock:us-east-1:000000000000:guardrail/ABCDEFGHIJ") is None
    assert tagged_resource("ABCDEFGHIJ") is None
