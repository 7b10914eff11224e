"""Read simple settings files: one `key = value` per line; blank lines and lines starting with # are skipped."""


def parse(text):
    """The settings in `text` as a dict of strings."""
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, value = line.split("=")
        settings[key.strip()] = value.strip()
    return settings


def get_int(settings, key, default=0):
    """settings[key] as an int, or `default` when the key is missing."""
    if key not in settings:
        return default
    return int(settings[key])


def get_bool(settings, key, default=True):
    """settings[key] as a bool ('true', 'yes', 'on' and '1' are true, in any case), or `default` when the
    key is missing."""
    if key not in settings:
        return default
    return settings[key].lower() in ("true", "yes", "on", "1")
