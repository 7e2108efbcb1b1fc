"""Name resolution of the harness's pods, on their PYTHONPATH (stdlib only).

On a cluster a pod reaches `s3.harness.svc.cluster.local` through the cluster's DNS. Here the services
behind such names (moto, MLflow) listen on 127.0.0.1, and the compiled YAML keeps the in-cluster names (the
compiler rightly refuses a loopback endpoint, which in a pod would be the pod itself). So every process of
a pod resolves the names in EUROLORA_HARNESS_HOST_ALIASES (JSON: name -> IP) to that IP, as a pod's
`hostAliases` (/etc/hosts) would; every other name resolves as usual. URLs, Host headers and the residency
checks still see the in-cluster name.
"""

import json
import os
import socket

_ALIASES = {name.lower(): ip for name, ip in json.loads(os.environ.get("EUROLORA_HARNESS_HOST_ALIASES") or "{}").items()}

if _ALIASES:
    _getaddrinfo, _gethostbyname = socket.getaddrinfo, socket.gethostbyname

    def _aliased(host):
        if isinstance(host, bytes):
            host = host.decode()
        return _ALIASES.get(str(host).lower().rstrip("."), host) if host else host

    def getaddrinfo(host, *args, **kwargs):
        return _getaddrinfo(_aliased(host), *args, **kwargs)

    def gethostbyname(host):
        return _gethostbyname(_aliased(host))

    socket.getaddrinfo, socket.gethostbyname = getaddrinfo, gethostbyname
