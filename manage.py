#!/usr/bin/env python
import os
import sys


def main():
    # Production unless told otherwise: make run and make test choose their own settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        sys.exit(f"manage.py: {exc}")


if __name__ == "__main__":
    main()
