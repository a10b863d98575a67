"""The simulator's latent fraud model: which transactions are fraudulent, and why.

The model is the ground truth a fraud classifier is graded against, so it is a logistic of a few
interpretable risk factors: a model trained on the simulated data has a real, learnable signal,
and a test can reason about which transactions should score higher. A second set of weights is
the concept-drift regime, where the same covariates carry a different fraud pattern: one the
fraud model's features can express (the hour and the merchant's chargeback history), so a
retrained model can recover what the drift takes from the champion.

Next to the logistic, the normal regime has the patterns real card fraud shows, each one a signal
the platform's features can pick up:

* **Large amounts**: a payment above ``LARGE_AMOUNT_THRESHOLD`` carries a much higher fraud
  probability (a step in the logit), whoever pays. Feature: the transaction's amount.
* **Compromised terminals**: every day a few merchants' terminals become compromised (skimmed)
  and stay so for ``TERMINAL_COMPROMISE_DAYS``; meanwhile a substantial share of their payments
  is fraud. Feature: the merchant's chargeback rate.
* **Compromised cards**: every day a few customers' cards become compromised for
  ``CARD_COMPROMISE_DAYS``; some of the card's payments are then the fraudster's, for several
  times what the owner usually spends. Features: the amount to the customer's mean, and the
  amounts over the customer's windows.

The simulator draws which merchants and cards become compromised on each day from that day's own
stream (``compromise_onsets``), so any day's compromised set can be computed alone;
``compromise_frauds`` turns the sets into fraudulent rows. Under concept drift the three patterns
fade with the rest of the normal regime (the drifted ring works at night through risky merchants,
whatever the amount), while the card frauds' amounts stay: concept drift keeps the covariates.
"""

import math

import numpy as np

from resources.sources.schema import ONLINE

# Fraud model (normal regime): logit = _FRAUD_BASE + sum of weight * risk factor. The base was
# -6.75 before the patterns below; it is lowered so that they (compromised terminals and cards
# about a fifth of the frauds, the large-amount step about a sixth) leave the overall fraud rate
# where it was, about 0.7 to 1 % depending on the seed and the volume (0.9 % at the default seed
# and 10k rows a day): the evaluation gate and several tests are calibrated on it.
_FRAUD_BASE = -7.25
_W_AMOUNT = 1.4  # per unit of log(amount / typical spend), counted above typical spend only
_W_FOREIGN = 1.4
_W_ONLINE = 1.0
_W_NIGHT = 0.9
_W_MERCHANT_RISK = 3.0
# Large amounts: a round limit, as an issuer's rule would be, near the 99th percentile of amounts
# (0.5 to 1.5 % of payments lie above it, depending on the population's spending; the median is
# about 30). Above it the odds of fraud are multiplied by e**_W_LARGE_AMOUNT (about 7), on top of
# what the amount ratio already says: a step that the smooth amount term cannot make.
LARGE_AMOUNT_THRESHOLD = 500.0
_W_LARGE_AMOUNT = 2.0

# Compromised terminals. Skimmers stay in place for weeks before the merchant or the issuers'
# common-point-of-purchase analysis finds them, so a compromise lasts four weeks: longer than the
# label delay, so the merchant's matured chargeback rate can still catch it.
TERMINAL_COMPROMISE_DAYS = 28
# Chance that an exposed merchant becomes compromised on a given day: about 1.4 % of them are
# compromised at any time, one or two new ones a day among 5,000 merchants (a day of 1M rows),
# one a month or two among the 50 of a test's small population.
_TERMINAL_ONSET_RATE = 0.0005
# Share of a compromised terminal's payments that are fraud: substantial, 20 to 30 times an
# ordinary merchant's rate, yet low enough that one compromised merchant of a small population
# (about 1 % of its volume) adds only about 0.15 points to the overall rate for its four weeks.
_TERMINAL_FRAUD_SHARE = 0.15
# Only merchants with at most this multiple of the average merchant's volume are exposed: big
# chains watch their terminals, and one of the few merchants carrying a tenth of a small
# population's volume would swing the overall fraud rate for a month.
_TERMINAL_MAX_VOLUME = 1.0

# Compromised cards: the card is used for about two weeks until its owner or the issuer notices.
CARD_COMPROMISE_DAYS = 14
# Chance that a card becomes compromised on a given day: about 0.8 % of cards are at any time.
_CARD_ONSET_RATE = 0.0006
# The fraudster uses the card about this often a day, whatever its owner's habits: that many of
# the card's payments a day (in expectation) are the fraudster's, but never more than
# _CARD_FRAUD_MAX_SHARE of them, so the owner's usual spend stays visible in the card's history.
# A rate rather than a share, so that the busiest customers' cards don't dominate the frauds.
_CARD_FRAUDS_PER_DAY = 0.5
_CARD_FRAUD_MAX_SHARE = 0.5
# The fraudulent payments are for about five times what the owner would have spent (lognormal
# around x5: x3 to x9 for most), the signal of the amount to the customer's mean.
_CARD_FRAUD_AMOUNT_FACTOR = 5.0
_CARD_FRAUD_AMOUNT_SIGMA = 0.3

# Fraud model under concept drift: a ring working at night through risky merchants, whatever the
# amount or the country (about half the frauds at night, against a tenth before). The previous
# drifted pattern (small, domestic, contactless payments) was one no model of the feature service
# could learn: channel is not a feature, and the amount ratio and is_foreign are monotone
# increasing by the training recipe's constraints.
_DRIFT_FRAUD_BASE = -7.2
_W_DRIFT_NIGHT = 4.0
_W_DRIFT_MERCHANT_RISK = 4.5


def terminal_candidates(merchant_volume_share: np.ndarray) -> np.ndarray:
    """The merchants whose terminals can be compromised: those of modest volume.

    Args:
        merchant_volume_share: Each merchant's expected share of the day's transactions.

    Returns:
        Sorted int64 merchant indices.
    """
    cap = _TERMINAL_MAX_VOLUME / merchant_volume_share.size
    return np.flatnonzero(merchant_volume_share <= cap)


def card_fraud_share(expected_daily_payments: np.ndarray) -> np.ndarray:
    """Share of a compromised card's payments that are fraud, per customer (float32).

    Args:
        expected_daily_payments: Each customer's expected number of payments a day.

    Returns:
        ``_CARD_FRAUDS_PER_DAY`` fraudulent payments a day, capped at ``_CARD_FRAUD_MAX_SHARE``.
    """
    share = _CARD_FRAUDS_PER_DAY / np.maximum(expected_daily_payments, 1e-9)
    return np.minimum(share, _CARD_FRAUD_MAX_SHARE).astype(np.float32)


def compromise_onsets(
    rng: np.random.Generator, candidates: np.ndarray, kind: str, day_ordinal: int, phase: float
) -> np.ndarray:
    """The candidates that become compromised on one day.

    The kind's onset rate times the candidates gives the onsets expected a day, and the count is
    spread evenly over the days (``floor(expected * day + phase)`` grows by the day's count)
    rather than drawn: a small population has a compromise a month or so, and Poisson luck
    stacking three of them would swing its fraud rate far more than the patterns are worth. The
    candidates themselves are drawn from ``rng``, so who is compromised depends only on the seed
    and the onset day.

    Args:
        rng: The generator of that onset day and kind, used for nothing else.
        candidates: Indices that can be compromised (merchants or customers).
        kind: ``"terminal"`` or ``"card"``.
        day_ordinal: The onset day's ordinal.
        phase: In [0, 1), from the seed: when in the cycle the days' counts round up.

    Returns:
        int64 indices, a few of ``candidates``, in random order.
    """
    rate = {"terminal": _TERMINAL_ONSET_RATE, "card": _CARD_ONSET_RATE}[kind]
    per_day = rate * candidates.size
    count = math.floor(per_day * day_ordinal + phase) - math.floor(
        per_day * (day_ordinal - 1) + phase
    )
    return rng.choice(candidates, min(count, candidates.size), replace=False)


def compromise_frauds(
    rng: np.random.Generator,
    *,
    customer: np.ndarray,
    merchant: np.ndarray,
    amount: np.ndarray,
    card_compromised: np.ndarray,
    card_share: np.ndarray,
    terminal_compromised: np.ndarray,
    concept_drift: float = 0.0,
) -> np.ndarray:
    """The day's frauds by compromised cards and terminals; scales up the card frauds' amounts.

    Draws, in this order: one uniform per payment of a compromised card, one amount factor per
    card fraud, one uniform per payment at a compromised terminal. Their number depends only on
    the rows and the compromised sets, never on ``concept_drift``, which only decides how many of
    the selected payments are labelled fraud: the amounts stay as they are.

    Args:
        rng: The day's clean-data generator.
        customer: Customer indices, one per transaction.
        merchant: Merchant indices, one per transaction.
        amount: Unrounded amounts, one per transaction; the card frauds' are scaled in place.
        card_compromised: Whether each customer's card is compromised today.
        card_share: Share of each customer's payments the fraudster makes while compromised.
        terminal_compromised: Whether each merchant's terminal is compromised today.
        concept_drift: Shift to the drifted regime, in [0, 1]: the patterns fade with it.

    Returns:
        int64 row indices of the frauds (a row can appear twice).
    """
    normal = 1.0 - concept_drift
    card_rows = np.flatnonzero(card_compromised[customer])
    u_card = rng.random(card_rows.size, dtype=np.float32)
    share = card_share[customer[card_rows]]
    card_fraud = card_rows[u_card < share]
    factor = rng.lognormal(
        np.log(_CARD_FRAUD_AMOUNT_FACTOR), _CARD_FRAUD_AMOUNT_SIGMA, card_fraud.size
    )
    amount[card_fraud] *= factor
    card_labelled = card_rows[u_card < share * np.float32(normal)]

    terminal_rows = np.flatnonzero(terminal_compromised[merchant])
    u_terminal = rng.random(terminal_rows.size, dtype=np.float32)
    terminal_labelled = terminal_rows[u_terminal < np.float32(_TERMINAL_FRAUD_SHARE * normal)]
    return np.concatenate([card_labelled, terminal_labelled])


def fraud_probability(
    amount_ratio: np.ndarray,
    *,
    amount: np.ndarray,
    foreign: np.ndarray,
    channel: np.ndarray,
    night: np.ndarray,
    merchant_risk: np.ndarray,
    concept_drift: float = 0.0,
) -> np.ndarray:
    """Latent probability that a transaction is fraudulent.

    It is a logistic of interpretable risk factors so that a model has a real, learnable signal.
    In the normal regime the amount enters through ``max(0, log(amount_ratio))`` and a step at
    ``LARGE_AMOUNT_THRESHOLD``, which makes the probability non-decreasing in the amount, relative
    to the customer's typical spend and absolute. Under
    concept drift the logit moves, by ``concept_drift``, towards a different pattern (night-time
    payments at risky merchants, amount and country no longer mattering) while the covariates
    stay the same.

    Args:
        amount_ratio: Amount divided by the customer's typical spend (> 0).
        amount: The amount itself.
        foreign: Whether the merchant's country differs from the customer's home country.
        channel: Channel codes, indices into ``CHANNELS``.
        night: Whether the transaction happened between 00:00 and 06:00 UTC.
        merchant_risk: The merchant's latent risk level in [0, 1].
        concept_drift: Shift from the normal to the drifted fraud pattern, in [0, 1].

    Returns:
        float32 probabilities, one per transaction.
    """
    log_ratio = np.log(np.asarray(amount_ratio, dtype=np.float32))
    logit = np.float32(_W_AMOUNT) * np.maximum(log_ratio, np.float32(0))
    logit += np.float32(_FRAUD_BASE)
    logit += np.float32(_W_LARGE_AMOUNT) * (np.asarray(amount) > LARGE_AMOUNT_THRESHOLD)
    logit += np.float32(_W_FOREIGN) * foreign
    logit += np.float32(_W_ONLINE) * (channel == ONLINE)
    logit += np.float32(_W_NIGHT) * night
    logit += np.float32(_W_MERCHANT_RISK) * np.asarray(merchant_risk, dtype=np.float32)
    if concept_drift > 0:
        drifted = np.full_like(logit, _DRIFT_FRAUD_BASE)
        drifted += np.float32(_W_DRIFT_NIGHT) * night
        drifted += np.float32(_W_DRIFT_MERCHANT_RISK) * np.asarray(merchant_risk, dtype=np.float32)
        logit *= np.float32(1 - concept_drift)
        logit += np.float32(concept_drift) * drifted
    # In-place logistic: 1 / (1 + exp(-logit)).
    np.negative(logit, out=logit)
    np.exp(logit, out=logit)
    logit += np.float32(1)
    return np.reciprocal(logit, out=logit)
