"""Prices as whole numbers of cents."""


def parse_price(text):
    """'$1,234.50' -> 123450. The dollar sign and the thousands separators are optional."""
    text = text.strip().lstrip("$").replace(",", "")
    return int(float(text) * 100)


def format_price(cents):
    """123450 -> '$1,234.50'."""
    return "${:,}.{:02d}".format(cents // 100, cents % 100)
