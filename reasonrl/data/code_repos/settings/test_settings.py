"""Tests for settings.py."""
import unittest

from settings import get_bool, get_int, parse

SAMPLE = """
# server settings
host = example.org
port = 8080
debug = Yes
"""


class ParseTests(unittest.TestCase):
    def test_keys_and_values(self):
        self.assertEqual(parse(SAMPLE), {"host": "example.org", "port": "8080", "debug": "Yes"})

    def test_value_containing_equals(self):
        self.assertEqual(parse("url = http://example.org/?a=1&b=2"), {"url": "http://example.org/?a=1&b=2"})

    def test_empty_text(self):
        self.assertEqual(parse("\n# nothing here\n"), {})


class GetterTests(unittest.TestCase):
    def test_int(self):
        self.assertEqual(get_int(parse(SAMPLE), "port"), 8080)

    def test_int_default(self):
        self.assertEqual(get_int({}, "workers", 4), 4)

    def test_bool(self):
        self.assertIs(get_bool(parse(SAMPLE), "debug"), True)

    def test_missing_bool_is_false(self):
        self.assertIs(get_bool(parse(SAMPLE), "verbose"), False)


if __name__ == "__main__":
    unittest.main()
