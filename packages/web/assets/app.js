// dashboard: filled in by the web issue
