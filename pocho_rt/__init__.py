"""The Pocho realtime server process: config, wiring, HTTP routes and Socket.IO namespaces."""
