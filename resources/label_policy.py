"""When a fraud label can be trusted, shared by the merchant features and the training set."""

from dagster import ConfigurableResource
from pydantic import Field

DEFAULT_MATURITY_DAYS = 30
DEFAULT_RISK_WINDOW_DAYS = 60
DEFAULT_LABEL_DELAY_DAYS = 7


class LabelPolicy(ConfigurableResource):
    """How long labels take to arrive, so that "no chargeback" is only read as "legitimate" late.

    Chargebacks arrive days or weeks after the transaction. Until a transaction is older than
    ``maturity_days`` its missing chargeback means "unknown", so it neither counts towards a
    merchant's chargeback rate nor enters a training set as a negative.
    """

    maturity_days: int = Field(
        default=DEFAULT_MATURITY_DAYS,
        ge=1,
        description="Days after a transaction by which its chargeback, if any, has arrived.",
    )
    label_delay_days: int = Field(
        default=DEFAULT_LABEL_DELAY_DAYS,
        ge=0,
        description="Days after a transaction by which its label is usually known. The merchant "
        "fraud rates over 1, 7 and 30 days count the frauds known this long after the "
        "payments: a compromised terminal shows within a week rather than after maturity_days.",
    )
    merchant_risk_window_days: int = Field(
        default=DEFAULT_RISK_WINDOW_DAYS,
        ge=1,
        description="Days of matured transactions a merchant's chargeback rate is taken over.",
    )
