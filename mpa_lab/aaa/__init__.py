"""Each administrative domain's AAA server in the lab: a real FreeRADIUS
(Debian's 3.2) that the domain's Authentication Agent relays EAP to over
RADIUS (RFC 3579).

``pki``: the domain's CA, server and client certificates and CRL;
``freeradius_config``: a self-contained configuration directory;
``server``: the process, started, checked ready and stopped;
``domain``: all three for one domain, from what the lab knows of it.
"""
