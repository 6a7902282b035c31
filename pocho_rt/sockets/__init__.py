"""Socket.IO: the server and the three namespaces of PROTOCOL (/customer, /vendor, /rider)."""
