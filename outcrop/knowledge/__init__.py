"""Knowledge bases: documents in, passages out.

    parse (parse.py, metadata.py) -> chunk (chunk.py, tokens.py) -> embed -> store (vectors/) -> retrieve

Each step is a module with one concept; the ingestion job and the Retrieve APIs put them in order.
"""
