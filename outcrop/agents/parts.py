"""An agent's action groups and knowledge-base links, per version (writes only to the DRAFT, as on Bedrock; a
numbered version holds the copies its snapshot made). Mixed into AgentCatalog (catalog.py)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from outcrop import errors
from outcrop.agents.resources import DRAFT, ActionGroup, Agent, KnowledgeBaseLink
from outcrop.knowledge.resources import request_hash
from outcrop.store.paging import Page, after, aware, new_id, now, page
from outcrop.store.schema import agent_action_groups, agent_knowledge_bases

_GROUP_FIELDS = ("description", "parentActionGroupSignature", "parentActionGroupSignatureParams",
                 "actionGroupExecutor", "apiSchema", "functionSchema")  # fmt: skip


def _group(row: Row[Any]) -> ActionGroup:
    return ActionGroup(row.agent_id, row.version, row.id, row.name, row.state, json.loads(row.spec), row.payload,
                       aware(row.created_at), aware(row.updated_at))  # fmt: skip


def _link(row: Row[Any]) -> KnowledgeBaseLink:
    return KnowledgeBaseLink(row.agent_id, row.version, row.knowledge_base_id, row.description, row.state,
                             aware(row.created_at), aware(row.updated_at))  # fmt: skip


class AgentParts:
    engine: Engine

    def get(self, agent_id: str) -> Agent:
        raise NotImplementedError

    def version(self, agent_id: str, version: str) -> Agent:
        raise NotImplementedError

    def changed(self, db: Any, agent_id: str) -> None:
        raise NotImplementedError

    # --- action groups -----------------------------------------------------------------------------

    def group(self, agent_id: str, version: str, group_id: str) -> ActionGroup:
        self.version(agent_id, version)
        c = agent_action_groups.c
        with self.engine.connect() as db:
            row = db.execute(select(agent_action_groups).where(c.agent_id == agent_id, c.version == version,
                                                               c.id == group_id)).first()  # fmt: skip
        if row is None:
            raise errors.NotFound(f"The action group '{group_id}' was not found in version {version} of agent "
                                  f"'{agent_id}'.")  # fmt: skip
        return _group(row)

    @staticmethod
    def group_entry(group: ActionGroup) -> dict[str, Any]:
        """An action group as Bedrock's JSON (an S3 apiSchema with the payload read from it), for the runtime."""
        entry = {**group.spec, "actionGroupName": group.name, "actionGroupState": group.state}
        if group.payload is not None:
            entry["apiSchema"] = {"payload": group.payload}
        return entry

    def all_groups(self, agent_id: str, version: str) -> list[ActionGroup]:
        c = agent_action_groups.c
        query = select(agent_action_groups).where(c.agent_id == agent_id, c.version == version)
        with self.engine.connect() as db:
            return [_group(r) for r in db.execute(query.order_by(c.created_at, c.id))]

    def create_group(self, agent_id: str, body: dict[str, Any], payload: str | None) -> ActionGroup:
        self.get(agent_id)
        token, digest = body.get("clientToken"), request_hash(body)
        group_id, at = new_id(), now()
        c = agent_action_groups.c
        with self.engine.begin() as db:
            if token is not None:
                done = db.execute(select(agent_action_groups).where(c.agent_id == agent_id, c.version == DRAFT,
                                                                    c.client_token == token)).first()  # fmt: skip
                if done is not None:
                    if done.request_hash != digest:
                        raise errors.Conflict("clientToken was already used for a different CreateAgentActionGroup "
                                              "request.")  # fmt: skip
                    return _group(done)
            self._group_name_free(db, agent_id, body["actionGroupName"])
            try:
                db.execute(insert(agent_action_groups).values(
                    agent_id=agent_id, version=DRAFT, id=group_id, name=body["actionGroupName"],
                    state=body.get("actionGroupState", "ENABLED"), spec=json.dumps(self._group_spec(body)),
                    payload=payload, client_token=token, request_hash=digest, created_at=at, updated_at=at,
                ))  # fmt: skip
            except IntegrityError:
                raise errors.Conflict(f"An action group named '{body['actionGroupName']}' was just created by another "
                                      "request.") from None  # fmt: skip
            self.changed(db, agent_id)
        return self.group(agent_id, DRAFT, group_id)

    @staticmethod
    def _group_spec(body: dict[str, Any]) -> dict[str, Any]:
        return {k: body[k] for k in _GROUP_FIELDS if body.get(k) is not None}

    @staticmethod
    def _group_name_free(db: Any, agent_id: str, name: str, group_id: str | None = None) -> None:
        c = agent_action_groups.c
        taken = db.execute(select(c.id).where(c.agent_id == agent_id, c.version == DRAFT, c.name == name)).scalar()
        if taken is not None and taken != group_id:
            raise errors.Conflict(f"Agent '{agent_id}' already has an action group named '{name}' ({taken}).")

    def update_group(self, agent_id: str, group_id: str, body: dict[str, Any], payload: str | None) -> ActionGroup:
        self.group(agent_id, DRAFT, group_id)
        c = agent_action_groups.c
        with self.engine.begin() as db:
            self._group_name_free(db, agent_id, body["actionGroupName"], group_id)
            db.execute(update(agent_action_groups)
                       .where(c.agent_id == agent_id, c.version == DRAFT, c.id == group_id)
                       .values(name=body["actionGroupName"], state=body.get("actionGroupState", "ENABLED"),
                               spec=json.dumps(self._group_spec(body)), payload=payload, updated_at=now()))  # fmt: skip
            self.changed(db, agent_id)
        return self.group(agent_id, DRAFT, group_id)

    def list_groups(self, agent_id: str, version: str, size: int, token: str | None) -> Page:
        self.version(agent_id, version)
        c = agent_action_groups.c
        query = select(agent_action_groups).where(c.agent_id == agent_id, c.version == version)
        cursor = after(c.created_at, c.id, token)
        if cursor is not None:
            query = query.where(cursor)
        with self.engine.connect() as db:
            return page(list(db.execute(query.order_by(c.created_at, c.id).limit(size + 1))), size, _group, "id")

    def delete_group(self, agent_id: str, group_id: str, force: bool = False) -> ActionGroup:
        group = self.group(agent_id, DRAFT, group_id)
        if group.state == "ENABLED" and not force:  # as on Bedrock: disable it first, or skip the check
            raise errors.Conflict(
                f"The action group '{group_id}' is ENABLED: disable it (UpdateAgentActionGroup actionGroupState "
                "DISABLED) before deleting it, or pass skipResourceInUseCheck."
            )
        c = agent_action_groups.c
        with self.engine.begin() as db:
            db.execute(delete(agent_action_groups).where(c.agent_id == agent_id, c.version == DRAFT,
                                                         c.id == group_id))  # fmt: skip
            self.changed(db, agent_id)
        return group

    # --- knowledge bases ---------------------------------------------------------------------------

    def link(self, agent_id: str, version: str, kb_id: str) -> KnowledgeBaseLink:
        self.version(agent_id, version)
        c = agent_knowledge_bases.c
        with self.engine.connect() as db:
            row = db.execute(select(agent_knowledge_bases).where(c.agent_id == agent_id, c.version == version,
                                                                 c.knowledge_base_id == kb_id)).first()  # fmt: skip
        if row is None:
            raise errors.NotFound(f"The knowledge base '{kb_id}' is not associated with version {version} of agent "
                                  f"'{agent_id}'.")  # fmt: skip
        return _link(row)

    def all_links(self, agent_id: str, version: str) -> list[KnowledgeBaseLink]:
        c = agent_knowledge_bases.c
        query = select(agent_knowledge_bases).where(c.agent_id == agent_id, c.version == version)
        with self.engine.connect() as db:
            return [_link(r) for r in db.execute(query.order_by(c.created_at, c.knowledge_base_id))]

    def associate(self, agent_id: str, body: dict[str, Any]) -> KnowledgeBaseLink:
        self.get(agent_id)
        kb_id, at = body["knowledgeBaseId"], now()
        with self.engine.begin() as db:
            try:
                db.execute(insert(agent_knowledge_bases).values(
                    agent_id=agent_id, version=DRAFT, knowledge_base_id=kb_id, description=body["description"],
                    state=body.get("knowledgeBaseState", "ENABLED"), created_at=at, updated_at=at,
                ))  # fmt: skip
            except IntegrityError:
                raise errors.Conflict(f"The knowledge base '{kb_id}' is already associated with agent "
                                      f"'{agent_id}'.") from None  # fmt: skip
            self.changed(db, agent_id)
        return self.link(agent_id, DRAFT, kb_id)

    def update_link(self, agent_id: str, kb_id: str, body: dict[str, Any]) -> KnowledgeBaseLink:
        found = self.link(agent_id, DRAFT, kb_id)
        c = agent_knowledge_bases.c
        with self.engine.begin() as db:
            db.execute(update(agent_knowledge_bases)
                       .where(c.agent_id == agent_id, c.version == DRAFT, c.knowledge_base_id == kb_id)
                       .values(description=body.get("description", found.description),
                               state=body.get("knowledgeBaseState", found.state), updated_at=now()))  # fmt: skip
            self.changed(db, agent_id)
        return self.link(agent_id, DRAFT, kb_id)

    def list_links(self, agent_id: str, version: str, size: int, token: str | None) -> Page:
        self.version(agent_id, version)
        c = agent_knowledge_bases.c
        query = select(agent_knowledge_bases).where(c.agent_id == agent_id, c.version == version)
        cursor = after(c.created_at, c.knowledge_base_id, token)
        if cursor is not None:
            query = query.where(cursor)
        query = query.order_by(c.created_at, c.knowledge_base_id).limit(size + 1)
        with self.engine.connect() as db:
            return page(list(db.execute(query)), size, _link, "knowledge_base_id")

    def disassociate(self, agent_id: str, kb_id: str) -> KnowledgeBaseLink:
        found = self.link(agent_id, DRAFT, kb_id)
        c = agent_knowledge_bases.c
        with self.engine.begin() as db:
            db.execute(delete(agent_knowledge_bases).where(c.agent_id == agent_id, c.version == DRAFT,
                                                           c.knowledge_base_id == kb_id))  # fmt: skip
            self.changed(db, agent_id)
        return found
