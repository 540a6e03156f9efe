"""Knowledge bases at run time: the catalog, each knowledge base's vector index, and the embedding calls.

This is the one object the bedrock-agent and bedrock-agent-runtime routes (and ingestion) hold. It

- opens the vector store a knowledge base lives in: the embedded store (a SQLite file per knowledge base under
  `<knowledge_dir>/vectors/`; knowledge_dir is a [server] setting, default `$OUTCROP_HOME/knowledge`) when it has
  no storageConfiguration, PostgreSQL + pgvector for Bedrock's `RDS` type, at the URL the server's owner gave for
  its `resourceArn` in `[server.knowledge_rds_urls]` (the key `"*"` serves any resourceArn). An API caller can
  name an ARN, never a database URL;
- makes a knowledge base's index when it is created and drops it when it is deleted (the catalog's hooks);
- embeds texts with the knowledge base's embedding model, at its dimensions, through `Inference.embed` (access,
  quotas and usage as for any embeddings call of the principal on whose behalf it runs);
- searches: `search` embeds the query (unless the search is KEYWORD) and asks the store.

The index of a knowledge base is named `kb_<id>` (lower case) in either store; an RDS configuration's tableName
and fieldMapping are kept and reported, not used: this server makes and owns its own table.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from outcrop import errors
from outcrop.auth.principal import Principal
from outcrop.config import Settings
from outcrop.conversation import EmbedRequest
from outcrop.inference import Inference
from outcrop.knowledge.catalog import KnowledgeCatalog
from outcrop.knowledge.resources import KnowledgeBase
from outcrop.knowledge.vectors import Filter, Hit, Query, SearchType, VectorStore, open_store

if TYPE_CHECKING:
    from outcrop.knowledge.ingest import Ingestion

VECTORS = "vectors"  # under the knowledge folder ([server] knowledge_dir): the embedded store's files


def index_name(kb: KnowledgeBase) -> str:
    return f"kb_{kb.id.lower()}"


def rds_url(settings: Settings, storage: dict[str, Any]) -> str:
    """The PostgreSQL URL an RDS storageConfiguration stands for on this server (InvalidRequest when none)."""
    arn = str(storage.get("rdsConfiguration", {}).get("resourceArn", ""))
    urls = settings.knowledge_rds_urls
    url = urls.get(arn) or urls.get("*")
    if not url:
        raise errors.InvalidRequest(
            f"storageConfiguration.rdsConfiguration.resourceArn '{arn}' names no PostgreSQL database on this server: "
            "its owner maps RDS resource ARNs to PostgreSQL URLs under [server.knowledge_rds_urls] in config.toml "
            '(the key "*" serves every ARN). Or leave storageConfiguration out for the embedded store.'
        )
    return url


class Knowledge:
    """Knowledge bases: `catalog` keeps them; this opens their stores and embeds for them."""

    def __init__(self, catalog: KnowledgeCatalog, inference: Inference, settings: Settings, folder: Path) -> None:
        self.catalog = catalog
        self.inference = inference
        self.settings = settings
        self.folder = folder  # config.knowledge_dir
        self._stores: dict[str, VectorStore] = {}
        self._lock = threading.Lock()
        self.ingestion: Ingestion | None = None  # ingestion jobs and pushed documents (api/app.py sets it)
        catalog.provision = self.provision
        catalog.release = self.release

    # --- stores ------------------------------------------------------------------------------------

    def location(self, kb: KnowledgeBase) -> str:
        if kb.storage is None:
            return str(self.folder / VECTORS)
        return rds_url(self.settings, kb.storage)

    def store(self, kb: KnowledgeBase) -> VectorStore:
        """The store holding `kb`'s index, opened once and shared (the stores are thread-safe)."""
        where = self.location(kb)
        with self._lock:
            store = self._stores.get(where)
            if store is None:
                try:
                    store = open_store(where)
                except errors.OutcropError:
                    raise
                except Exception as exc:  # a PostgreSQL server that is down, a folder we cannot write
                    raise errors.InvalidRequest(f"The vector store of knowledge base '{kb.id}' cannot be opened: "
                                                f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
                self._stores[where] = store
            return store

    def provision(self, kb: KnowledgeBase) -> None:
        """Make the index; what stops it (a database that is down, without pgvector, without rights) becomes the
        knowledge base's failure reason (the catalog marks it FAILED)."""
        try:
            self.store(kb).create_index(index_name(kb), kb.dimensions)
        except Exception as exc:
            why = exc.message if isinstance(exc, errors.OutcropError) else f"{type(exc).__name__}: {exc}"
            raise errors.InvalidRequest(f"The vector index of knowledge base '{kb.id}' could not be made: "
                                        f"{why}") from exc  # fmt: skip

    def release(self, kb: KnowledgeBase) -> None:
        with contextlib.suppress(errors.OutcropError):  # its store is gone (an RDS URL left the config)
            self.store(kb).drop_index(index_name(kb))

    def close(self) -> None:
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()

    # --- embeddings and search ---------------------------------------------------------------------

    async def embed(
        self, kb: KnowledgeBase, texts: list[str], principal: Principal, purpose: str = "search_document"
    ) -> np.ndarray:
        """Unit vectors of `texts` (a float32 matrix, a row a text) at the knowledge base's dimensions."""
        if not texts:
            return np.zeros((0, kb.dimensions), dtype=np.float32)
        request = EmbedRequest(model=kb.embedding_model, texts=tuple(texts), dimensions=kb.dimensions,
                               purpose=purpose)  # fmt: skip
        result = await self.inference.embed(request, principal)
        return np.asarray(result.vectors, dtype=np.float32)

    async def search(
        self,
        kb_id: str,
        principal: Principal,
        text: str,
        *,
        number_of_results: int = 5,
        search_type: SearchType = SearchType.SEMANTIC,
        filter: Filter | None = None,
    ) -> list[Hit]:
        kb = self.catalog.get(kb_id)
        if kb.status != "ACTIVE":
            raise errors.InvalidRequest(f"The knowledge base '{kb_id}' is {kb.status}, not ACTIVE.")
        vector = None
        if search_type is not SearchType.KEYWORD:
            vector = (await self.embed(kb, [text], principal, "search_query"))[0].tolist()
        query = Query(text, vector, search_type, number_of_results, filter)
        return await asyncio.to_thread(self.store(kb).search, index_name(kb), query)
