"""Why a document cannot be ingested. Each is an InvalidRequest (the caller's document is wrong, not the server);
an ingestion job turns one into that document's entry in failureReasons and goes on with the rest.

    InvalidRequest
    └── DocumentError           `reason` is a short stable code, `message` says what is wrong for a person
        ├── UnsupportedDocument     a file type no parser here reads
        ├── EmptyDocument           0 bytes, or no text in it at all
        ├── DocumentTooLarge        over the configured size limit (Bedrock's quota is 50 MB)
        ├── EncryptedDocument       a PDF that needs a password
        ├── CorruptDocument         the parser cannot read it (truncated, not what its name says, bad encoding)
        └── InvalidMetadata         a `<name>.metadata.json` sidecar that is not Bedrock's format
"""

from __future__ import annotations

from outcrop.errors import InvalidRequest


class DocumentError(InvalidRequest):
    reason = "INVALID_DOCUMENT"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class UnsupportedDocument(DocumentError):
    reason = "UNSUPPORTED_FILE_TYPE"


class EmptyDocument(DocumentError):
    reason = "EMPTY_FILE"


class DocumentTooLarge(DocumentError):
    reason = "FILE_TOO_LARGE"


class EncryptedDocument(DocumentError):
    reason = "ENCRYPTED_FILE"


class CorruptDocument(DocumentError):
    reason = "UNREADABLE_FILE"


class InvalidMetadata(DocumentError):
    reason = "INVALID_METADATA"
