"""The simulator's customers and merchants: who pays, where, and how.

A realistic source needs stable actors - a customer keeps a home country, a typical spend and a
preferred channel from one day to the next, and a merchant keeps its country, category and risk -
so that per-customer and per-merchant features carry signal. The population is therefore drawn
once per simulator from the seed alone, and each day only samples from it.

How often each country, category and channel occurs is a property of this population, not of the
source's schema: the weights live here and the vocabularies they index live in ``schema.py``.
"""

from dataclasses import dataclass

import numpy as np

from resources.sources.schema import (
    ATM,
    COUNTRIES,
    COUNTRY_CURRENCY,
    CURRENCIES,
    MERCHANT_CATEGORIES,
)

# One dominant market, as for most card issuers: customers and merchants are drawn with these
# weights, so "foreign" is rare and therefore informative.
_COUNTRY_WEIGHTS = (0.55, 0.08, 0.07, 0.06, 0.04, 0.04, 0.03, 0.05, 0.03, 0.02, 0.02, 0.01)
_CATEGORY_WEIGHTS = (0.22, 0.18, 0.10, 0.18, 0.06, 0.05, 0.08, 0.06, 0.04, 0.03)

_CASH_WITHDRAWAL = MERCHANT_CATEGORIES.index("cash_withdrawal")
# Card-present and card-not-present channels a customer chooses between (the first three codes
# of CHANNELS: pos, contactless, online); "atm" is not a choice, it is implied by a
# cash-withdrawal merchant.
_CHOSEN_CHANNEL_WEIGHTS = (0.40, 0.35, 0.25)
_PREFERRED_CHANNEL_SHARE = 0.7

_ACTIVITY_BANDS = 32
_ACTIVITY_RANGE = 100.0  # activity of the busiest customers relative to the quietest

# Population seeds use 0 in the date slot; date ordinals start at 1, so they never collide with
# the per-day streams.
_POPULATION_SLOT = 0


@dataclass(frozen=True)
class Population:
    """Customers and merchants; built once per simulator from the seed alone.

    Customers are stored ordered by activity band and merchants ordered by country, so that a
    weighted draw reduces to "pick a group, then a position inside it". The ``draw_*`` methods
    are those draws; each consumes its generator in a fixed order, part of the determinism
    contract of the simulator.
    """

    customer_home: np.ndarray  # int8 country code
    customer_typical_spend: np.ndarray  # float64
    customer_channel: np.ndarray  # int8 preferred channel code (pos, contactless or online)
    band_first_customer: np.ndarray  # int64; every band carries 1 / _ACTIVITY_BANDS of volume
    band_size: np.ndarray  # int64
    merchant_category: np.ndarray  # int8
    merchant_country: np.ndarray  # int8
    country_currency: np.ndarray  # int8 index into CURRENCIES, per country
    merchant_risk: np.ndarray  # float32
    country_first_merchant: np.ndarray  # int64
    country_merchant_count: np.ndarray  # int64

    def draw_customers(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw who pays for each of ``n`` transactions, weighted by activity.

        The integer part of ``u * bands`` picks the activity band, the fractional part (again
        uniform) the customer inside it.

        Args:
            rng: The day's clean-data generator.
            n: Number of transactions.

        Returns:
            int64 customer indices.
        """
        position = rng.random(n)
        position *= _ACTIVITY_BANDS
        band = position.astype(np.int64)
        position -= band
        size = self.band_size[band]
        position *= size
        customer = position.astype(np.int64)
        del position
        np.minimum(customer, size - 1, out=customer)
        customer += self.band_first_customer[band]
        return customer

    def draw_merchants(
        self, rng: np.random.Generator, customer: np.ndarray, foreign_share: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw where each customer pays: mostly at home, else in any other country uniformly.

        Args:
            rng: The day's clean-data generator.
            customer: Customer indices, one per transaction.
            foreign_share: Probability that a transaction is abroad.

        Returns:
            int64 merchant indices, and whether each merchant is abroad for its customer.
        """
        n = customer.size
        home = self.customer_home[customer]
        foreign = rng.random(n, dtype=np.float32) < foreign_share
        n_countries = len(COUNTRIES)
        other = rng.integers(1, n_countries, n, dtype=np.int8)
        country = np.where(foreign, (home + other) % n_countries, home)
        del other
        # Popularity within a country is skewed towards low positions (u**2).
        pick = rng.random(n, dtype=np.float32)
        pick *= pick
        count = self.country_merchant_count[country]
        merchant = np.minimum((pick * count).astype(np.int64), count - 1)
        merchant += self.country_first_merchant[country]
        return merchant, foreign

    def draw_channels(
        self, rng: np.random.Generator, customer: np.ndarray, merchant: np.ndarray
    ) -> np.ndarray:
        """Draw how each customer pays: usually the preferred channel, else the population mix.

        ATM is never drawn: it is implied by a cash-withdrawal merchant.

        Args:
            rng: The day's clean-data generator.
            customer: Customer indices, one per transaction.
            merchant: Merchant indices, one per transaction.

        Returns:
            int8 channel codes, indices into ``CHANNELS``.
        """
        u_channel = rng.random(customer.size, dtype=np.float32)
        # Rescaled, the draws above the preferred share pick from the population mix.
        mixed = (u_channel - _PREFERRED_CHANNEL_SHARE) / (1 - _PREFERRED_CHANNEL_SHARE)
        mixed_channel = (mixed >= _CHOSEN_CHANNEL_WEIGHTS[0]).astype(np.int8)
        mixed_channel += mixed >= _CHOSEN_CHANNEL_WEIGHTS[0] + _CHOSEN_CHANNEL_WEIGHTS[1]
        channel = np.where(
            u_channel < _PREFERRED_CHANNEL_SHARE, self.customer_channel[customer], mixed_channel
        )
        channel[self.merchant_category[merchant] == _CASH_WITHDRAWAL] = ATM
        return channel

    def customer_volume_share(self) -> np.ndarray:
        """Each customer's expected share of the day's transactions (float64, sums to 1).

        Exact for ``draw_customers``: every band carries the same share, split evenly inside it.
        No random draws, so it is the same however many days were generated.
        """
        per_band = 1.0 / (_ACTIVITY_BANDS * self.band_size)
        return np.repeat(per_band, self.band_size)

    def merchant_volume_share(self, foreign_share: float) -> np.ndarray:
        """Each merchant's expected share of the day's transactions (float64, sums to 1).

        Exact for ``draw_merchants`` with ``foreign_share``: a country gets the payments of its
        residents that stay at home and its share of everyone else's foreign payments, and a
        merchant at position ``p`` of ``m`` gets ``sqrt((p + 1) / m) - sqrt(p / m)`` of its
        country (the u**2 skew). No random draws.
        """
        n_countries = len(COUNTRIES)
        resident = np.bincount(
            self.customer_home, weights=self.customer_volume_share(), minlength=n_countries
        )
        country = resident * (1 - foreign_share) + (1 - resident) * foreign_share / (
            n_countries - 1
        )
        merchant_country = self.merchant_country.astype(np.int64)
        count = self.country_merchant_count[merchant_country]
        position = np.arange(merchant_country.size) - self.country_first_merchant[merchant_country]
        within = np.sqrt((position + 1) / count) - np.sqrt(position / count)
        return country[merchant_country] * within


def build_population(seed: int, n_customers: int, n_merchants: int) -> Population:
    """Draw customers and merchants with stable, seed-determined behaviour.

    Args:
        seed: The simulator's seed; the population depends on nothing else.
        n_customers: Number of customers.
        n_merchants: Number of merchants (at least one per country and per category).

    Returns:
        The population.
    """
    rng = np.random.default_rng([seed, _POPULATION_SLOT])
    band_size, band_first = _activity_bands(n_customers)
    customer_home = rng.choice(len(COUNTRIES), n_customers, p=_COUNTRY_WEIGHTS).astype(np.int8)
    customer_typical_spend = rng.lognormal(np.log(30.0), 0.8, n_customers)
    customer_channel = rng.choice(3, n_customers, p=_CHOSEN_CHANNEL_WEIGHTS).astype(np.int8)
    merchant_country = _merchant_countries(rng, n_merchants)
    country_merchant_count = np.bincount(merchant_country, minlength=len(COUNTRIES))
    country_first_merchant = np.concatenate([[0], np.cumsum(country_merchant_count)[:-1]])
    merchant_category = _merchant_categories(rng, n_merchants)
    merchant_risk = _merchant_risk(rng, n_merchants)
    return Population(
        customer_home=customer_home,
        customer_typical_spend=customer_typical_spend,
        customer_channel=customer_channel,
        band_first_customer=band_first,
        band_size=band_size,
        merchant_category=merchant_category,
        merchant_country=merchant_country,
        country_currency=np.array(
            [CURRENCIES.index(COUNTRY_CURRENCY[c]) for c in COUNTRIES], dtype=np.int8
        ),
        merchant_risk=merchant_risk.astype(np.float32),
        country_first_merchant=country_first_merchant.astype(np.int64),
        country_merchant_count=country_merchant_count.astype(np.int64),
    )


def _activity_bands(n_customers: int) -> tuple[np.ndarray, np.ndarray]:
    """Size and first customer of each activity band (no random draws).

    Heavy-tailed activity without a per-transaction search over millions of weights: customers
    form bands that each carry the same share of the volume, with geometrically shrinking sizes,
    so per-customer activity grows ~100x from the first band to the last (a Pareto-like tail).
    Sampling a customer is then "uniform band, uniform customer inside it".
    """
    band_share = np.exp(
        -np.log(_ACTIVITY_RANGE) / (_ACTIVITY_BANDS - 1) * np.arange(_ACTIVITY_BANDS)
    )
    band_share /= band_share.sum()
    band_size = np.maximum(1, np.floor(n_customers * band_share)).astype(np.int64)
    band_size[0] = n_customers - band_size[1:].sum()
    band_first = np.concatenate([[0], np.cumsum(band_size)[:-1]])
    return band_size, band_first


def _every_kind_then_drawn(
    rng: np.random.Generator, kinds: int, n: int, weights: tuple[float, ...]
) -> np.ndarray:
    """Each of ``kinds`` once, then ``n - kinds`` more drawn by ``weights``.

    Every country and every category exists however small the population, so a foreign
    purchase always has somewhere to go and every category is seen.
    """
    return np.concatenate([np.arange(kinds), rng.choice(kinds, n - kinds, p=weights)])


def _merchant_countries(rng: np.random.Generator, n_merchants: int) -> np.ndarray:
    """Merchant countries, sorted so that each country's merchants are contiguous."""
    drawn = _every_kind_then_drawn(rng, len(COUNTRIES), n_merchants, _COUNTRY_WEIGHTS)
    return np.sort(drawn).astype(np.int8)


def _merchant_categories(rng: np.random.Generator, n_merchants: int) -> np.ndarray:
    """Merchant categories, in random order with respect to the countries."""
    drawn = _every_kind_then_drawn(rng, len(MERCHANT_CATEGORIES), n_merchants, _CATEGORY_WEIGHTS)
    return rng.permutation(drawn).astype(np.int8)


def _merchant_risk(rng: np.random.Generator, n_merchants: int) -> np.ndarray:
    """Latent merchant risk in [0, 1] (float64)."""
    # Most merchants are low risk; a few percent are compromised or complicit.
    merchant_risk = rng.beta(1.5, 12.0, n_merchants)
    risky = rng.random(n_merchants) < 0.03
    merchant_risk[risky] = rng.uniform(0.5, 1.0, int(risky.sum()))
    return merchant_risk
