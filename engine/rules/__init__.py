"""Loading and validating the rule files into a frozen configuration."""
