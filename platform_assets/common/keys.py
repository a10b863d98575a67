"""Asset keys (and check names) that a stage, a sensor or a test names without the definition.

An asset's key is its function's name; a stage that depends on another stage's asset (or a
sensor that requests it) names it through the constant here, declared once.
"""

from dagster import AssetKey

RAW_TRANSACTIONS = AssetKey("raw_transactions")
FRAUD_LABELS = AssetKey("fraud_labels")
VALIDATED_TRANSACTIONS = AssetKey("validated_transactions")
TRANSACTION_BASELINE = AssetKey("transaction_baseline")
CUSTOMER_DAILY_ACTIVITY = AssetKey("customer_daily_activity")
CUSTOMER_FEATURES = AssetKey("customer_features")
MERCHANT_FEATURES = AssetKey("merchant_features")
FEATURE_STORE_REGISTRY = AssetKey("feature_store_registry")
PROMPT_REGISTRY = AssetKey("prompt_registry")
RAG_INDEX = AssetKey("rag_index")
TRAINING_SET = AssetKey("training_set")
ONLINE_FEATURES = AssetKey("online_features")
CANARY_ANALYSIS = AssetKey("canary_analysis")
PRODUCTION_MODEL = AssetKey("production_model")
CHAMPION_SCORES = AssetKey("champion_scores")
MODEL_MONITORING_REPORT = AssetKey("model_monitoring_report")

# The checks of model_monitoring_report, which retraining_sensor reads.
FEATURE_DRIFT = "feature_drift"
PREDICTION_DRIFT = "prediction_drift"
ESTIMATED_PERFORMANCE = "estimated_performance"
REALIZED_PERFORMANCE = "realized_performance"
CHAMPION_AGE = "champion_age"

# How canary_release released a version, as it records and promotion_sensor reads: on the canary
# alias, or straight to champion (the first model, or a canary share of 0).
CANARY_MODE = "canary"
DIRECT_MODE = "direct"
