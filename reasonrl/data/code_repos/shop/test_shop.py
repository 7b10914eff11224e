"""Tests for money.py and cart.py."""
import unittest

from cart import Cart
from money import format_price, parse_price


class MoneyTests(unittest.TestCase):
    def test_parse_with_separators(self):
        self.assertEqual(parse_price("$1,234.50"), 123450)

    def test_parse_cents_exactly(self):
        self.assertEqual(parse_price("0.29"), 29)
        self.assertEqual(parse_price("$4.35"), 435)

    def test_format(self):
        self.assertEqual(format_price(123405), "$1,234.05")


class CartTests(unittest.TestCase):
    def test_quantities_count(self):
        cart = Cart()
        cart.add("pen", "$0.29", quantity=3)
        cart.add("pad", "$2.00")
        self.assertEqual(cart.total(), 287)

    def test_discount(self):
        cart = Cart()
        cart.add("lamp", "$20.00", quantity=2)
        self.assertEqual(cart.total(discount_percent=15), 3400)

    def test_receipt(self):
        cart = Cart()
        cart.add("pen", "$0.29", quantity=3)
        self.assertEqual(cart.receipt(), "pen x3 $0.87\ntotal $0.87")


if __name__ == "__main__":
    unittest.main()
