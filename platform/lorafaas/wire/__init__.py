"""Wire protocols shared by host processes and the in-container runtime (stdlib only).

The runtime image carries this package beside `lorafaas.runtime`; nothing here may import
the controller, the invoker or the backbone server.
"""
