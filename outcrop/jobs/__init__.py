"""Batch jobs: one durable runner for every batch API, with each API's file format as a thin codec on top.

    store.py    jobs and their records in the store (SQLite or PostgreSQL): the checkpoints
    runner.py   runs the records on the engines below interactive traffic, fairly between jobs; resumes what a dead
                process left; stops; writes the outputs atomically
    codec.py    the seam a batch API's files meet the runner at (Bedrock's: api/bedrock/batch_codec.py)

Files go through outcrop.objects (S3, or local folders standing for buckets).
"""
