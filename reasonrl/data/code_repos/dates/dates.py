"""Calendar helpers for datetime.date."""
import datetime


def is_leap_year(year):
    """True for leap years of the Gregorian calendar."""
    return year % 4 == 0


def days_in_month(year, month):
    """The number of days in `month` (1 to 12) of `year`."""
    if month == 2:
        return 29 if is_leap_year(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def add_months(date, months):
    """The same day `months` later (earlier when negative). When that month is shorter, the result is its
    last day: January 31 plus one month is the last day of February."""
    index = date.month - 1 + months
    year, month = date.year + index // 12, index % 12 + 1
    return datetime.date(year, month, date.day)
