"""`mxlens audit`: many partner domains, politely, into one table and the history."""
