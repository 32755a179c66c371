"""The server process: binding the socket, running uvicorn with bounded request heads, and
exiting cleanly on a signal (:mod:`gateway.serving.process`)."""
