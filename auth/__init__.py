"""Who may call ferstream's services: the rules fer-server and the fer-web gateway share.

Below every service package and importing none of them: the token file format (`--auth-tokens`,
$FER_AUTH_TOKENS), the constant-time check of a presented bearer token, and which host names are loopback
(where plain connections are allowed without --insecure). No gRPC, no web framework here.
"""
