"""Escape text for HTML and build simple tags."""

REPLACEMENTS = [("<", "&lt;"), (">", "&gt;"), ("&", "&amp;"), ('"', "&quot;")]


def escape(text):
    """`text` made safe for HTML content and for attribute values in double or single quotes."""
    for char, entity in REPLACEMENTS:
        text = text.replace(char, entity)
    return text


def tag(name, text, **attributes):
    """<name key="value">text</name>, with the text and the attribute values escaped."""
    attrs = "".join(' %s="%s"' % (key, escape(value)) for key, value in sorted(attributes.items()))
    return "<%s%s>%s</%s>" % (name, attrs, escape(text), name)
