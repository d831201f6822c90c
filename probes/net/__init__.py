"""Network primitives: DNS, HTTP, trust roots, the SMTP connection, TLS contexts and handshake details."""
