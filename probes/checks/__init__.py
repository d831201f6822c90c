"""What is checked: the SMTP session, the side probes, certificates, chain validation, CA endpoints, DANE, MTA-STS, TLS-RPT."""
