"""Split a list of results into pages for display. Pages are numbered from 1."""


def page_count(total, per_page=10):
    """How many pages it takes to show `total` items, `per_page` at a time (no items: no pages)."""
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    return total // per_page


def get_page(items, page, per_page=10):
    """The items shown on page `page`; an empty list past the last page."""
    if page < 1:
        raise ValueError("pages are numbered from 1")
    start = page * per_page
    return items[start:start + per_page]


def page_label(page, total, per_page=10):
    """The pager's label, e.g. 'Page 2 of 5'."""
    return "Page %d of %d" % (page, page_count(total, per_page))
