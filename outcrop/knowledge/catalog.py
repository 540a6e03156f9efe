"""The knowledge bases, data sources and their tags, kept in the store (SQLite or PostgreSQL alike).

Bodies arrive checked (outcrop/knowledge/resources.py); this module keeps them, hands out ids, pages lists
and keeps clientToken promises: a create retried with the same token and the same request returns what the
first one made, with another request it is a ConflictException.

Statuses: a knowledge base is CREATING while its vector store is made (`provision`), then ACTIVE (or FAILED,
with the reason); deleting one marks it DELETING, lets `release` drop its vectors, then removes it with its
data sources and tags. Data sources are AVAILABLE; deleting one reports DELETING and removes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from outcrop import errors
from outcrop.knowledge.resources import DataSource, KnowledgeBase, request_hash
from outcrop.store import tags
from outcrop.store.paging import Page, after, aware, dump, loads, new_id, now, page
from outcrop.store.schema import data_sources, knowledge_bases, resource_tags

Hook = Callable[[KnowledgeBase], None]


def _kb(row: Row[Any]) -> KnowledgeBase:
    return KnowledgeBase(row.id, row.name, row.description, row.role_arn, json.loads(row.configuration),
                         loads(row.storage), row.embedding_model, row.dimensions, row.status,
                         tuple(loads(row.failure_reasons) or ()), aware(row.created_at),
                         aware(row.updated_at))  # fmt: skip


def _ds(row: Row[Any]) -> DataSource:
    return DataSource(row.knowledge_base_id, row.id, row.name, row.description, json.loads(row.configuration),
                      loads(row.ingestion), loads(row.encryption), row.deletion_policy, row.status,
                      tuple(loads(row.failure_reasons) or ()), aware(row.created_at),
                      aware(row.updated_at))  # fmt: skip


class KnowledgeCatalog:
    """`provision` makes a new knowledge base's vector store and `release` drops it (both default to nothing:
    the vector stores plug in here)."""

    def __init__(self, engine: Engine, provision: Hook | None = None, release: Hook | None = None) -> None:
        self.engine = engine
        self.provision = provision
        self.release = release

    # --- knowledge bases ---------------------------------------------------------------------------

    def get(self, kb_id: str) -> KnowledgeBase:
        with self.engine.connect() as db:
            row = db.execute(select(knowledge_bases).where(knowledge_bases.c.id == kb_id)).first()
        if row is None or row.status == "DELETING":
            raise errors.NotFound(f"The knowledge base '{kb_id}' was not found.")
        return _kb(row)

    def create(self, body: dict[str, Any], embedding_model: str, dimensions: int) -> KnowledgeBase:
        token, digest = body.get("clientToken"), request_hash(body)
        tags.check_count(len(body.get("tags") or {}))
        at = now()
        kb_id = new_id()
        with self.engine.begin() as db:
            if token is not None:
                done = db.execute(select(knowledge_bases).where(knowledge_bases.c.client_token == token)).first()
                if done is not None:
                    if done.request_hash != digest:
                        raise errors.Conflict("clientToken was already used for a different CreateKnowledgeBase "
                                              "request.")  # fmt: skip
                    return _kb(done)
            self._name_free(db, body["name"])
            try:
                db.execute(insert(knowledge_bases).values(
                    id=kb_id, name=body["name"], description=body.get("description"), role_arn=body["roleArn"],
                    configuration=json.dumps(body["knowledgeBaseConfiguration"]),
                    storage=dump(body.get("storageConfiguration")), embedding_model=embedding_model,
                    dimensions=dimensions, status="CREATING", client_token=token, request_hash=digest,
                    created_at=at, updated_at=at,
                ))  # fmt: skip
                tags.write(db, f"knowledge-base/{kb_id}", body.get("tags"))
            except IntegrityError:  # another request took the name or the token between the checks and here
                raise errors.Conflict(f"A knowledge base named '{body['name']}' (or with this clientToken) was "
                                      "just created by another request.") from None  # fmt: skip
        return self._provisioned(self.get(kb_id))

    def _provisioned(self, kb: KnowledgeBase) -> KnowledgeBase:
        status, reasons = "ACTIVE", None
        if self.provision is not None:
            try:
                self.provision(kb)
            except errors.OutcropError as exc:
                status, reasons = "FAILED", [exc.message]
        with self.engine.begin() as db:
            db.execute(update(knowledge_bases).where(knowledge_bases.c.id == kb.id)
                       .values(status=status, failure_reasons=dump(reasons), updated_at=now()))  # fmt: skip
        return self.get(kb.id)

    @staticmethod
    def _name_free(db: Any, name: str, kb_id: str | None = None) -> None:
        query = select(knowledge_bases.c.id).where(knowledge_bases.c.name == name)
        taken = db.execute(query).scalar()
        if taken is not None and taken != kb_id:
            raise errors.Conflict(f"A knowledge base named '{name}' already exists ({taken}).")

    def update(self, kb_id: str, body: dict[str, Any], embedding_model: str, dimensions: int) -> KnowledgeBase:
        kb = self.get(kb_id)
        if kb.embedding_model != embedding_model or kb.dimensions != dimensions:
            raise errors.InvalidRequest(
                "The embedding model and its dimensions cannot change once a knowledge base has been created "
                f"(it embeds with '{kb.embedding_model}' at {kb.dimensions} dimensions); create another one."
            )
        if (body.get("storageConfiguration") or None) != kb.storage:
            raise errors.InvalidRequest("storageConfiguration cannot change once a knowledge base has been created.")
        with self.engine.begin() as db:
            self._name_free(db, body["name"], kb_id)
            db.execute(update(knowledge_bases).where(knowledge_bases.c.id == kb_id).values(
                name=body["name"], description=body.get("description"), role_arn=body["roleArn"],
                configuration=json.dumps(body["knowledgeBaseConfiguration"]), updated_at=now(),
            ))  # fmt: skip
        return self.get(kb_id)

    def list_knowledge_bases(self, size: int, token: str | None) -> Page:
        query = select(knowledge_bases).where(knowledge_bases.c.status != "DELETING")
        cursor = after(knowledge_bases.c.created_at, knowledge_bases.c.id, token, first=False)
        if cursor is not None:
            query = query.where(cursor)
        query = query.order_by(knowledge_bases.c.created_at, knowledge_bases.c.id).limit(size + 1)
        with self.engine.connect() as db:
            return page(list(db.execute(query)), size, _kb, "id")

    def delete(self, kb_id: str) -> KnowledgeBase:
        kb = self.get(kb_id)
        with self.engine.begin() as db:
            db.execute(update(knowledge_bases).where(knowledge_bases.c.id == kb_id)
                       .values(status="DELETING", updated_at=now()))  # fmt: skip
        if self.release is not None:
            self.release(kb)
        with self.engine.begin() as db:
            db.execute(delete(resource_tags).where(resource_tags.c.resource == f"knowledge-base/{kb_id}"))
            db.execute(delete(data_sources).where(data_sources.c.knowledge_base_id == kb_id))
            db.execute(delete(knowledge_bases).where(knowledge_bases.c.id == kb_id))
        return kb

    # --- data sources ------------------------------------------------------------------------------

    def data_source(self, kb_id: str, ds_id: str) -> DataSource:
        self.get(kb_id)
        with self.engine.connect() as db:
            row = db.execute(select(data_sources).where(data_sources.c.knowledge_base_id == kb_id,
                                                        data_sources.c.id == ds_id)).first()  # fmt: skip
        if row is None:
            raise errors.NotFound(f"The data source '{ds_id}' was not found in knowledge base '{kb_id}'.")
        return _ds(row)

    def create_data_source(self, kb_id: str, body: dict[str, Any]) -> DataSource:
        self.get(kb_id)
        token, digest = body.get("clientToken"), request_hash(body)
        ds_id, at = new_id(), now()
        c = data_sources.c
        with self.engine.begin() as db:
            if token is not None:
                done = db.execute(select(data_sources).where(c.knowledge_base_id == kb_id,
                                                             c.client_token == token)).first()  # fmt: skip
                if done is not None:
                    if done.request_hash != digest:
                        raise errors.Conflict("clientToken was already used for a different CreateDataSource request.")
                    return _ds(done)
            self._source_name_free(db, kb_id, body["name"])
            try:
                db.execute(insert(data_sources).values(
                    id=ds_id, knowledge_base_id=kb_id, name=body["name"], description=body.get("description"),
                    configuration=json.dumps(body["dataSourceConfiguration"]),
                    ingestion=dump(body.get("vectorIngestionConfiguration")),
                    encryption=dump(body.get("serverSideEncryptionConfiguration")),
                    deletion_policy=body.get("dataDeletionPolicy", "DELETE"), status="AVAILABLE",
                    client_token=token, request_hash=digest, created_at=at, updated_at=at,
                ))  # fmt: skip
            except IntegrityError:
                raise errors.Conflict(f"A data source named '{body['name']}' (or with this clientToken) was just "
                                      "created by another request.") from None  # fmt: skip
        return self.data_source(kb_id, ds_id)

    @staticmethod
    def _source_name_free(db: Any, kb_id: str, name: str, ds_id: str | None = None) -> None:
        c = data_sources.c
        taken = db.execute(select(c.id).where(c.knowledge_base_id == kb_id, c.name == name)).scalar()
        if taken is not None and taken != ds_id:
            raise errors.Conflict(f"Knowledge base '{kb_id}' already has a data source named '{name}' ({taken}).")

    def update_data_source(self, kb_id: str, ds_id: str, body: dict[str, Any]) -> DataSource:
        ds = self.data_source(kb_id, ds_id)
        chunking = (body.get("vectorIngestionConfiguration") or {}).get("chunkingConfiguration")
        if chunking != (ds.ingestion or {}).get("chunkingConfiguration"):
            raise errors.InvalidRequest(
                "vectorIngestionConfiguration.chunkingConfiguration cannot change once a data source has been "
                "created (its documents were chunked with it); send the one it has, or create another data source."
            )
        if body["dataSourceConfiguration"]["type"] != ds.configuration["type"]:
            raise errors.InvalidRequest("dataSourceConfiguration.type cannot change once a data source has been "
                                        "created.")  # fmt: skip
        with self.engine.begin() as db:
            self._source_name_free(db, kb_id, body["name"], ds_id)
            db.execute(update(data_sources).where(data_sources.c.id == ds_id).values(
                name=body["name"], description=body.get("description"),
                configuration=json.dumps(body["dataSourceConfiguration"]),
                ingestion=dump(body.get("vectorIngestionConfiguration")),
                encryption=dump(body.get("serverSideEncryptionConfiguration")),
                deletion_policy=body.get("dataDeletionPolicy", ds.deletion_policy), updated_at=now(),
            ))  # fmt: skip
        return self.data_source(kb_id, ds_id)

    def list_data_sources(self, kb_id: str, size: int, token: str | None) -> Page:
        self.get(kb_id)
        query = select(data_sources).where(data_sources.c.knowledge_base_id == kb_id)
        cursor = after(data_sources.c.created_at, data_sources.c.id, token, first=False)
        if cursor is not None:
            query = query.where(cursor)
        query = query.order_by(data_sources.c.created_at, data_sources.c.id).limit(size + 1)
        with self.engine.connect() as db:
            return page(list(db.execute(query)), size, _ds, "id")

    def delete_data_source(self, kb_id: str, ds_id: str) -> DataSource:
        ds = self.data_source(kb_id, ds_id)
        with self.engine.begin() as db:
            db.execute(delete(data_sources).where(data_sources.c.id == ds_id))
        return ds

    # --- tags --------------------------------------------------------------------------------------

    def _tagged(self, resource: str) -> None:
        kind, _, rid = resource.partition("/")
        if kind == "knowledge-base":
            self.get(rid)
            return
        raise errors.NotFound(f"The resource '{resource}' was not found.")

    def tags(self, resource: str) -> dict[str, str]:
        self._tagged(resource)
        return tags.read(self.engine, resource)

    def tag(self, resource: str, new: dict[str, str]) -> None:
        self._tagged(resource)
        tags.put(self.engine, resource, new)

    def untag(self, resource: str, keys: list[str]) -> None:
        self._tagged(resource)
        tags.remove(self.engine, resource, keys)
