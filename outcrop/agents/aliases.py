"""An agent's numbered versions and its aliases (TSTALIASID, always the DRAFT as last prepared, and those
created with or without a routingConfiguration). Mixed into AgentCatalog (catalog.py), above the action groups and
knowledge-base links of parts.py."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from outcrop import errors
from outcrop.agents.parts import AgentParts
from outcrop.agents.resources import DRAFT, TEST_ALIAS, TEST_ALIAS_NAME, Agent, Alias, check_routing
from outcrop.knowledge.resources import request_hash
from outcrop.store import tags
from outcrop.store.paging import Page, after, aware, new_id, now, page
from outcrop.store.schema import (
    agent_action_groups,
    agent_aliases,
    agent_knowledge_bases,
    agent_versions,
    agents,
    resource_tags,
)

PREPARED_COPY = "PREP"  # the version key of the DRAFT as last prepared (not a Bedrock version: none is letters)


def _alias(row: Row[Any]) -> Alias:
    return Alias(row.agent_id, row.id, row.name, row.description, tuple(json.loads(row.routing)),
                 tuple(json.loads(row.history)), row.status, aware(row.created_at), aware(row.updated_at))  # fmt: skip


class AgentAliases(AgentParts):
    # --- versions ----------------------------------------------------------------------------------

    def _version(self, row: Row[Any], latest: str) -> Agent:
        return Agent(row.agent_id, row.name, row.version, json.loads(row.spec), row.status, (), aware(row.created_at),
                     aware(row.updated_at), aware(row.created_at), latest)  # fmt: skip

    def version(self, agent_id: str, version: str) -> Agent:
        """The DRAFT or a numbered version of an agent."""
        agent = self.get(agent_id)
        if version == DRAFT:
            return agent
        if version == PREPARED_COPY:
            raise errors.NotFound(f"Version {version} of agent '{agent_id}' was not found.")
        with self.engine.connect() as db:
            row = db.execute(select(agent_versions).where(agent_versions.c.agent_id == agent_id,
                                                          agent_versions.c.version == version)).first()  # fmt: skip
        if row is None:
            raise errors.NotFound(f"Version {version} of agent '{agent_id}' was not found.")
        return self._version(row, agent.latest_version)

    def list_versions(self, agent_id: str, size: int, token: str | None) -> Page:
        """The DRAFT first (on the first page), then the numbered versions oldest first."""
        agent = self.get(agent_id)
        c = agent_versions.c
        first = [agent] if token is None else []
        query = select(agent_versions).where(c.agent_id == agent_id, c.version != PREPARED_COPY)
        cursor = after(c.created_at, c.version, token)
        if cursor is not None:
            query = query.where(cursor)
        query = query.order_by(c.created_at, c.version).limit(size + 1 - len(first))
        with self.engine.connect() as db:
            rows = list(db.execute(query))
        return page(rows, size, lambda r: self._version(r, agent.latest_version), "version", first)

    def _snapshot(self, db: Any, agent: Agent) -> str:
        """The PREPARED DRAFT copied as the next numbered version (with its action groups and knowledge bases)."""
        if agent.status != "PREPARED":
            raise errors.InvalidRequest(f"The agent '{agent.id}' is {agent.status}: prepare it (PrepareAgent) before "
                                        "making a version of it through an alias.")  # fmt: skip
        number = db.execute(select(agents.c.versions).where(agents.c.id == agent.id)).scalar_one() + 1
        version = str(number)
        db.execute(update(agents).where(agents.c.id == agent.id).values(versions=number))
        self._copy_draft(db, agent.id, version)
        return version

    @staticmethod
    def _copy_draft(db: Any, agent_id: str, version: str, replace: bool = False) -> None:
        """The DRAFT as it is now (the agent, its action groups and knowledge-base links), kept as `version`."""
        tables = (agent_versions, agent_action_groups, agent_knowledge_bases)
        if replace:
            for table in tables:
                db.execute(delete(table).where(table.c.agent_id == agent_id, table.c.version == version))
        draft = db.execute(select(agents.c.name, agents.c.spec).where(agents.c.id == agent_id)).one()
        at = now()
        db.execute(insert(agent_versions).values(agent_id=agent_id, version=version, name=draft.name, spec=draft.spec,
                                                 status="PREPARED", created_at=at, updated_at=at))  # fmt: skip
        for table in tables[1:]:
            rows = db.execute(select(table).where(table.c.agent_id == agent_id, table.c.version == DRAFT)).mappings()
            for row in list(rows):
                db.execute(insert(table).values({**row, "version": version}))  # (keeping their order: created_at)

    def delete_version(self, agent_id: str, version: str, force: bool = False) -> Agent:
        found = self.version(agent_id, version)
        users = [a.name for a in self._aliases(agent_id) if a.version == version]
        if users and not force:
            raise errors.Conflict(f"Version {version} of agent '{agent_id}' is in use by alias(es) {users}; point "
                                  "them elsewhere first, or pass skipResourceInUseCheck.")  # fmt: skip
        with self.engine.begin() as db:
            for table in (agent_versions, agent_action_groups, agent_knowledge_bases):
                db.execute(delete(table).where(table.c.agent_id == agent_id, table.c.version == version))
        return found

    # --- aliases -----------------------------------------------------------------------------------

    def _test_alias(self, agent: Agent) -> Alias:
        routing = ({"agentVersion": DRAFT},)
        history = ({"routingConfiguration": list(routing), "startDate": agent.created_at.isoformat()},)
        return Alias(agent.id, TEST_ALIAS, TEST_ALIAS_NAME, "Test Alias for Agent", routing, history, "PREPARED",
                     agent.created_at, agent.updated_at)  # fmt: skip

    def _aliases(self, agent_id: str) -> list[Alias]:
        with self.engine.connect() as db:
            return [_alias(r) for r in db.execute(select(agent_aliases).where(agent_aliases.c.agent_id == agent_id))]

    def alias(self, agent_id: str, alias_id: str) -> Alias:
        agent = self.get(agent_id)
        if alias_id == TEST_ALIAS:
            return self._test_alias(agent)
        with self.engine.connect() as db:
            row = db.execute(select(agent_aliases).where(agent_aliases.c.agent_id == agent_id,
                                                         agent_aliases.c.id == alias_id)).first()  # fmt: skip
        if row is None:
            raise errors.NotFound(f"The alias '{alias_id}' of agent '{agent_id}' was not found.")
        return _alias(row)

    def _routing(self, db: Any, agent: Agent, routing: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        check_routing(routing)
        if not routing:
            return [{"agentVersion": self._snapshot(db, agent)}]
        version = str(routing[0]["agentVersion"])
        c = agent_versions.c
        found = db.execute(select(c.version).where(c.agent_id == agent.id, c.version == version)).first()
        if found is None:
            raise errors.InvalidRequest(f"routingConfiguration.agentVersion {version}: agent '{agent.id}' has no such "
                                        "version.")  # fmt: skip
        return [{"agentVersion": version}]

    def create_alias(self, agent_id: str, body: dict[str, Any]) -> Alias:
        agent = self.get(agent_id)
        token, digest = body.get("clientToken"), request_hash(body)
        alias_id, at = new_id(), now()
        c = agent_aliases.c
        with self.engine.begin() as db:
            if token is not None:
                done = db.execute(select(agent_aliases).where(c.agent_id == agent_id, c.client_token == token)).first()
                if done is not None:
                    if done.request_hash != digest:
                        raise errors.Conflict("clientToken was already used for a different CreateAgentAlias request.")
                    return _alias(done)
            self._alias_name_free(db, agent_id, body["agentAliasName"])
            routing = self._routing(db, agent, body.get("routingConfiguration"))
            history = [{"routingConfiguration": routing, "startDate": at.isoformat()}]
            try:
                db.execute(insert(agent_aliases).values(
                    agent_id=agent_id, id=alias_id, name=body["agentAliasName"], description=body.get("description"),
                    routing=json.dumps(routing), history=json.dumps(history), status="PREPARED", client_token=token,
                    request_hash=digest, created_at=at, updated_at=at,
                ))  # fmt: skip
                tags.write(db, f"agent-alias/{agent_id}/{alias_id}", body.get("tags"))
            except IntegrityError:
                raise errors.Conflict(f"An alias named '{body['agentAliasName']}' was just created by another "
                                      "request.") from None  # fmt: skip
        return self.alias(agent_id, alias_id)

    @staticmethod
    def _alias_name_free(db: Any, agent_id: str, name: str, alias_id: str | None = None) -> None:
        if name == TEST_ALIAS_NAME:
            raise errors.Conflict(f"The alias name '{name}' is the test alias's ({TEST_ALIAS}).")
        c = agent_aliases.c
        taken = db.execute(select(c.id).where(c.agent_id == agent_id, c.name == name)).scalar()
        if taken is not None and taken != alias_id:
            raise errors.Conflict(f"Agent '{agent_id}' already has an alias named '{name}' ({taken}).")

    def update_alias(self, agent_id: str, alias_id: str, body: dict[str, Any]) -> Alias:
        if alias_id == TEST_ALIAS:
            raise errors.InvalidRequest(f"The test alias {TEST_ALIAS} always routes to the DRAFT; it cannot change.")
        agent, alias = self.get(agent_id), self.alias(agent_id, alias_id)
        at = now()
        with self.engine.begin() as db:
            self._alias_name_free(db, agent_id, body["agentAliasName"], alias_id)
            routing = self._routing(db, agent, body.get("routingConfiguration"))
            history = [dict(e) for e in alias.history]
            if history and "endDate" not in history[0]:
                history[0]["endDate"] = at.isoformat()
            if routing != list(alias.routing):
                history.insert(0, {"routingConfiguration": routing, "startDate": at.isoformat()})
            c = agent_aliases.c
            db.execute(update(agent_aliases).where(c.agent_id == agent_id, c.id == alias_id).values(
                name=body["agentAliasName"], description=body.get("description"), routing=json.dumps(routing),
                history=json.dumps(history[:10]), updated_at=at,
            ))  # fmt: skip
        return self.alias(agent_id, alias_id)

    def list_aliases(self, agent_id: str, size: int, token: str | None) -> Page:
        """The test alias first (on the first page), then the others oldest first."""
        agent = self.get(agent_id)
        c = agent_aliases.c
        first = [self._test_alias(agent)] if token is None else []
        query = select(agent_aliases).where(c.agent_id == agent_id)
        cursor = after(c.created_at, c.id, token)
        if cursor is not None:
            query = query.where(cursor)
        query = query.order_by(c.created_at, c.id).limit(size + 1 - len(first))
        with self.engine.connect() as db:
            return page(list(db.execute(query)), size, _alias, "id", first)

    def delete_alias(self, agent_id: str, alias_id: str) -> Alias:
        if alias_id == TEST_ALIAS:
            raise errors.InvalidRequest(f"The test alias {TEST_ALIAS} cannot be deleted.")
        alias = self.alias(agent_id, alias_id)
        with self.engine.begin() as db:
            db.execute(delete(resource_tags).where(resource_tags.c.resource == f"agent-alias/{agent_id}/{alias_id}"))
            db.execute(delete(agent_aliases).where(agent_aliases.c.agent_id == agent_id,
                                                   agent_aliases.c.id == alias_id))  # fmt: skip
        return alias
