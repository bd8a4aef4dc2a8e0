"""Read side: SQL straight to typed results for lists, search and dashboards."""
