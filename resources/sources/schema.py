"""The card-payments source's schema: its feeds, their columns and types, and their vocabularies.

Two readers depend on these facts and must agree on them: the data contract
(``platform_assets/ingestion/contract.py``) validates every delivered batch against them, and the
simulator (``resources/sources/simulator.py``) generates batches that honour them. So the
vocabularies live here, with the source's schema, rather than inside the simulator: the contract
reads what the source promises, not how one implementation of the source happens to work.

Only facts of the data belong here. How often each value occurs (the sampling weights) is the
simulator's business and lives with it.
"""

from typing import Literal

import polars as pl

Feed = Literal["transactions", "chargebacks"]

TRANSACTION_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "customer_id",
    "merchant_id",
    "amount",
    "currency",
    "merchant_category",
    "channel",
    "country",
    "event_timestamp",
)
CHARGEBACK_COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "customer_id",
    "transaction_timestamp",
    "reported_at",
    "reason",
)

COUNTRIES: tuple[str, ...] = (
    "US",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "NL",
    "CA",
    "MX",
    "BR",
    "JP",
    "AU",
)
CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP", "CAD", "MXN", "BRL", "JPY", "AUD")
# A transaction is settled in the currency of the merchant's country.
COUNTRY_CURRENCY: dict[str, str] = {
    "US": "USD",
    "GB": "GBP",
    "DE": "EUR",
    "FR": "EUR",
    "ES": "EUR",
    "IT": "EUR",
    "NL": "EUR",
    "CA": "CAD",
    "MX": "MXN",
    "BR": "BRL",
    "JP": "JPY",
    "AU": "AUD",
}

MERCHANT_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurants",
    "fuel",
    "retail",
    "electronics",
    "travel",
    "entertainment",
    "digital_goods",
    "health",
    "cash_withdrawal",
)
CHANNELS: tuple[str, ...] = ("pos", "contactless", "online", "atm")
# The simulator encodes channels as indices into CHANNELS; the codes it reasons about by name.
ONLINE, ATM = (CHANNELS.index(name) for name in ("online", "atm"))
CHARGEBACK_REASONS: tuple[str, ...] = (
    "card_not_present",
    "account_takeover",
    "lost_or_stolen",
    "counterfeit",
)

MAX_AMOUNT: float = 50_000.0
MIN_AMOUNT: float = 0.01

TRANSACTION_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.Int64(),
    "customer_id": pl.Int64(),
    "merchant_id": pl.Int64(),
    "amount": pl.Float64(),
    "currency": pl.String(),
    "merchant_category": pl.String(),
    "channel": pl.String(),
    "country": pl.String(),
    "event_timestamp": pl.Datetime("us", "UTC"),
}
CHARGEBACK_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.Int64(),
    "customer_id": pl.Int64(),
    "transaction_timestamp": pl.Datetime("us", "UTC"),
    "reported_at": pl.Datetime("us", "UTC"),
    "reason": pl.String(),
}
