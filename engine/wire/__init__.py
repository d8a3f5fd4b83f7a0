"""Wire format v1 (docs/protocol.md): encode/decode, the ZeroMQ publisher, the subscriber."""
