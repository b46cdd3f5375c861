"""XGBoost native model files (.json / .ubj)."""
