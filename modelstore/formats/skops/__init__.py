"""skops files (.skops): scikit-learn models without pickle, audited by skops and by modelstore."""
