"""Our own side: the certificate our sending server presents.

`listener` receives test mail from the user's own MTA (`mxlens listen`) and judges the client
certificate it presents; `certfile` checks a certificate file before it is installed
(`mxlens cert`); `hello` reads what a ClientHello offered; `judge` grades both for an inbound
connector. The chain itself is validated by probes/checks/chain.py, as for a server.
"""
