"""langchain-aws's AmazonKnowledgeBasesRetriever, unchanged, against the server: it calls Retrieve through its own
boto3 client and turns the results into Documents."""

from __future__ import annotations

import pytest

from tests.api.bedrock_agent_runtime.conftest import Env

retrievers = pytest.importorskip("langchain_aws.retrievers")


def test_amazon_knowledge_bases_retriever(env: Env) -> None:
    kb = env.knowledge_base("langchain")
    env.add(kb, "zephyr", ["The Zephyr 3000 cordless drill weighs 2 kilograms.", "The Zephyr 3000 costs 199 dollars."],
            genre="manual")  # fmt: skip
    env.add(kb, "garden", ["Tomato plants need six hours of sunlight a day."], genre="guide")
    retriever = retrievers.AmazonKnowledgeBasesRetriever(
        knowledge_base_id=kb,
        retrieval_config={"vectorSearchConfiguration": {"numberOfResults": 2,
                                                         "filter": {"equals": {"key": "genre", "value": "manual"}}}},
        client=env.runtime,
    )  # fmt: skip
    docs = retriever.invoke("How much does the Zephyr cost?")
    assert [d.page_content for d in docs] == ["The Zephyr 3000 costs 199 dollars.",
                                              "The Zephyr 3000 cordless drill weighs 2 kilograms."]  # fmt: skip
    top = docs[0].metadata
    assert top["location"] == {"type": "S3", "s3Location": {"uri": "s3://docs/zephyr"}}
    assert 0 < top["score"] <= 1 and top["source_metadata"]["genre"] == "manual"
    assert top["source_metadata"]["x-amz-bedrock-kb-chunk-id"] == "zephyr-1"
