"""Output for the monitoring people already run: Nagios-style plugins and Prometheus."""
