"""Tests for escape.py."""
import unittest

from escape import escape, tag


class EscapeTests(unittest.TestCase):
    def test_ampersand(self):
        self.assertEqual(escape("Tom & Jerry"), "Tom &amp; Jerry")

    def test_less_than(self):
        self.assertEqual(escape("a < b"), "a &lt; b")

    def test_single_quote(self):
        self.assertEqual(escape("it's"), "it&#x27;s")

    def test_plain_text_unchanged(self):
        self.assertEqual(escape("hello"), "hello")


class TagTests(unittest.TestCase):
    def test_tag(self):
        self.assertEqual(tag("a", "1 > 0", href="/?x=1&y=2"), '<a href="/?x=1&amp;y=2">1 &gt; 0</a>')

    def test_quotes_in_attribute(self):
        self.assertEqual(tag("p", "hi", title='say "hi"'), '<p title="say &quot;hi&quot;">hi</p>')


if __name__ == "__main__":
    unittest.main()
