"""Small widgets shared by the app: the key bar."""
