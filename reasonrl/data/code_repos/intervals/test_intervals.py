"""Tests for intervals.py."""
import unittest

from intervals import contains, merge, total_length


class MergeTests(unittest.TestCase):
    def test_overlapping(self):
        self.assertEqual(merge([(1, 4), (2, 6), (8, 9)]), [(1, 6), (8, 9)])

    def test_touching(self):
        self.assertEqual(merge([(1, 3), (3, 5)]), [(1, 5)])

    def test_unsorted_input(self):
        self.assertEqual(merge([(7, 9), (1, 2), (2, 4)]), [(1, 4), (7, 9)])

    def test_empty(self):
        self.assertEqual(merge([]), [])


class MeasureTests(unittest.TestCase):
    def test_total_length(self):
        self.assertEqual(total_length([(5, 8), (0, 2), (1, 3)]), 6)

    def test_contains_end_point(self):
        self.assertTrue(contains([(1, 3)], 3))
        self.assertFalse(contains([(1, 3)], 4))


if __name__ == "__main__":
    unittest.main()
