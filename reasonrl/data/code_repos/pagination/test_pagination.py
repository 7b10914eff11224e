"""Tests for pagination.py."""
import unittest

from pagination import get_page, page_count, page_label


class PageCountTests(unittest.TestCase):
    def test_exact_multiple(self):
        self.assertEqual(page_count(20, 10), 2)

    def test_partial_last_page(self):
        self.assertEqual(page_count(21, 10), 3)

    def test_no_items(self):
        self.assertEqual(page_count(0), 0)

    def test_rejects_zero_per_page(self):
        with self.assertRaises(ValueError):
            page_count(5, 0)


class GetPageTests(unittest.TestCase):
    def test_first_page(self):
        self.assertEqual(get_page(list(range(25)), 1), list(range(10)))

    def test_last_partial_page(self):
        self.assertEqual(get_page(list(range(25)), 3), [20, 21, 22, 23, 24])

    def test_past_the_end(self):
        self.assertEqual(get_page(list(range(5)), 2, per_page=5), [])

    def test_label(self):
        self.assertEqual(page_label(3, 25), "Page 3 of 3")


if __name__ == "__main__":
    unittest.main()
