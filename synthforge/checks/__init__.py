"""Quality and privacy checks, registered through the same hooks as any plugin's."""
