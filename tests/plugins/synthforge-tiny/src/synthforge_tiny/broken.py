"""A plugin module that fails to import, as a broken third-party plugin would."""

import synthforge_tiny.does_not_exist  # noqa: F401
