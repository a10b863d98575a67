"""The simulator's latent fraud model: which transactions are fraudulent, and why.

The model is the ground truth a fraud classifier is graded against, so it is a logistic of a few
interpretable risk factors: a model trained on the simulated data has a real, learnable signal,
and a test can reason about which transactions should score higher. A second set of weights is
the concept-drift regime, where the same covariates carry a different fraud pattern: one the
fraud model's features can express (the hour and the merchant's chargeback history), so a
retrained model can recover what the drift takes from the champion.
"""

import numpy as np

from resources.sources.schema import ONLINE

# Fraud model (normal regime): logit = _FRAUD_BASE + sum of weight * risk factor. The base is
# calibrated so that about 0.7 % of transactions are fraudulent.
_FRAUD_BASE = -6.75
_W_AMOUNT = 1.4  # per unit of log(amount / typical spend), counted above typical spend only
_W_FOREIGN = 1.4
_W_ONLINE = 1.0
_W_NIGHT = 0.9
_W_MERCHANT_RISK = 3.0
# Fraud model under concept drift: a ring working at night through risky merchants, whatever the
# amount or the country (about half the frauds at night, against a tenth before). The previous
# drifted pattern (small, domestic, contactless payments) was one no model of the feature service
# could learn: channel is not a feature, and the amount ratio and is_foreign are monotone
# increasing by the training recipe's constraints.
_DRIFT_FRAUD_BASE = -7.2
_W_DRIFT_NIGHT = 4.0
_W_DRIFT_MERCHANT_RISK = 4.5


def fraud_probability(
    amount_ratio: np.ndarray,
    *,
    foreign: np.ndarray,
    channel: np.ndarray,
    night: np.ndarray,
    merchant_risk: np.ndarray,
    concept_drift: float = 0.0,
) -> np.ndarray:
    """Latent probability that a transaction is fraudulent.

    It is a logistic of interpretable risk factors so that a model has a real, learnable signal.
    In the normal regime the amount enters through ``max(0, log(amount_ratio))``, which makes the
    probability non-decreasing in the amount relative to the customer's typical spend. Under
    concept drift the logit moves, by ``concept_drift``, towards a different pattern (night-time
    payments at risky merchants, amount and country no longer mattering) while the covariates
    stay the same.

    Args:
        amount_ratio: Amount divided by the customer's typical spend (> 0).
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
