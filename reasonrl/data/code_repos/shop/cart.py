"""A shopping cart: line items with quantities and an optional percentage discount."""
from money import format_price, parse_price


class Cart:
    def __init__(self):
        self.lines = []

    def add(self, name, price, quantity=1):
        """Add `quantity` units of an item whose unit price is a string such as '$4.99'."""
        self.lines.append((name, parse_price(price), quantity))

    def total(self, discount_percent=0):
        """The total in cents after the discount, rounded to the nearest cent."""
        subtotal = sum(cents for name, cents, quantity in self.lines)
        return round(subtotal * (100 - discount_percent) / 100)

    def receipt(self):
        """One line per item, then the total."""
        lines = ["%s x%d %s" % (name, quantity, format_price(cents * quantity))
                 for name, cents, quantity in self.lines]
        return "\n".join(lines + ["total " + format_price(self.total())])
