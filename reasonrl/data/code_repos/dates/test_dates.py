"""Tests for dates.py."""
import datetime
import unittest

from dates import add_months, days_in_month, is_leap_year


class LeapYearTests(unittest.TestCase):
    def test_ordinary_leap_year(self):
        self.assertTrue(is_leap_year(2024))
        self.assertFalse(is_leap_year(2023))

    def test_centuries(self):
        self.assertFalse(is_leap_year(1900))
        self.assertTrue(is_leap_year(2000))

    def test_february(self):
        self.assertEqual(days_in_month(2024, 2), 29)
        self.assertEqual(days_in_month(2100, 2), 28)


class AddMonthsTests(unittest.TestCase):
    def test_across_a_year(self):
        self.assertEqual(add_months(datetime.date(2023, 11, 15), 3), datetime.date(2024, 2, 15))

    def test_clamps_to_month_end(self):
        self.assertEqual(add_months(datetime.date(2024, 1, 31), 1), datetime.date(2024, 2, 29))

    def test_backwards(self):
        self.assertEqual(add_months(datetime.date(2023, 3, 31), -1), datetime.date(2023, 2, 28))


if __name__ == "__main__":
    unittest.main()
