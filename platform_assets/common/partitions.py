"""Partition definitions shared by assets, jobs and sensors."""

import datetime

from dagster import DailyPartitionsDefinition

from resources.sources.dataset import declared_dataset

# The declared dataset's first day of data; backfills can reach back to it.
FIRST_BUSINESS_DAY = declared_dataset().first_business_day.isoformat()

# One partition per UTC business day. The newest partition is yesterday: a day is only
# complete once it has ended.
daily_partitions = DailyPartitionsDefinition(start_date=FIRST_BUSINESS_DAY, timezone="UTC")


def partition_day(partition_key: str) -> datetime.date:
    """The business day a daily partition key names."""
    return datetime.date.fromisoformat(partition_key)


def label_report_days(first: datetime.date, last: datetime.date, maturity_days: int) -> list[str]:
    """Partition keys of the label feed that report on the payments of ``first``..``last``.

    A day's chargebacks are reported on that day and up to ``maturity_days`` after it.
    """
    count = (last - first).days + maturity_days + 1
    return [(first + datetime.timedelta(days=n)).isoformat() for n in range(count)]
