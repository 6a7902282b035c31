"""The Engine.IO / Socket.IO transport under the Socket.IO namespaces (issue 13)."""
