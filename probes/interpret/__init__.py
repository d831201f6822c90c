"""What the report means: the walk-through, connector profiles, tickets, the bounce decoder, provider knowledge."""
