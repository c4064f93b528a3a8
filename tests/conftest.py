"""Settings for the whole test session.

Ray on Linux replaces 127.0.0.1 with the host's routable address when it starts a node
(ray._private.services.resolve_ip_for_localhost). With this variable at 0, Ray treats the
machine as a single-host cluster and binds every service to loopback, so tests never send
traffic beyond 127.0.0.1. It must be set before Ray is imported.
"""

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
