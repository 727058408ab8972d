"""What a config costs: the estimate, the measured rates and the FLOP floor."""
