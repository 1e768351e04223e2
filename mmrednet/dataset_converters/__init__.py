"""Dataset preparation: official downloads into the layouts the datasets read."""
